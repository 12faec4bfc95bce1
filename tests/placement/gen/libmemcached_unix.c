/* Placement with Unix-socket servers as libmemcached computes it: memcached_server_by_key()
 * (pure placement, no I/O) over KETAMA_WEIGHTED, for the mixed socket/TCP pool of
 * tests/placement/README.md. Prints `key,server` for key:0 .. key:9999; a socket server is
 * printed as its path. Usage: libmemcached_unix [w1234] */
#include <libmemcached/memcached.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  const char *hosts[4] = {"/tmp/fae-placement/m1.sock", "127.0.0.1", "/tmp/fae-placement/m2.sock",
                          "127.0.0.1"};
  const in_port_t ports[4] = {0, 21211, 0, 21212};
  int weighted = argc > 1 && strcmp(argv[1], "w1234") == 0;
  memcached_st *m = memcached_create(NULL);
  memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
  for (int i = 0; i < 4; i++) {
    uint32_t w = weighted ? (uint32_t) i + 1 : 1;
    memcached_return_t rc = ports[i] == 0
        ? memcached_server_add_unix_socket_with_weight(m, hosts[i], w)
        : memcached_server_add_with_weight(m, hosts[i], ports[i], w);
    if (rc != MEMCACHED_SUCCESS) {
      fprintf(stderr, "add %s: %s\n", hosts[i], memcached_strerror(m, rc));
      return 1;
    }
  }
  printf("key,server\n");
  char key[32];
  for (int k = 0; k < 10000; k++) {
    int n = snprintf(key, sizeof key, "key:%d", k);
    memcached_return_t rc;
    const memcached_instance_st *s = memcached_server_by_key(m, key, (size_t) n, &rc);
    if (!s) {
      fprintf(stderr, "%s: %s\n", key, memcached_strerror(m, rc));
      return 1;
    }
    in_port_t port = memcached_server_port(s);
    if (port == 0)
      printf("%s,%s\n", key, memcached_server_name(s));
    else
      printf("%s,%s:%u\n", key, memcached_server_name(s), (unsigned) port);
  }
  memcached_free(m);
  return 0;
}
