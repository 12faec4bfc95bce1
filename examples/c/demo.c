/* libfae C demo: set / get / add / multi-get / route_for / delete / incr against real servers.
 *
 *   ./demo 127.0.0.1:11211 127.0.0.1:11212 ...
 *
 * Build from the repository root (after `cargo build -p fae-c`):
 *   make -C examples/c                       # uses ../../target/debug, see Makefile
 * or by hand:
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude examples/c/demo.c \
 *       -Ltarget/debug -lfae -Wl,-rpath,"$PWD/target/debug" -o demo
 * or against an installed libfae (bindings-c/install.sh PREFIX):
 *   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig \
 *   gcc -std=c99 examples/c/demo.c $(pkg-config --cflags --libs fae) -o demo
 *
 * Exit status 0 when every step behaved as expected; 1 with a message otherwise. The program
 * also compiles as C++ (g++). */
#include <fae.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the failing call, the code's sentence and this thread's detailed error text. */
static void report(const char *what, fae_result r) {
  char msg[64];
  size_t msg_n = 0;
  char detail[512];
  size_t detail_n = 0;
  fae_result_message((uint32_t)r, msg, sizeof msg, &msg_n);
  if (fae_last_error_message(detail, sizeof detail, &detail_n) != FAE_RESULT_OK) {
    detail_n = 0;
  }
  fprintf(stderr, "demo: %s: %.*s (code %u)%s%.*s\n", what, (int)msg_n, msg, (unsigned)r,
          detail_n ? ": " : "", (int)detail_n, detail);
}

/* Fail unless `r` is the `want`ed code. */
#define EXPECT(call, want)                                                                         \
  do {                                                                                             \
    fae_result r_ = (call);                                                                        \
    if (r_ != (want)) {                                                                            \
      report(#call, r_);                                                                           \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#define KEY(s) (const uint8_t *)(s), strlen(s)

struct hits {
  size_t count;
};

static void on_hit(void *userdata, size_t index, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len, uint32_t flags, uint64_t cas) {
  struct hits *hits = (struct hits *)userdata;
  hits->count++;
  printf("  hit [%zu] %.*s = %.*s (flags %" PRIu32 ", cas %" PRIu64 ")\n", index, (int)key_len,
         (const char *)key, (int)value_len, (const char *)value, flags, cas);
}

int main(int argc, char **argv) {
  fae_config *config = NULL;
  fae_client *client = NULL;
  fae_item *item = NULL;
  char *json = NULL;
  size_t json_cap = 64;
  size_t json_len = 0;
  int i;

  if (argc < 2) {
    fprintf(stderr, "usage: %s HOST:PORT [HOST:PORT ...]\n", argv[0]);
    return 2;
  }
  printf("libfae %s\n", fae_version());

  /* {"servers": ["a", "b"], "timeouts": {"io_ms": 1000}} */
  for (i = 1; i < argc; i++) {
    json_cap += strlen(argv[i]) + 4;
  }
  json = (char *)malloc(json_cap);
  if (json == NULL) {
    fprintf(stderr, "demo: out of memory\n");
    return 1;
  }
  json_len = (size_t)sprintf(json, "{\"servers\": [");
  for (i = 1; i < argc; i++) {
    json_len += (size_t)sprintf(json + json_len, "%s\"%s\"", i > 1 ? ", " : "", argv[i]);
  }
  json_len += (size_t)sprintf(json + json_len, "], \"timeouts\": {\"io_ms\": 1000}}");
  printf("config: %s\n", json);

  EXPECT(fae_config_from_json((const uint8_t *)json, json_len, &config), FAE_RESULT_OK);
  EXPECT(fae_client_new(config, &client), FAE_RESULT_OK);
  fae_config_free(config); /* the client keeps what it needs */
  config = NULL;

  {
    const char *value = "hello from C";
    const uint8_t *got;
    size_t got_len = 0;

    fae_client_delete(client, KEY("demo:greeting")); /* start clean; NOT_FOUND is fine */
    EXPECT(fae_client_set(client, KEY("demo:greeting"), (const uint8_t *)value, strlen(value), 42,
                          300),
           FAE_RESULT_OK);
    printf("set demo:greeting = %s\n", value);

    EXPECT(fae_client_get(client, KEY("demo:greeting"), &item), FAE_RESULT_OK);
    got = fae_item_value(item, &got_len);
    printf("get demo:greeting = %.*s (flags %" PRIu32 ")\n", (int)got_len, (const char *)got,
           fae_item_flags(item));
    if (got_len != strlen(value) || memcmp(got, value, got_len) != 0 ||
        fae_item_flags(item) != 42) {
      fprintf(stderr, "demo: get returned something else than was set\n");
      goto fail;
    }
    fae_item_free(item);
    item = NULL;

    EXPECT(fae_client_add(client, KEY("demo:greeting"), (const uint8_t *)"x", 1, 0, 0),
           FAE_RESULT_NOT_STORED);
    printf("add demo:greeting: not stored (the key exists), as expected\n");

    EXPECT(fae_client_get(client, KEY("demo:missing"), &item), FAE_RESULT_NOT_FOUND);
    printf("get demo:missing: not found, item_out untouched (%s)\n", item ? "BUG" : "NULL");
  }

  {
    const char *names[3] = {"demo:a", "demo:b", "demo:nope"};
    const uint8_t *keys[3];
    size_t lens[3];
    fae_result results[3];
    struct hits hits = {0};
    size_t k;

    for (k = 0; k < 3; k++) {
      keys[k] = (const uint8_t *)names[k];
      lens[k] = strlen(names[k]);
    }
    fae_client_delete(client, KEY("demo:nope"));
    EXPECT(fae_client_set(client, KEY("demo:a"), (const uint8_t *)"apple", 5, 1, 0), FAE_RESULT_OK);
    EXPECT(fae_client_set(client, KEY("demo:b"), (const uint8_t *)"banana", 6, 2, 0),
           FAE_RESULT_OK);
    printf("get_multi demo:a demo:b demo:nope:\n");
    EXPECT(fae_client_get_multi(client, keys, lens, 3, on_hit, &hits, results), FAE_RESULT_OK);
    printf("  %zu hits; results = {%u, %u, %u}\n", hits.count, (unsigned)results[0],
           (unsigned)results[1], (unsigned)results[2]);
    if (hits.count != 2 || results[2] != FAE_RESULT_NOT_FOUND) {
      fprintf(stderr, "demo: get_multi: expected 2 hits and a miss\n");
      goto fail;
    }

    for (k = 0; k < 3; k++) {
      char where[256];
      size_t where_n = 0;
      EXPECT(fae_client_route_for(client, "get", keys[k], lens[k], where, sizeof where, &where_n),
             FAE_RESULT_OK);
      printf("route_for get %s -> %.*s\n", names[k], (int)where_n, where);
    }
  }

  EXPECT(fae_client_delete(client, KEY("demo:greeting")), FAE_RESULT_OK);
  EXPECT(fae_client_delete(client, KEY("demo:greeting")), FAE_RESULT_NOT_FOUND);
  printf("delete demo:greeting: deleted, then not found\n");

  {
    uint64_t counter = 0;
    EXPECT(fae_client_set(client, KEY("demo:counter"), (const uint8_t *)"10", 2, 0, 0),
           FAE_RESULT_OK);
    EXPECT(fae_client_incr(client, KEY("demo:counter"), 5, &counter), FAE_RESULT_OK);
    printf("incr demo:counter by 5 -> %" PRIu64 "\n", counter);
    if (counter != 15) {
      fprintf(stderr, "demo: incr: expected 15\n");
      goto fail;
    }
  }

  fae_client_free(client);
  free(json);
  printf("demo: OK\n");
  return 0;

fail:
  fae_item_free(item);
  fae_client_free(client);
  fae_config_free(config);
  free(json);
  return 1;
}
