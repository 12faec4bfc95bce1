/* The C side of the cross-language test (tests/cross/run.sh), through libfae's C API.
 *
 *   c_side SERVERS MODE raw KEY...     one line per key: "KEY FLAGS HEX" (the stored bytes)
 *                                      or "KEY MISS"
 *   c_side SERVERS MODE place PREFIX N one line per key PREFIX0..PREFIX<N-1>: "KEY host:port",
 *                                      the first server a get asks (fae_client_route_for)
 *
 * SERVERS is "host:port,host:port,...", MODE a placement mode ("libmemcached",
 * "php-memcached-default", ...). The C API hands out stored bytes and flags as they
 * are: decoding php-memcached's layout is the caller's job, so this program prints them for
 * the Python side to compare with what it read and decoded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fae.h"

static fae_client *connect_servers(const char *servers, const char *mode) {
  char json[4096];
  const char *p = servers;
  size_t n = 0;
  fae_config *config = NULL;
  fae_client *client = NULL;
  n += (size_t)snprintf(json + n, sizeof json - n, "{\"servers\": [");
  while (*p) {
    size_t len = strcspn(p, ",");
    n += (size_t)snprintf(json + n, sizeof json - n, "%s\"%.*s\"", p == servers ? "" : ",",
                          (int)len, p);
    p += len;
    if (*p == ',') p++;
  }
  n += (size_t)snprintf(json + n, sizeof json - n, "], \"mode\": \"%s\"}", mode);
  if (n >= sizeof json || fae_config_from_json((const uint8_t *)json, n, &config) != FAE_RESULT_OK) {
    fprintf(stderr, "c_side: bad config %s\n", json);
    exit(2);
  }
  if (fae_client_new(config, &client) != FAE_RESULT_OK) {
    fprintf(stderr, "c_side: fae_client_new failed\n");
    exit(2);
  }
  fae_config_free(config);
  return client;
}

static int raw(fae_client *client, int argc, char **argv) {
  int i;
  for (i = 0; i < argc; i++) {
    fae_item *item = NULL;
    size_t len = 0, j;
    const uint8_t *value;
    fae_result r = fae_client_get(client, (const uint8_t *)argv[i], strlen(argv[i]), &item);
    if (r == FAE_RESULT_NOT_FOUND) {
      printf("%s MISS\n", argv[i]);
      continue;
    }
    if (r != FAE_RESULT_OK) {
      fprintf(stderr, "c_side: get %s failed: %u\n", argv[i], (unsigned)r);
      return 1;
    }
    value = fae_item_value(item, &len);
    printf("%s %u ", argv[i], (unsigned)fae_item_flags(item));
    for (j = 0; j < len; j++) printf("%02x", value[j]);
    printf("\n");
    fae_item_free(item);
  }
  return 0;
}

static int place(fae_client *client, const char *prefix, int n) {
  int i;
  for (i = 0; i < n; i++) {
    char key[256], buf[1024];
    size_t out = 0;
    int klen = snprintf(key, sizeof key, "%s%d", prefix, i);
    fae_result r = fae_client_route_for(client, "get", (const uint8_t *)key, (size_t)klen, buf,
                                        sizeof buf - 1, &out);
    if (r != FAE_RESULT_OK) {
      fprintf(stderr, "c_side: route_for %s failed: %u\n", key, (unsigned)r);
      return 1;
    }
    buf[out] = '\0';
    buf[strcspn(buf, ",")] = '\0';
    printf("%s %s\n", key, buf);
  }
  return 0;
}

int main(int argc, char **argv) {
  fae_client *client;
  int rc;
  if (argc < 4) {
    fprintf(stderr, "usage: c_side SERVERS MODE raw KEY... | c_side SERVERS MODE place PREFIX N\n");
    return 2;
  }
  client = connect_servers(argv[1], argv[2]);
  if (strcmp(argv[3], "raw") == 0) {
    rc = raw(client, argc - 4, argv + 4);
  } else if (strcmp(argv[3], "place") == 0 && argc == 6) {
    rc = place(client, argv[4], atoi(argv[5]));
  } else {
    fprintf(stderr, "c_side: unknown command %s\n", argv[3]);
    rc = 2;
  }
  fae_client_free(client);
  return rc;
}
