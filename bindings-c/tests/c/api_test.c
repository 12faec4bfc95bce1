/* Exercises every function of include/fae.h against real memcached servers.
 *
 *   api_test LIVE1 LIVE2 DEAD TMPDIR
 *
 * LIVE1/LIVE2 are running memcached servers, DEAD an address where nothing listens, TMPDIR a
 * writable directory for config files. Run by bindings-c/tests/c_programs.rs (also under
 * valgrind). Prints one line per failed check and a summary; exit status 0 only if every check
 * passed. Compiles as C99 and as C++. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep and pthread barriers under -std=c99 */
#endif

#include <fae.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Timeouts are multiplied by 10 when FAE_TEST_SLOW is set (the valgrind run: the program is
 * 20-50x slower there, and a deadline meant for a live server must not expire on it). */
static int slow(void) {
  const char *s = getenv("FAE_TEST_SLOW");
  return (s != NULL && *s != '\0') ? 10 : 1;
}

/* Does buf[0..n) contain the NUL-terminated needle? (memmem is not C99.) */
static int contains(const char *buf, size_t n, const char *needle) {
  size_t m = strlen(needle), i;
  for (i = 0; m <= n && i <= n - m; i++) {
    if (memcmp(buf + i, needle, m) == 0) return 1;
  }
  return 0;
}

static int checks = 0;
static int failures = 0;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                              \
    }                                                                                              \
  } while (0)

/* Check a call's code; on a mismatch also print the thread's detailed error text. */
#define CHECK_RC(call, want)                                                                       \
  do {                                                                                             \
    fae_result got_ = (call);                                                                      \
    checks++;                                                                                      \
    if (got_ != (fae_result)(want)) {                                                              \
      char detail_[512];                                                                           \
      size_t detail_n_ = 0;                                                                        \
      if (fae_last_error_message(detail_, sizeof detail_, &detail_n_) != FAE_RESULT_OK) {          \
        detail_n_ = 0;                                                                             \
      }                                                                                            \
      failures++;                                                                                  \
      fprintf(stderr, "FAIL %s:%d: %s returned %u, expected %s (%u): %.*s\n", __FILE__, __LINE__, \
              #call, (unsigned)got_, #want, (unsigned)(want), (int)detail_n_, detail_);            \
    }                                                                                              \
  } while (0)

#define K(s) (const uint8_t *)(s), strlen(s)
#define V(s) (const uint8_t *)(s), strlen(s)

/* A pointer value that libfae must never write over on a miss or an error. */
static int sentinel_storage;
#define SENTINEL_ITEM ((fae_item *)(void *)&sentinel_storage)
#define SENTINEL_CONFIG ((fae_config *)(void *)&sentinel_storage)
#define SENTINEL_CLIENT ((fae_client *)(void *)&sentinel_storage)
#define SENTINEL_LEASE ((fae_lease *)(void *)&sentinel_storage)

/* The last error text on this thread, NUL-terminated in a static buffer. */
static const char *last_error(void) {
  static char buf[1024];
  size_t n = 0;
  if (fae_last_error_message(buf, sizeof buf - 1, &n) != FAE_RESULT_OK) {
    n = 0;
  }
  buf[n] = '\0';
  return buf;
}

/* Does the item hold exactly `want`? */
static int item_is(const fae_item *item, const char *want) {
  size_t n = 0;
  const uint8_t *v = fae_item_value(item, &n);
  return v != NULL && n == strlen(want) && memcmp(v, want, n) == 0;
}

/* Get `key` and compare its value; frees the item. */
static int value_is(const fae_client *c, const char *key, const char *want) {
  fae_item *item = NULL;
  int ok;
  if (fae_client_get(c, K(key), &item) != FAE_RESULT_OK) {
    return 0;
  }
  ok = item_is(item, want);
  fae_item_free(item);
  return ok;
}

static fae_client *client_for(const char *json) {
  fae_config *config = NULL;
  fae_client *client = NULL;
  if (fae_config_from_json((const uint8_t *)json, strlen(json), &config) != FAE_RESULT_OK) {
    fprintf(stderr, "config %s: %s\n", json, last_error());
    return NULL;
  }
  if (fae_client_new(config, &client) != FAE_RESULT_OK) {
    fprintf(stderr, "client: %s\n", last_error());
    client = NULL;
  }
  fae_config_free(config);
  return client;
}

/* ---------------------------------------------------------------------------------------- */

static void test_results_and_messages(void) {
  char buf[128];
  size_t n = 12345;
  const char *v = fae_version();

  CHECK(v != NULL && v[0] >= '0' && v[0] <= '9');

  fae_result_message(FAE_RESULT_OK, buf, sizeof buf, &n);
  CHECK(n == 2 && memcmp(buf, "OK", 2) == 0);
  fae_result_message(FAE_RESULT_NOT_FOUND, buf, sizeof buf, &n);
  CHECK(n == strlen("not found") && memcmp(buf, "not found", n) == 0);
  /* truncation: the first 4 bytes, no NUL written past them */
  memset(buf, '#', sizeof buf);
  fae_result_message(FAE_RESULT_TIMEOUT, buf, 4, &n);
  CHECK(n == 4 && memcmp(buf, "time", 4) == 0 && buf[4] == '#');
  fae_result_message(FAE_RESULT_TIMEOUT, buf, 0, &n);
  CHECK(n == 0);
  fae_result_message(4242, buf, sizeof buf, &n);
  CHECK(n == strlen("unknown result code 4242") && memcmp(buf, "unknown result code 4242", n) == 0);
  fae_result_message(FAE_RESULT_OK, buf, sizeof buf, NULL); /* no crash */
  n = 7;
  fae_result_message(FAE_RESULT_OK, NULL, 5, &n); /* NULL buffer with a length: nothing */
  CHECK(n == 7);
  {
    const uint32_t all[] = {0, 1, 2, 3, 100, 101, 102, 103, 104, 105, 106,
                            200, 201, 202, 203, 204, 205, 206, 300, 900};
    size_t i;
    for (i = 0; i < sizeof all / sizeof all[0]; i++) {
      fae_result_message(all[i], buf, sizeof buf, &n);
      CHECK(n > 0 && n < 64);
    }
  }

  CHECK(!fae_result_is_error(FAE_RESULT_OK));
  CHECK(!fae_result_is_error(FAE_RESULT_NOT_FOUND));
  CHECK(!fae_result_is_error(FAE_RESULT_NOT_STORED));
  CHECK(!fae_result_is_error(FAE_RESULT_EXISTS));
  CHECK(fae_result_is_error(FAE_RESULT_NULL_PARAMETER));
  CHECK(fae_result_is_error(FAE_RESULT_CONNECTION_LOST));
  CHECK(fae_result_is_error(FAE_RESULT_AUTH_FAILED));
  CHECK(fae_result_is_error(FAE_RESULT_PANIC));
  CHECK(fae_result_is_error(FAE_RESULT_COMPUTE_FAILED));
  CHECK(fae_result_is_error(77));
  CHECK(sizeof(fae_result) == 4);
}

static void test_config(const char *tmpdir, const char *live1) {
  fae_config *config = SENTINEL_CONFIG;
  char path[512];
  char json[256];
  size_t n = 0;
  FILE *f;

  /* NULL parameters */
  CHECK_RC(fae_config_from_json(NULL, 3, &config), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "json is NULL") == 0);
  CHECK_RC(fae_config_from_json(K("{}"), NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_config_from_toml(NULL, 1, &config), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_config_from_file(NULL, &config), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_config_from_file("x.json", NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK(config == SENTINEL_CONFIG);

  /* invalid: the error text names the path of the bad key; out-param untouched */
  CHECK_RC(fae_config_from_json(K("{\"pools\": {\"main\": {\"severs\": []}}}"), &config),
           FAE_RESULT_INVALID_CONFIG);
  CHECK(strstr(last_error(), "pools.main.severs") != NULL);
  CHECK(config == SENTINEL_CONFIG);
  CHECK_RC(fae_config_from_json(K("{not json"), &config), FAE_RESULT_INVALID_CONFIG);
  CHECK_RC(fae_config_from_json(K("{\"servers\": [\"\xff\"]}"), &config),
           FAE_RESULT_INVALID_CONFIG);
  CHECK(strstr(last_error(), "UTF-8") != NULL);
  CHECK_RC(fae_config_from_json(K("{\"servers\": []}"), &config), FAE_RESULT_INVALID_CONFIG);
  CHECK(config == SENTINEL_CONFIG);

  /* the error text API itself: size query, too small, fits */
  CHECK_RC(fae_config_from_json(K("{\"servers\": [\"a:0\"]}"), &config), FAE_RESULT_INVALID_CONFIG);
  {
    size_t needed = 0;
    char small[4];
    char big[512];
    CHECK_RC(fae_last_error_message(NULL, 0, &needed), FAE_RESULT_INSUFFICIENT_SIZE);
    CHECK(needed > 4);
    memset(small, '#', sizeof small);
    n = 0;
    CHECK_RC(fae_last_error_message(small, sizeof small, &n), FAE_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == needed && small[0] == '#'); /* buffer untouched, size reported */
    CHECK_RC(fae_last_error_message(NULL, 5, &n), FAE_RESULT_NULL_PARAMETER);
    CHECK_RC(fae_last_error_message(big, sizeof big, NULL), FAE_RESULT_NULL_PARAMETER);
    CHECK_RC(fae_last_error_message(big, sizeof big, &n), FAE_RESULT_OK);
    CHECK(n == needed && memcmp(big, "invalid_config", strlen("invalid_config")) == 0);
  }

  /* valid JSON and TOML; a successful call clears the error text */
  snprintf(json, sizeof json, "{\"servers\": [\"%s\"], \"mode\": \"jump\"}", live1);
  CHECK_RC(fae_config_from_json(K(json), &config), FAE_RESULT_OK);
  CHECK(config != SENTINEL_CONFIG && config != NULL);
  CHECK_RC(fae_last_error_message(NULL, 0, &n), FAE_RESULT_OK);
  CHECK(n == 0);
  fae_config_free(config);
  config = NULL;
  snprintf(json, sizeof json, "servers = [\"%s\"]\n[timeouts]\nio_ms = 500\n", live1);
  CHECK_RC(fae_config_from_toml(K(json), &config), FAE_RESULT_OK);
  fae_config_free(config);
  config = NULL;
  CHECK_RC(fae_config_from_toml(K("servers = ["), &config), FAE_RESULT_INVALID_CONFIG);
  CHECK(config == NULL);

  /* files: .toml by extension, JSON otherwise; a missing file is INVALID_CONFIG */
  snprintf(path, sizeof path, "%s/fae.toml", tmpdir);
  f = fopen(path, "w");
  CHECK(f != NULL);
  if (f != NULL) {
    fprintf(f, "servers = [\"%s\"]\n", live1);
    fclose(f);
    CHECK_RC(fae_config_from_file(path, &config), FAE_RESULT_OK);
    fae_config_free(config);
    config = NULL;
  }
  snprintf(path, sizeof path, "%s/fae.json", tmpdir);
  f = fopen(path, "w");
  CHECK(f != NULL);
  if (f != NULL) {
    fprintf(f, "{\"servers\": [\"%s\"], \"route\": \"nope\"}", live1);
    fclose(f);
    CHECK_RC(fae_config_from_file(path, &config), FAE_RESULT_INVALID_CONFIG);
    CHECK(strstr(last_error(), "nope") != NULL);
  }
  snprintf(path, sizeof path, "%s/does-not-exist.json", tmpdir);
  CHECK_RC(fae_config_from_file(path, &config), FAE_RESULT_INVALID_CONFIG);
  CHECK(config == NULL);

  fae_config_free(NULL);
}

static void test_client_new(const char *live1) {
  fae_config *config = NULL;
  fae_client *client = SENTINEL_CLIENT;
  char json[256];
  snprintf(json, sizeof json, "{\"servers\": [\"%s\"]}", live1);
  CHECK_RC(fae_config_from_json(K(json), &config), FAE_RESULT_OK);
  CHECK_RC(fae_client_new(NULL, &client), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_new(config, NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK(client == SENTINEL_CLIENT);
  CHECK_RC(fae_client_new(config, &client), FAE_RESULT_OK);
  fae_config_free(config); /* the client does not need it any more */
  CHECK(value_is(client, "nothing-here", "x") == 0);
  CHECK_RC(fae_client_close(NULL), FAE_RESULT_NULL_PARAMETER);
  fae_client_free(client);
  fae_client_free(NULL);
}

static void test_storage(const fae_client *c) {
  fae_item *item = SENTINEL_ITEM;
  uint64_t cas = 0;
  const uint8_t *p;
  size_t n = 0;
  static const uint8_t binary[] = {'a', 0, 'b', 0xff, '\r', '\n'};

  fae_client_delete(c, K("t:s"));
  CHECK_RC(fae_client_set(c, K("t:s"), V("one"), 7, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("t:s"), &item), FAE_RESULT_OK);
  CHECK(item != SENTINEL_ITEM && item_is(item, "one") && fae_item_flags(item) == 7);
  fae_item_free(item);

  /* miss: NOT_FOUND, out-param untouched, not an error */
  item = SENTINEL_ITEM;
  CHECK_RC(fae_client_get(c, K("t:missing"), &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);
  CHECK_RC(fae_client_gets(c, K("t:missing"), &item), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_gat(c, K("t:missing"), 10, &item), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_gats(c, K("t:missing"), 10, &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);

  /* gets / gat / gats */
  CHECK_RC(fae_client_gets(c, K("t:s"), &item), FAE_RESULT_OK);
  cas = fae_item_cas(item);
  CHECK(cas != 0 && item_is(item, "one"));
  fae_item_free(item);
  CHECK_RC(fae_client_gat(c, K("t:s"), 100, &item), FAE_RESULT_OK);
  CHECK(item_is(item, "one"));
  fae_item_free(item);
  CHECK_RC(fae_client_gats(c, K("t:s"), 100, &item), FAE_RESULT_OK);
  CHECK(item_is(item, "one") && fae_item_cas(item) == cas);
  fae_item_free(item);

  /* cas: wrong token EXISTS, right token OK, missing key NOT_FOUND */
  CHECK_RC(fae_client_cas(c, K("t:s"), V("two"), 0, 0, cas + 1000), FAE_RESULT_EXISTS);
  CHECK_RC(fae_client_cas(c, K("t:s"), V("two"), 0, 0, cas), FAE_RESULT_OK);
  CHECK(value_is(c, "t:s", "two"));
  CHECK_RC(fae_client_cas(c, K("t:missing"), V("x"), 0, 0, cas), FAE_RESULT_NOT_FOUND);

  /* add / replace / append / prepend */
  CHECK_RC(fae_client_add(c, K("t:s"), V("x"), 0, 0), FAE_RESULT_NOT_STORED);
  fae_client_delete(c, K("t:new"));
  CHECK_RC(fae_client_add(c, K("t:new"), V("fresh"), 0, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_replace(c, K("t:missing"), V("x"), 0, 0), FAE_RESULT_NOT_STORED);
  CHECK_RC(fae_client_replace(c, K("t:new"), V("mid"), 3, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_append(c, K("t:new"), V(">>")), FAE_RESULT_OK);
  CHECK_RC(fae_client_prepend(c, K("t:new"), V("<<")), FAE_RESULT_OK);
  CHECK(value_is(c, "t:new", "<<mid>>"));
  CHECK_RC(fae_client_append(c, K("t:missing"), V("x")), FAE_RESULT_NOT_STORED);
  CHECK_RC(fae_client_prepend(c, K("t:missing"), V("x")), FAE_RESULT_NOT_STORED);

  /* empty value (NULL, 0) and binary values */
  CHECK_RC(fae_client_set(c, K("t:empty"), NULL, 0, 0, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("t:empty"), &item), FAE_RESULT_OK);
  p = fae_item_value(item, &n);
  CHECK(p != NULL && n == 0);
  fae_item_free(item);
  CHECK_RC(fae_client_set(c, K("t:bin"), binary, sizeof binary, 0xffffffffu, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("t:bin"), &item), FAE_RESULT_OK);
  p = fae_item_value(item, &n);
  CHECK(n == sizeof binary && memcmp(p, binary, n) == 0 && fae_item_flags(item) == 0xffffffffu);
  /* item getters with NULL */
  CHECK(fae_item_value(NULL, &n) == NULL);
  CHECK(fae_item_value(item, NULL) == NULL);
  CHECK(fae_item_flags(NULL) == 0 && fae_item_cas(NULL) == 0);
  fae_item_free(item);
  fae_item_free(NULL);

  /* delete / touch */
  CHECK_RC(fae_client_touch(c, K("t:new"), 60), FAE_RESULT_OK);
  CHECK_RC(fae_client_touch(c, K("t:missing"), 60), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_delete(c, K("t:new")), FAE_RESULT_OK);
  CHECK_RC(fae_client_delete(c, K("t:new")), FAE_RESULT_NOT_FOUND);
}

static void test_arith(const fae_client *c) {
  uint64_t v = 777;
  CHECK_RC(fae_client_set(c, K("t:n"), V("10"), 0, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_incr(c, K("t:n"), 5, &v), FAE_RESULT_OK);
  CHECK(v == 15);
  CHECK_RC(fae_client_decr(c, K("t:n"), 20, &v), FAE_RESULT_OK);
  CHECK(v == 0); /* decr stops at 0 */
  v = 777;
  fae_client_delete(c, K("t:nomissing"));
  CHECK_RC(fae_client_incr(c, K("t:nomissing"), 1, &v), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_decr(c, K("t:nomissing"), 1, &v), FAE_RESULT_NOT_FOUND);
  CHECK(v == 777);
  CHECK_RC(fae_client_set(c, K("t:text"), V("abc"), 0, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_incr(c, K("t:text"), 1, &v), FAE_RESULT_SERVER_ERROR);
  CHECK(v == 777);
  CHECK_RC(fae_client_incr(c, K("t:n"), 1, NULL), FAE_RESULT_NULL_PARAMETER);
}

/* get_multi callback: record what arrived. */
struct seen {
  int calls;
  size_t index[8];
  char value[8][32];
  uint32_t flags[8];
  uint64_t cas[8];
};

static void on_hit(void *userdata, size_t index, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len, uint32_t flags, uint64_t cas) {
  struct seen *s = (struct seen *)userdata;
  (void)key;
  (void)key_len;
  if (s->calls < 8 && value_len < 32) {
    s->index[s->calls] = index;
    memcpy(s->value[s->calls], value, value_len);
    s->value[s->calls][value_len] = '\0';
    s->flags[s->calls] = flags;
    s->cas[s->calls] = cas;
  }
  s->calls++;
}

static void test_multi(const fae_client *c) {
  const char *names[4] = {"m:a", "m:missing", "m:b", "m:c"};
  const uint8_t *keys[4];
  size_t lens[4];
  fae_result results[4];
  struct seen seen;
  fae_set_item items[3];
  size_t i;

  for (i = 0; i < 4; i++) {
    keys[i] = (const uint8_t *)names[i];
    lens[i] = strlen(names[i]);
  }
  fae_client_delete(c, K("m:missing"));

  /* set_multi */
  memset(items, 0, sizeof items);
  items[0].key = keys[0];
  items[0].key_len = lens[0];
  items[0].value = (const uint8_t *)"alpha";
  items[0].value_len = 5;
  items[0].flags = 1;
  items[1].key = keys[2];
  items[1].key_len = lens[2];
  items[1].value = (const uint8_t *)"beta";
  items[1].value_len = 4;
  items[1].flags = 2;
  items[2].key = keys[3];
  items[2].key_len = lens[3];
  items[2].value = NULL; /* empty value */
  items[2].value_len = 0;
  items[2].flags = 3;
  for (i = 0; i < 4; i++) {
    results[i] = (fae_result)999;
  }
  CHECK_RC(fae_client_set_multi(c, items, 3, results), FAE_RESULT_OK);
  CHECK(results[0] == FAE_RESULT_OK && results[1] == FAE_RESULT_OK &&
        results[2] == FAE_RESULT_OK && results[3] == 999);
  CHECK_RC(fae_client_set_multi(c, items, 3, NULL), FAE_RESULT_OK);
  CHECK_RC(fae_client_set_multi(c, NULL, 0, NULL), FAE_RESULT_OK);
  CHECK_RC(fae_client_set_multi(c, NULL, 1, NULL), FAE_RESULT_NULL_PARAMETER);
  items[1].key = NULL;
  CHECK_RC(fae_client_set_multi(c, items, 3, results), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "items[1].key is NULL") == 0);
  items[1].key = keys[2];

  /* get_multi: hits through the callback in key order, misses only in results */
  memset(&seen, 0, sizeof seen);
  CHECK_RC(fae_client_get_multi(c, keys, lens, 4, on_hit, &seen, results), FAE_RESULT_OK);
  CHECK(seen.calls == 3);
  CHECK(seen.index[0] == 0 && strcmp(seen.value[0], "alpha") == 0 && seen.flags[0] == 1);
  CHECK(seen.index[1] == 2 && strcmp(seen.value[1], "beta") == 0 && seen.flags[1] == 2);
  CHECK(seen.index[2] == 3 && seen.value[2][0] == '\0' && seen.flags[2] == 3);
  CHECK(seen.cas[0] != 0);
  CHECK(results[0] == FAE_RESULT_OK && results[1] == FAE_RESULT_NOT_FOUND &&
        results[2] == FAE_RESULT_OK && results[3] == FAE_RESULT_OK);
  memset(&seen, 0, sizeof seen);
  CHECK_RC(fae_client_get_multi(c, keys, lens, 4, on_hit, &seen, NULL), FAE_RESULT_OK);
  CHECK(seen.calls == 3);
  CHECK_RC(fae_client_get_multi(c, NULL, NULL, 0, on_hit, &seen, NULL), FAE_RESULT_OK);

  /* get_multi caller errors: before any I/O, no callback, results untouched */
  memset(&seen, 0, sizeof seen);
  for (i = 0; i < 4; i++) {
    results[i] = (fae_result)999;
  }
  CHECK_RC(fae_client_get_multi(c, keys, lens, 4, NULL, &seen, results), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_multi(c, NULL, lens, 4, on_hit, &seen, results), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_multi(c, keys, NULL, 4, on_hit, &seen, results), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_multi(NULL, keys, lens, 4, on_hit, &seen, results),
           FAE_RESULT_NULL_PARAMETER);
  keys[1] = NULL;
  CHECK_RC(fae_client_get_multi(c, keys, lens, 4, on_hit, &seen, results), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "keys[1] is NULL") == 0);
  keys[1] = (const uint8_t *)"bad key";
  lens[1] = 7;
  CHECK_RC(fae_client_get_multi(c, keys, lens, 4, on_hit, &seen, results), FAE_RESULT_INVALID_KEY);
  CHECK(seen.calls == 0 && results[0] == 999);
  keys[1] = (const uint8_t *)names[1];
  lens[1] = strlen(names[1]);

  /* delete_multi */
  CHECK_RC(fae_client_delete_multi(c, keys, lens, 4, results), FAE_RESULT_OK);
  CHECK(results[0] == FAE_RESULT_OK && results[1] == FAE_RESULT_NOT_FOUND &&
        results[2] == FAE_RESULT_OK && results[3] == FAE_RESULT_OK);
  CHECK_RC(fae_client_delete_multi(c, keys, lens, 4, NULL), FAE_RESULT_OK);
  CHECK_RC(fae_client_delete_multi(c, keys, NULL, 4, NULL), FAE_RESULT_NULL_PARAMETER);
  memset(&seen, 0, sizeof seen);
  CHECK_RC(fae_client_get_multi(c, keys, lens, 4, on_hit, &seen, results), FAE_RESULT_OK);
  CHECK(seen.calls == 0 && results[0] == FAE_RESULT_NOT_FOUND);
}

static void test_invalid_input(const fae_client *c) {
  char long_key[252];
  const char *injection = "a\r\nset evil 0 0 1\r\nx";
  fae_item *item = SENTINEL_ITEM;
  uint64_t v = 5;
  uint8_t *big;
  const size_t big_len = 1024 * 1024 + 1; /* default max_value_size is 1 MiB */

  memset(long_key, 'k', 251);
  long_key[251] = '\0';

  /* invalid keys, for every kind of command */
  CHECK_RC(fae_client_get(c, K("a b"), &item), FAE_RESULT_INVALID_KEY);
  CHECK(strstr(last_error(), "invalid_key") != NULL);
  CHECK_RC(fae_client_get(c, (const uint8_t *)long_key, 251, &item), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_get(c, (const uint8_t *)long_key, 250, &item), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_get(c, K(injection), &item), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_get(c, (const uint8_t *)"", 0, &item), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_set(c, K(injection), V("x"), 0, 0), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_set(c, K("a b"), V("x"), 0, 0), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_add(c, (const uint8_t *)long_key, 251, V("x"), 0, 0), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_delete(c, K(injection)), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_touch(c, K("a b"), 0), FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_incr(c, K("a\tb"), 1, &v), FAE_RESULT_INVALID_KEY);
  CHECK(item == SENTINEL_ITEM && v == 5);
  /* the injected command must not have run */
  CHECK_RC(fae_client_get(c, K("evil"), &item), FAE_RESULT_NOT_FOUND);

  /* NULL parameters */
  CHECK_RC(fae_client_get(NULL, K("k"), &item), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "client is NULL") == 0);
  CHECK_RC(fae_client_get(c, NULL, 1, &item), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get(c, NULL, 0, &item), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get(c, K("k"), NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_gets(c, K("k"), NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_gat(NULL, K("k"), 0, &item), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_gats(c, NULL, 2, 0, &item), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_set(c, K("k"), NULL, 3, 0, 0), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "value is NULL") == 0);
  CHECK_RC(fae_client_set(NULL, K("k"), V("v"), 0, 0), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_add(c, NULL, 1, V("v"), 0, 0), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_replace(NULL, K("k"), V("v"), 0, 0), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_append(NULL, K("k"), V("v")), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_prepend(c, K("k"), NULL, 1), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_cas(NULL, K("k"), V("v"), 0, 0, 1), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_delete(NULL, K("k")), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_delete(c, NULL, 1), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_touch(NULL, K("k"), 0), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_incr(NULL, K("k"), 1, &v), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_decr(c, K("k"), 1, NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_flush_all(NULL, 0), FAE_RESULT_NULL_PARAMETER);
  CHECK(item == SENTINEL_ITEM && v == 5);

  /* oversized value: refused before any I/O */
  big = (uint8_t *)calloc(1, big_len);
  CHECK(big != NULL);
  if (big != NULL) {
    CHECK_RC(fae_client_set(c, K("t:big"), big, big_len, 0, 0), FAE_RESULT_VALUE_TOO_LARGE);
    CHECK(strstr(last_error(), "max_value_size") != NULL);
    CHECK_RC(fae_client_append(c, K("t:big"), big, big_len), FAE_RESULT_VALUE_TOO_LARGE);
    CHECK_RC(fae_client_set(c, K("t:big"), big, big_len - 1 - 1024, 0, 0), FAE_RESULT_OK);
    {
      fae_set_item it;
      fae_result r = (fae_result)999;
      it.key = (const uint8_t *)"t:big";
      it.key_len = 5;
      it.value = big;
      it.value_len = big_len;
      it.flags = 0;
      it.exptime = 0;
      CHECK_RC(fae_client_set_multi(c, &it, 1, &r), FAE_RESULT_VALUE_TOO_LARGE);
      CHECK(r == 999);
    }
    free(big);
  }
}

static void test_route_and_servers(const fae_client *c, const char *live1, const char *live2) {
  char buf[256];
  char small[4];
  size_t n = 0;
  size_t needed = 0;

  CHECK_RC(fae_client_route_for(c, "get", K("some-key"), buf, sizeof buf, &n), FAE_RESULT_OK);
  CHECK((n == strlen(live1) && memcmp(buf, live1, n) == 0) ||
        (n == strlen(live2) && memcmp(buf, live2, n) == 0));
  needed = n;
  {
    static const char *const ops[] = {"get", "gets", "gat", "gats", "set", "add", "replace",
                                      "append", "prepend", "cas", "delete", "incr", "decr",
                                      "touch"};
    size_t i;
    for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
      size_t m = 0;
      CHECK_RC(fae_client_route_for(c, ops[i], K("some-key"), buf, sizeof buf, &m), FAE_RESULT_OK);
      CHECK(m == needed);
    }
  }
  /* too small: INSUFFICIENT_SIZE, *out_n = the size needed, buffer untouched */
  memset(small, '#', sizeof small);
  n = 0;
  CHECK_RC(fae_client_route_for(c, "get", K("some-key"), small, sizeof small, &n),
           FAE_RESULT_INSUFFICIENT_SIZE);
  CHECK(n == needed && small[0] == '#' && small[3] == '#');
  CHECK(strstr(last_error(), "too small") != NULL);
  n = 0;
  CHECK_RC(fae_client_route_for(c, "get", K("some-key"), NULL, 0, &n), FAE_RESULT_INSUFFICIENT_SIZE);
  CHECK(n == needed);
  CHECK_RC(fae_client_route_for(c, "get", K("some-key"), NULL, 10, &n), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_route_for(c, "get", K("some-key"), buf, sizeof buf, NULL),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_route_for(c, NULL, K("some-key"), buf, sizeof buf, &n),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_route_for(NULL, "get", K("some-key"), buf, sizeof buf, &n),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_route_for(c, "frobnicate", K("some-key"), buf, sizeof buf, &n),
           FAE_RESULT_INVALID_ARGUMENT);
  CHECK(strstr(last_error(), "frobnicate") != NULL);
  CHECK_RC(fae_client_route_for(c, "get", K("bad key"), buf, sizeof buf, &n), FAE_RESULT_INVALID_KEY);

  /* servers: config order, comma-separated */
  {
    char want[256];
    snprintf(want, sizeof want, "%s,%s", live1, live2);
    CHECK_RC(fae_client_servers(c, buf, sizeof buf, &n), FAE_RESULT_OK);
    CHECK(n == strlen(want) && memcmp(buf, want, n) == 0);
    CHECK_RC(fae_client_servers(c, small, sizeof small, &n), FAE_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == strlen(want));
    CHECK_RC(fae_client_servers(NULL, buf, sizeof buf, &n), FAE_RESULT_NULL_PARAMETER);
  }

  /* version: host:port=version for each server */
  CHECK_RC(fae_client_version(c, buf, sizeof buf, &n), FAE_RESULT_OK);
  CHECK(n > strlen(live1) + 1 && memcmp(buf, live1, strlen(live1)) == 0 &&
        buf[strlen(live1)] == '=');
  CHECK(memchr(buf, ',', n) != NULL);
  CHECK_RC(fae_client_version(c, small, sizeof small, &n), FAE_RESULT_INSUFFICIENT_SIZE);
  CHECK_RC(fae_client_version(c, buf, sizeof buf, NULL), FAE_RESULT_NULL_PARAMETER);

  /* reload: the same servers in another mode is accepted; a NULL config is not */
  {
    fae_config *again = NULL;
    char cfg[512];
    snprintf(cfg, sizeof cfg, "{\"servers\": [\"%s\", \"%s\"], \"mode\": \"jump\"}", live1, live2);
    CHECK_RC(fae_config_from_json(K(cfg), &again), FAE_RESULT_OK);
    CHECK_RC(fae_client_reload(c, again), FAE_RESULT_OK);
    fae_config_free(again);
    CHECK_RC(fae_client_reload(c, NULL), FAE_RESULT_NULL_PARAMETER);
    CHECK_RC(fae_client_servers(c, buf, sizeof buf, &n), FAE_RESULT_OK);
    CHECK(n > 0);
  }

  /* stats: ask for the size, then read a JSON snapshot naming each server and its state */
  {
    size_t need = 0;
    char *json;
    CHECK_RC(fae_client_stats_json(c, NULL, 0, &need), FAE_RESULT_INSUFFICIENT_SIZE);
    CHECK(need > 0);
    json = (char *)malloc(need);
    CHECK(json != NULL);
    if (json != NULL) {
      CHECK_RC(fae_client_stats_json(c, json, need, &n), FAE_RESULT_OK);
      CHECK(n == need && json[0] == '{' && json[n - 1] == '}');
      CHECK(contains(json, n, live1));
      CHECK(contains(json, n, "\"state\":\"closed\""));
      free(json);
    }
    CHECK_RC(fae_client_stats_json(NULL, buf, sizeof buf, &n), FAE_RESULT_NULL_PARAMETER);
  }
}

/* A pool with one live and one dead server: the dead server's keys fail with a 2xx code and
 * its address in the error text; the live server's keys still work, also in one multi-get. */
static void test_dead_server(const char *live1, const char *dead) {
  char json[256];
  fae_client *c;
  char key_live[16] = "";
  char key_dead[16] = "";
  int i;
  fae_item *item = SENTINEL_ITEM;

  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\", \"%s\"], \"timeouts\": {\"connect_ms\": %d, \"io_ms\": %d}}",
           live1, dead, 200 * slow(), 500 * slow());
  c = client_for(json);
  CHECK(c != NULL);
  if (c == NULL) {
    return;
  }
  for (i = 0; i < 1000 && (key_live[0] == '\0' || key_dead[0] == '\0'); i++) {
    char key[16];
    char where[128];
    size_t n = 0;
    snprintf(key, sizeof key, "d:%d", i);
    if (fae_client_route_for(c, "get", K(key), where, sizeof where, &n) != FAE_RESULT_OK) {
      continue;
    }
    if (n == strlen(dead) && memcmp(where, dead, n) == 0) {
      memcpy(key_dead, key, sizeof key);
    } else {
      memcpy(key_live, key, sizeof key);
    }
  }
  CHECK(key_live[0] != '\0' && key_dead[0] != '\0');

  {
    fae_result r = fae_client_get(c, K(key_dead), &item);
    CHECK(r >= 200 && r < 300 && fae_result_is_error(r));
    CHECK(strstr(last_error(), dead) != NULL);
    CHECK(item == SENTINEL_ITEM);
  }
  CHECK_RC(fae_client_set(c, K(key_live), V("still here"), 0, 0), FAE_RESULT_OK);
  {
    const uint8_t *keys[2];
    size_t lens[2];
    fae_result results[2];
    struct seen seen;
    fae_result r;
    keys[0] = (const uint8_t *)key_dead;
    lens[0] = strlen(key_dead);
    keys[1] = (const uint8_t *)key_live;
    lens[1] = strlen(key_live);
    memset(&seen, 0, sizeof seen);
    r = fae_client_get_multi(c, keys, lens, 2, on_hit, &seen, results);
    CHECK(r >= 200 && r < 300);
    CHECK(strstr(last_error(), dead) != NULL);
    CHECK(results[0] == r && results[1] == FAE_RESULT_OK);
    CHECK(seen.calls == 1 && seen.index[0] == 1 && strcmp(seen.value[0], "still here") == 0);

    r = fae_client_delete_multi(c, keys, lens, 2, results);
    CHECK(r >= 200 && r < 300 && results[0] == r && results[1] == FAE_RESULT_OK);
  }
  {
    char buf[256];
    size_t n = 0;
    fae_result r = fae_client_version(c, buf, sizeof buf, &n);
    CHECK(r >= 200 && r < 300);
    r = fae_client_flush_all(c, 0);
    CHECK(r >= 200 && r < 300);
  }
  fae_client_free(c);
}

struct worker {
  const fae_client *client;
  int id;
  int errors;
};

static void *worker_main(void *arg) {
  struct worker *w = (struct worker *)arg;
  int i;
  for (i = 0; i < 50; i++) {
    char key[32];
    char value[32];
    fae_item *item = NULL;
    snprintf(key, sizeof key, "thr:%d:%d", w->id, i);
    snprintf(value, sizeof value, "v%d-%d", w->id, i);
    if (fae_client_set(w->client, K(key), V(value), 0, 0) != FAE_RESULT_OK ||
        fae_client_get(w->client, K(key), &item) != FAE_RESULT_OK) {
      w->errors++;
      continue;
    }
    if (!item_is(item, value)) {
      w->errors++;
    }
    fae_item_free(item);
  }
  return NULL;
}

/* One client shared by several threads. */
static void test_threads(const fae_client *c) {
  pthread_t threads[4];
  struct worker workers[4];
  int i;
  for (i = 0; i < 4; i++) {
    workers[i].client = c;
    workers[i].id = i;
    workers[i].errors = 0;
    CHECK(pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0);
  }
  for (i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    CHECK(workers[i].errors == 0);
  }
}

/* Does the whole output buffer buf[0..n) equal the NUL-terminated want? */
static int text_is(const char *buf, size_t n, const char *want) {
  return n == strlen(want) && memcmp(buf, want, n) == 0;
}

/* The client's stats JSON, malloc'ed and NUL-terminated (NULL on failure). */
static char *stats_json(const fae_client *c) {
  size_t need = 0, n = 0;
  char *json;
  if (fae_client_stats_json(c, NULL, 0, &need) != FAE_RESULT_INSUFFICIENT_SIZE) {
    return NULL;
  }
  json = (char *)malloc(need + 1);
  if (json == NULL) {
    return NULL;
  }
  if (fae_client_stats_json(c, json, need, &n) != FAE_RESULT_OK) {
    free(json);
    return NULL;
  }
  json[n] = '\0';
  return json;
}

/* ---------------------------------------------------------------------------------------- */
/* Stampede protection: leases, invalidate, get_or_set. */

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Read `key` with a lease; *lease_out gets the lease (NULL on error). */
static fae_lease_kind lease_read(const fae_client *c, const char *key, fae_lease **lease_out) {
  *lease_out = NULL;
  CHECK_RC(fae_client_get_or_lease(c, K(key), lease_out), FAE_RESULT_OK);
  return fae_lease_status(*lease_out);
}

/* Does the lease carry exactly `want` (with `flags`) as its value to serve? */
static int lease_item_is(const fae_lease *lease, const char *want, uint32_t flags) {
  const fae_item *item = fae_lease_item(lease);
  return item != NULL && item_is(item, want) && fae_item_flags(item) == flags;
}

/* miss -> token, wait, set_with_lease stored, hit; a delete between lease and fill wins;
 * invalidate -> refresh, then stale. */
static void test_leases(const fae_client *c) {
  fae_lease *lease = SENTINEL_LEASE;
  fae_item *item = SENTINEL_ITEM;
  bool stored = false;
  bool found = false;
  uint64_t token;
  uint64_t refresh_token;

  /* caller errors: out-params untouched */
  CHECK_RC(fae_client_get_or_lease(NULL, K("l:a"), &lease), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_or_lease(c, NULL, 3, &lease), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_or_lease(c, K("l:a"), NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "lease_out is NULL") == 0);
  CHECK_RC(fae_client_get_or_lease(c, K("bad key"), &lease), FAE_RESULT_INVALID_KEY);
  CHECK(lease == SENTINEL_LEASE);
  CHECK_RC(fae_client_set_with_lease(NULL, K("l:a"), V("x"), 0, 0, 1, &stored),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_set_with_lease(c, K("l:a"), NULL, 1, 0, 0, 1, &stored),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_set_with_lease(c, K("l:a"), V("x"), 0, 0, 1, NULL),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_set_with_lease(c, K("bad key"), V("x"), 0, 0, 1, &stored),
           FAE_RESULT_INVALID_KEY);
  CHECK_RC(fae_client_invalidate(NULL, K("l:a"), 0, &found), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_invalidate(c, K("l:a"), 0, NULL), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_invalidate(c, K("bad key"), 0, &found), FAE_RESULT_INVALID_KEY);
  CHECK(!stored && !found);
  CHECK(fae_lease_status(NULL) == FAE_LEASE_WAIT);
  CHECK(fae_lease_item(NULL) == NULL && fae_lease_token(NULL) == 0);
  fae_lease_free(NULL);

  /* a miss wins the lease (a token, nothing to serve); the next reader waits */
  fae_client_delete(c, K("l:a"));
  CHECK(lease_read(c, "l:a", &lease) == FAE_LEASE_MISS);
  CHECK(lease != SENTINEL_LEASE && lease != NULL);
  token = fae_lease_token(lease);
  CHECK(token != 0 && fae_lease_item(lease) == NULL);
  fae_lease_free(lease);
  CHECK(lease_read(c, "l:a", &lease) == FAE_LEASE_WAIT);
  CHECK(fae_lease_token(lease) == 0 && fae_lease_item(lease) == NULL);
  fae_lease_free(lease);
  CHECK_RC(fae_client_get(c, K("l:a"), &item), FAE_RESULT_NOT_FOUND); /* the stub is a miss */
  CHECK(item == SENTINEL_ITEM);
  /* the holder fills; readers hit */
  CHECK_RC(fae_client_set_with_lease(c, K("l:a"), V("filled"), 9, 0, token, &stored),
           FAE_RESULT_OK);
  CHECK(stored);
  CHECK(lease_read(c, "l:a", &lease) == FAE_LEASE_HIT);
  CHECK(lease_item_is(lease, "filled", 9) && fae_lease_token(lease) == 0);
  fae_lease_free(lease);
  CHECK(value_is(c, "l:a", "filled"));
  /* a spent token fills nothing */
  stored = true;
  CHECK_RC(fae_client_set_with_lease(c, K("l:a"), V("again"), 0, 0, token, &stored),
           FAE_RESULT_OK);
  CHECK(!stored && value_is(c, "l:a", "filled"));

  /* a delete between the lease and the fill wins: the late fill is not stored */
  fae_client_delete(c, K("l:b"));
  CHECK(lease_read(c, "l:b", &lease) == FAE_LEASE_MISS);
  token = fae_lease_token(lease);
  fae_lease_free(lease);
  CHECK_RC(fae_client_delete(c, K("l:b")), FAE_RESULT_OK);
  stored = true;
  CHECK_RC(fae_client_set_with_lease(c, K("l:b"), V("late"), 0, 0, token, &stored),
           FAE_RESULT_OK);
  CHECK(!stored);
  CHECK_RC(fae_client_get(c, K("l:b"), &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);

  /* invalidate: the first lease reader refreshes, the others get it stale, plain reads miss.
   * (Plain reads come last: memcached hands the refresh to the first reader of a stale item,
   * lease read or not.) */
  CHECK_RC(fae_client_set(c, K("l:c"), V("old"), 4, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_invalidate(c, K("l:c"), 30, &found), FAE_RESULT_OK);
  CHECK(found);
  CHECK(lease_read(c, "l:c", &lease) == FAE_LEASE_REFRESH);
  refresh_token = fae_lease_token(lease);
  CHECK(refresh_token != 0 && lease_item_is(lease, "old", 4));
  fae_lease_free(lease);
  CHECK(lease_read(c, "l:c", &lease) == FAE_LEASE_STALE);
  CHECK(fae_lease_token(lease) == 0 && lease_item_is(lease, "old", 4));
  fae_lease_free(lease);
  CHECK_RC(fae_client_get(c, K("l:c"), &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);
  CHECK_RC(fae_client_set_with_lease(c, K("l:c"), V("new"), 5, 0, refresh_token, &stored),
           FAE_RESULT_OK);
  CHECK(stored);
  CHECK(lease_read(c, "l:c", &lease) == FAE_LEASE_HIT);
  CHECK(lease_item_is(lease, "new", 5));
  fae_lease_free(lease);
  /* a fill whose lease predates an invalidate fails */
  CHECK_RC(fae_client_invalidate(c, K("l:c"), 30, &found), FAE_RESULT_OK);
  CHECK(lease_read(c, "l:c", &lease) == FAE_LEASE_REFRESH);
  token = fae_lease_token(lease);
  fae_lease_free(lease);
  CHECK_RC(fae_client_invalidate(c, K("l:c"), 30, &found), FAE_RESULT_OK);
  CHECK_RC(fae_client_set_with_lease(c, K("l:c"), V("lost"), 0, 0, token, &stored),
           FAE_RESULT_OK);
  CHECK(!stored);
  /* invalidating a missing key */
  found = true;
  fae_client_delete(c, K("l:missing"));
  CHECK_RC(fae_client_invalidate(c, K("l:missing"), 30, &found), FAE_RESULT_OK);
  CHECK(!found);
}

/* What a compute callback does, and what it saw. Shared by the storm's threads. */
struct compute_ctx {
  pthread_mutex_t lock;
  int calls;
  int ret;           /* what the callback returns */
  const char *value; /* NULL: return without calling fae_value_sink_set */
  uint32_t flags;
  int sleep_ms;            /* how long computing takes */
  const fae_client *reenter; /* non-NULL: call libfae from inside the callback */
  char key[64];            /* the key it was called with */
  fae_result sink_rc;
};

static void compute_init(struct compute_ctx *x, int ret, const char *value, uint32_t flags) {
  memset(x, 0, sizeof *x);
  pthread_mutex_init(&x->lock, NULL);
  x->ret = ret;
  x->value = value;
  x->flags = flags;
  x->sink_rc = (fae_result)999;
}

static int compute_calls(struct compute_ctx *x) {
  int n;
  pthread_mutex_lock(&x->lock);
  n = x->calls;
  pthread_mutex_unlock(&x->lock);
  return n;
}

static int compute(void *userdata, const uint8_t *key, size_t key_len, fae_value_sink *sink) {
  struct compute_ctx *x = (struct compute_ctx *)userdata;
  int first;
  pthread_mutex_lock(&x->lock);
  first = x->calls++ == 0;
  if (first && key_len < sizeof x->key) {
    memcpy(x->key, key, key_len);
    x->key[key_len] = '\0';
  }
  pthread_mutex_unlock(&x->lock);
  if (x->sleep_ms > 0) {
    sleep_ms(x->sleep_ms);
  }
  if (x->reenter != NULL) {
    /* libfae calls are fine in here; this one fails and leaves an error text behind */
    fae_item *item = NULL;
    if (fae_client_get(x->reenter, K("bad key"), &item) != FAE_RESULT_INVALID_KEY) {
      return -100;
    }
  }
  if (x->value != NULL) {
    fae_result rc = fae_value_sink_set(sink, V(x->value), x->flags);
    if (first) {
      x->sink_rc = rc;
    }
    if (rc != FAE_RESULT_OK) {
      return -200;
    }
  }
  return x->ret;
}

struct stormer {
  const fae_client *client;
  struct compute_ctx *ctx;
  pthread_barrier_t *start;
  fae_result rc;
  int got_value;
};

static void *storm_main(void *arg) {
  struct stormer *s = (struct stormer *)arg;
  fae_item *item = NULL;
  pthread_barrier_wait(s->start);
  s->rc = fae_client_get_or_set(s->client, K("gos:storm"), 0, compute, s->ctx, &item);
  if (s->rc == FAE_RESULT_OK) {
    s->got_value = item_is(item, "storm value") && fae_item_flags(item) == 3;
    fae_item_free(item);
  }
  return NULL;
}

/* get_or_set: computed once then hit; a failing callback stores nothing; 16 threads storming
 * one key run the callback once and all get its value. */
static void test_get_or_set(const char *live1, const char *live2) {
  char json[512];
  fae_client *c;
  fae_item *item = SENTINEL_ITEM;
  struct compute_ctx ctx;

  /* followers wait for the leader for up to 2 * wait_ms: generous, for valgrind */
  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\", \"%s\"], \"timeouts\": {\"connect_ms\": %d, \"io_ms\": %d},"
           " \"stampede\": {\"wait_ms\": %d}}",
           live1, live2, 200 * slow(), 2000 * slow(), 5000 * slow());
  c = client_for(json);
  CHECK(c != NULL);
  if (c == NULL) {
    return;
  }

  /* caller errors: found before any I/O, the callback is not called */
  compute_init(&ctx, 0, "x", 0);
  CHECK_RC(fae_client_get_or_set(NULL, K("gos:a"), 0, compute, &ctx, &item),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_or_set(c, NULL, 1, 0, compute, &ctx, &item), FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_or_set(c, K("gos:a"), 0, NULL, &ctx, &item), FAE_RESULT_NULL_PARAMETER);
  CHECK(strcmp(last_error(), "compute is NULL") == 0);
  CHECK_RC(fae_client_get_or_set(c, K("gos:a"), 0, compute, &ctx, NULL),
           FAE_RESULT_NULL_PARAMETER);
  CHECK_RC(fae_client_get_or_set(c, K("bad key"), 0, compute, &ctx, &item),
           FAE_RESULT_INVALID_KEY);
  CHECK(compute_calls(&ctx) == 0 && item == SENTINEL_ITEM);
  CHECK_RC(fae_value_sink_set(NULL, V("x"), 0), FAE_RESULT_NULL_PARAMETER);
  pthread_mutex_destroy(&ctx.lock);

  /* a miss: computed once (with the caller's key), stored with its flags; then a hit */
  fae_client_delete(c, K("gos:once"));
  compute_init(&ctx, 0, "computed", 11);
  ctx.reenter = c;
  CHECK_RC(fae_client_get_or_set(c, K("gos:once"), 300, compute, &ctx, &item), FAE_RESULT_OK);
  CHECK(item != SENTINEL_ITEM && item_is(item, "computed") && fae_item_flags(item) == 11);
  fae_item_free(item);
  CHECK(compute_calls(&ctx) == 1 && strcmp(ctx.key, "gos:once") == 0);
  CHECK(ctx.sink_rc == FAE_RESULT_OK);
  CHECK(strcmp(last_error(), "") == 0); /* the callback's failed get left no text */
  item = SENTINEL_ITEM;
  CHECK_RC(fae_client_get_or_set(c, K("gos:once"), 300, compute, &ctx, &item), FAE_RESULT_OK);
  CHECK(item != SENTINEL_ITEM && item_is(item, "computed") && fae_item_flags(item) == 11);
  fae_item_free(item);
  CHECK(compute_calls(&ctx) == 1);
  CHECK(value_is(c, "gos:once", "computed"));
  pthread_mutex_destroy(&ctx.lock);

  /* a failing callback: COMPUTE_FAILED with its number, nothing stored */
  fae_client_delete(c, K("gos:fail"));
  compute_init(&ctx, 7, "never stored", 0);
  item = SENTINEL_ITEM;
  CHECK_RC(fae_client_get_or_set(c, K("gos:fail"), 0, compute, &ctx, &item),
           FAE_RESULT_COMPUTE_FAILED);
  CHECK(fae_result_is_error(FAE_RESULT_COMPUTE_FAILED));
  CHECK(strcmp(last_error(), "compute_failed: the compute callback returned 7") == 0);
  CHECK(compute_calls(&ctx) == 1 && item == SENTINEL_ITEM);
  CHECK_RC(fae_client_get(c, K("gos:fail"), &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);
  pthread_mutex_destroy(&ctx.lock);
  /* returning 0 without a value is a failure too */
  fae_client_delete(c, K("gos:novalue"));
  compute_init(&ctx, 0, NULL, 0);
  CHECK_RC(fae_client_get_or_set(c, K("gos:novalue"), 0, compute, &ctx, &item),
           FAE_RESULT_COMPUTE_FAILED);
  CHECK(strstr(last_error(), "without calling fae_value_sink_set") != NULL);
  CHECK_RC(fae_client_get(c, K("gos:novalue"), &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);
  pthread_mutex_destroy(&ctx.lock);
  /* an empty value is a value */
  fae_client_delete(c, K("gos:empty"));
  compute_init(&ctx, 0, "", 6);
  CHECK_RC(fae_client_get_or_set(c, K("gos:empty"), 0, compute, &ctx, &item), FAE_RESULT_OK);
  CHECK(item != SENTINEL_ITEM && item_is(item, "") && fae_item_flags(item) == 6);
  fae_item_free(item);
  item = SENTINEL_ITEM;
  pthread_mutex_destroy(&ctx.lock);

  /* 16 threads storm one missing key: the callback runs once and everyone gets its value */
  {
    enum { N = 16 };
    pthread_t threads[N];
    struct stormer stormers[N];
    pthread_barrier_t start;
    int i;
    fae_client_delete(c, K("gos:storm"));
    compute_init(&ctx, 0, "storm value", 3);
    ctx.sleep_ms = 200 * slow();
    pthread_barrier_init(&start, NULL, N);
    for (i = 0; i < N; i++) {
      stormers[i].client = c;
      stormers[i].ctx = &ctx;
      stormers[i].start = &start;
      stormers[i].rc = (fae_result)999;
      stormers[i].got_value = 0;
      if (pthread_create(&threads[i], NULL, storm_main, &stormers[i]) != 0) {
        fprintf(stderr, "FAIL: pthread_create (the started threads wait at the barrier)\n");
        exit(1);
      }
    }
    for (i = 0; i < N; i++) {
      pthread_join(threads[i], NULL);
      CHECK_RC(stormers[i].rc, FAE_RESULT_OK);
      CHECK(stormers[i].got_value);
    }
    CHECK(compute_calls(&ctx) == 1);
    CHECK(value_is(c, "gos:storm", "storm value"));
    pthread_barrier_destroy(&start);
    pthread_mutex_destroy(&ctx.lock);
  }

  /* the stampede counters are in the stats */
  {
    char *stats = stats_json(c);
    CHECK(stats != NULL && strstr(stats, "\"stampede\":{") != NULL);
    CHECK(stats != NULL && strstr(stats, "\"computes\":") != NULL);
    free(stats);
  }
  fae_client_free(c);
}

static void test_flush_and_close(fae_client *c) {
  fae_item *item = SENTINEL_ITEM;
  uint64_t v = 9;
  fae_result results[1];
  const uint8_t *keys[1];
  size_t lens[1];
  struct seen seen;
  fae_set_item it;

  CHECK_RC(fae_client_set(c, K("t:flushme"), V("x"), 0, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_flush_all(c, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("t:flushme"), &item), FAE_RESULT_NOT_FOUND);

  CHECK_RC(fae_client_close(c), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("k"), &item), FAE_RESULT_CLIENT_CLOSED);
  CHECK(strstr(last_error(), "closed") != NULL);
  CHECK_RC(fae_client_set(c, K("k"), V("v"), 0, 0), FAE_RESULT_CLIENT_CLOSED);
  CHECK_RC(fae_client_delete(c, K("k")), FAE_RESULT_CLIENT_CLOSED);
  CHECK_RC(fae_client_incr(c, K("k"), 1, &v), FAE_RESULT_CLIENT_CLOSED);
  CHECK_RC(fae_client_touch(c, K("k"), 1), FAE_RESULT_CLIENT_CLOSED);
  CHECK_RC(fae_client_flush_all(c, 0), FAE_RESULT_CLIENT_CLOSED);
  keys[0] = (const uint8_t *)"k";
  lens[0] = 1;
  results[0] = (fae_result)999;
  memset(&seen, 0, sizeof seen);
  CHECK_RC(fae_client_get_multi(c, keys, lens, 1, on_hit, &seen, results),
           FAE_RESULT_CLIENT_CLOSED);
  CHECK_RC(fae_client_delete_multi(c, keys, lens, 1, results), FAE_RESULT_CLIENT_CLOSED);
  it.key = keys[0];
  it.key_len = 1;
  it.value = NULL;
  it.value_len = 0;
  it.flags = 0;
  it.exptime = 0;
  CHECK_RC(fae_client_set_multi(c, &it, 1, results), FAE_RESULT_CLIENT_CLOSED);
  CHECK(results[0] == 999 && seen.calls == 0 && item == SENTINEL_ITEM && v == 9);
  {
    fae_lease *lease = SENTINEL_LEASE;
    bool flag = false;
    struct compute_ctx ctx;
    compute_init(&ctx, 0, "x", 0);
    CHECK_RC(fae_client_get_or_lease(c, K("k"), &lease), FAE_RESULT_CLIENT_CLOSED);
    CHECK_RC(fae_client_set_with_lease(c, K("k"), V("v"), 0, 0, 1, &flag),
             FAE_RESULT_CLIENT_CLOSED);
    CHECK_RC(fae_client_invalidate(c, K("k"), 0, &flag), FAE_RESULT_CLIENT_CLOSED);
    CHECK_RC(fae_client_get_or_set(c, K("k"), 0, compute, &ctx, &item), FAE_RESULT_CLIENT_CLOSED);
    CHECK(lease == SENTINEL_LEASE && !flag && item == SENTINEL_ITEM && compute_calls(&ctx) == 0);
    pthread_mutex_destroy(&ctx.lock);
  }
  CHECK_RC(fae_client_close(c), FAE_RESULT_OK); /* closing twice is fine */
}

/* Route trees from the config JSON: a failover from a dead pool to a gutter; a local near
 * cache in front of a failover; route_for lists every destination a request could touch. */
static void test_routes(const char *live1, const char *live2, const char *dead) {
  char json[1024];
  char buf[512];
  char want[256];
  size_t n = 0;
  fae_client *c;
  fae_item *item = SENTINEL_ITEM;
  char *stats;

  /* failover: main (dead) -> gutter (live2, TTLs capped at 10 s) */
  snprintf(json, sizeof json,
           "{\"pools\": {\"main\": {\"servers\": [\"%s\"]}, \"gutter\": {\"servers\": [\"%s\"]}},"
           " \"route\": {\"type\": \"failover\", \"children\": [\"main\","
           " {\"type\": \"gutter\", \"pool\": \"gutter\", \"max_ttl\": 10}]},"
           " \"timeouts\": {\"connect_ms\": %d, \"io_ms\": %d}}",
           dead, live2, 200 * slow(), 2000 * slow());
  c = client_for(json);
  CHECK(c != NULL);
  if (c != NULL) {
    snprintf(want, sizeof want, "%s,%s", dead, live2);
    CHECK_RC(fae_client_route_for(c, "set", K("r:k"), buf, sizeof buf, &n), FAE_RESULT_OK);
    CHECK(text_is(buf, n, want));
    CHECK_RC(fae_client_route_for(c, "get", K("r:k"), buf, sizeof buf, &n), FAE_RESULT_OK);
    CHECK(text_is(buf, n, want));
    CHECK_RC(fae_client_route_for(c, "delete", K("r:k"), NULL, 0, &n),
             FAE_RESULT_INSUFFICIENT_SIZE);
    CHECK(n == strlen(want));
    CHECK_RC(fae_client_set(c, K("r:k"), V("via the gutter"), 0, 3600), FAE_RESULT_OK);
    CHECK(value_is(c, "r:k", "via the gutter"));
    CHECK_RC(fae_client_get(c, K("r:missing"), &item), FAE_RESULT_NOT_FOUND);
    CHECK_RC(fae_client_delete(c, K("r:k")), FAE_RESULT_OK);
    CHECK_RC(fae_client_get(c, K("r:k"), &item), FAE_RESULT_NOT_FOUND);
    CHECK(item == SENTINEL_ITEM);
    stats = stats_json(c);
    CHECK(stats != NULL);
    if (stats != NULL) {
      CHECK(strstr(stats, "\"routes\":{\"route\":{") != NULL);
      CHECK(strstr(stats, "\"type\":\"failover\"") != NULL);
      CHECK(strstr(stats, "\"route.children[1]\":{") != NULL);
      CHECK(strstr(stats, "\"type\":\"gutter\"") != NULL);
      free(stats);
    }
    fae_client_free(c);
  }

  /* a local near cache in front of the same failover over live servers */
  snprintf(json, sizeof json,
           "{\"pools\": {\"main\": {\"servers\": [\"%s\"]}, \"gutter\": {\"servers\": [\"%s\"]}},"
           " \"route\": {\"type\": \"local\", \"ttl_ms\": 60000, \"max_items\": 100,"
           " \"route\": {\"type\": \"failover\", \"children\": [\"main\","
           " {\"type\": \"gutter\", \"pool\": \"gutter\", \"max_ttl\": 10}]}},"
           " \"timeouts\": {\"connect_ms\": %d, \"io_ms\": %d}}",
           live1, live2, 200 * slow(), 2000 * slow());
  c = client_for(json);
  CHECK(c != NULL);
  if (c != NULL) {
    snprintf(want, sizeof want, "local,%s,%s", live1, live2);
    CHECK_RC(fae_client_route_for(c, "set", K("r:near"), buf, sizeof buf, &n), FAE_RESULT_OK);
    CHECK(text_is(buf, n, want));
    CHECK_RC(fae_client_set(c, K("r:near"), V("near"), 0, 0), FAE_RESULT_OK);
    CHECK(value_is(c, "r:near", "near")); /* fills the near cache */
    CHECK(value_is(c, "r:near", "near")); /* a local hit */
    stats = stats_json(c);
    CHECK(stats != NULL && strstr(stats, "\"type\":\"local\"") != NULL);
    CHECK(stats != NULL && strstr(stats, "\"local_hits\":1") != NULL);
    free(stats);
    CHECK_RC(fae_client_delete(c, K("r:near")), FAE_RESULT_OK);
    CHECK_RC(fae_client_get(c, K("r:near"), &item), FAE_RESULT_NOT_FOUND);
    fae_client_free(c);
  }
}

/* A config with no servers and no pools is the embedded in-process cache. */
/* Virtual buckets: every bucket of a 4-bucket map on the second server, bucket 0 on the move
 * back to the first; fae_client_bucket_for names the bucket, a plain pool gives nothing. */
static void test_buckets(const fae_client *plain, const char *live1, const char *live2) {
  char json[1024];
  char buf[256];
  size_t n = 99;
  fae_client *c;

  snprintf(json, sizeof json,
           "{\"pools\": {\"main\": {\"servers\": [\"%s\", \"%s\"],"
           " \"buckets\": {\"count\": 4, \"version\": 3, \"map\": [1, 1, 1, 1],"
           " \"moves\": [{\"bucket\": 0, \"to\": 0, \"phase\": \"dual_write\"}]}}}}",
           live1, live2);
  c = client_for(json);
  CHECK(c != NULL);
  if (c != NULL) {
    int i;
    int moving = 0;
    for (i = 0; i < 32; i++) {
      char key[16];
      snprintf(key, sizeof key, "b:%d", i);
      n = 0;
      CHECK_RC(fae_client_bucket_for(c, "get", (const uint8_t *)key, strlen(key), buf,
                                     sizeof buf, &n),
               FAE_RESULT_OK);
      CHECK(n > 0 && n < sizeof buf);
      buf[n < sizeof buf ? n : sizeof buf - 1] = '\0';
      CHECK(strncmp(buf, "main/", 5) == 0 && strstr(buf, "@3") != NULL);
      if (strncmp(buf, "main/0@3", 8) == 0) {
        CHECK(strcmp(buf, "main/0@3 dual_write:1->0") == 0);
        moving++;
      } else {
        CHECK(strchr(buf, ' ') == NULL);
        /* a bucket not on the move is served by its map's server only */
        CHECK_RC(fae_client_route_for(c, "get", (const uint8_t *)key, strlen(key), buf,
                                      sizeof buf, &n),
                 FAE_RESULT_OK);
        CHECK(text_is(buf, n, live2));
      }
    }
    CHECK(moving > 0);
    CHECK_RC(fae_client_bucket_for(c, "nope", K("b:1"), buf, sizeof buf, &n),
             FAE_RESULT_INVALID_ARGUMENT);
    CHECK_RC(fae_client_bucket_for(c, NULL, K("b:1"), buf, sizeof buf, &n),
             FAE_RESULT_NULL_PARAMETER);
    fae_client_free(c);
  }
  n = 99;
  CHECK_RC(fae_client_bucket_for(plain, "get", K("b:1"), NULL, 0, &n), FAE_RESULT_OK);
  CHECK(n == 0);
}

static void test_embedded_cache(void) {
  char buf[64];
  size_t n = 99;
  uint64_t v = 0;
  uint64_t cas;
  fae_item *item = SENTINEL_ITEM;
  fae_client *c = client_for("{}");
  CHECK(c != NULL);
  if (c == NULL) {
    return;
  }
  CHECK_RC(fae_client_route_for(c, "set", K("e:k"), buf, sizeof buf, &n), FAE_RESULT_OK);
  CHECK(text_is(buf, n, "local"));
  CHECK_RC(fae_client_servers(c, buf, sizeof buf, &n), FAE_RESULT_OK);
  CHECK(n == 0);
  CHECK_RC(fae_client_get(c, K("e:k"), &item), FAE_RESULT_NOT_FOUND);
  CHECK(item == SENTINEL_ITEM);
  CHECK_RC(fae_client_set(c, K("e:k"), V("v"), 7, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("e:k"), &item), FAE_RESULT_OK);
  CHECK(item != SENTINEL_ITEM && item_is(item, "v") && fae_item_flags(item) == 7);
  fae_item_free(item);
  item = SENTINEL_ITEM;
  CHECK_RC(fae_client_add(c, K("e:k"), V("no"), 0, 0), FAE_RESULT_NOT_STORED);
  CHECK_RC(fae_client_replace(c, K("e:none"), V("no"), 0, 0), FAE_RESULT_NOT_STORED);
  CHECK_RC(fae_client_append(c, K("e:k"), V("!")), FAE_RESULT_OK);
  CHECK(value_is(c, "e:k", "v!"));
  CHECK_RC(fae_client_gets(c, K("e:k"), &item), FAE_RESULT_OK);
  cas = item != SENTINEL_ITEM ? fae_item_cas(item) : 0;
  if (item != SENTINEL_ITEM) {
    fae_item_free(item);
  }
  item = SENTINEL_ITEM;
  CHECK(cas != 0);
  CHECK_RC(fae_client_cas(c, K("e:k"), V("swapped"), 0, 0, cas), FAE_RESULT_OK);
  CHECK_RC(fae_client_cas(c, K("e:k"), V("stale"), 0, 0, cas), FAE_RESULT_EXISTS);
  CHECK_RC(fae_client_cas(c, K("e:none"), V("x"), 0, 0, cas), FAE_RESULT_NOT_FOUND);
  CHECK(value_is(c, "e:k", "swapped"));
  CHECK_RC(fae_client_touch(c, K("e:k"), 100), FAE_RESULT_OK);
  CHECK_RC(fae_client_touch(c, K("e:none"), 100), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_incr(c, K("e:n"), 1, &v), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_set(c, K("e:n"), V("10"), 0, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_incr(c, K("e:n"), 5, &v), FAE_RESULT_OK);
  CHECK(v == 15);
  CHECK_RC(fae_client_decr(c, K("e:n"), 20, &v), FAE_RESULT_OK);
  CHECK(v == 0);
  CHECK_RC(fae_client_delete(c, K("e:k")), FAE_RESULT_OK);
  CHECK_RC(fae_client_delete(c, K("e:k")), FAE_RESULT_NOT_FOUND);
  CHECK_RC(fae_client_flush_all(c, 0), FAE_RESULT_OK);
  CHECK_RC(fae_client_get(c, K("e:n"), &item), FAE_RESULT_NOT_FOUND);
  /* no leases in-process: a miss has token 0, and its fill is an add */
  {
    fae_lease *lease = NULL;
    bool stored = false;
    CHECK(lease_read(c, "e:l", &lease) == FAE_LEASE_MISS);
    CHECK(fae_lease_token(lease) == 0 && fae_lease_item(lease) == NULL);
    fae_lease_free(lease);
    CHECK_RC(fae_client_set_with_lease(c, K("e:l"), V("v"), 1, 0, 0, &stored), FAE_RESULT_OK);
    CHECK(stored);
    CHECK_RC(fae_client_set_with_lease(c, K("e:l"), V("w"), 1, 0, 0, &stored), FAE_RESULT_OK);
    CHECK(!stored && value_is(c, "e:l", "v"));
    CHECK(lease_read(c, "e:l", &lease) == FAE_LEASE_HIT && lease_item_is(lease, "v", 1));
    fae_lease_free(lease);
  }
  fae_client_free(c);
}

int main(int argc, char **argv) {
  char json[512];
  fae_client *c;

  if (argc != 5) {
    fprintf(stderr, "usage: %s LIVE1 LIVE2 DEAD TMPDIR\n", argv[0]);
    return 2;
  }
  test_results_and_messages();
  test_config(argv[4], argv[1]);
  test_client_new(argv[1]);

  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\", \"%s\"], \"timeouts\": {\"connect_ms\": %d, \"io_ms\": %d}}",
           argv[1], argv[2], 100 * slow(), 2000 * slow());
  c = client_for(json);
  CHECK(c != NULL);
  if (c != NULL) {
    test_storage(c);
    test_arith(c);
    test_multi(c);
    test_invalid_input(c);
    test_route_and_servers(c, argv[1], argv[2]);
    test_buckets(c, argv[1], argv[2]);
    test_threads(c);
    test_leases(c);
    test_flush_and_close(c);
    fae_client_free(c);
  }
  test_dead_server(argv[1], argv[3]);
  test_routes(argv[1], argv[2], argv[3]);
  test_get_or_set(argv[1], argv[2]);
  test_embedded_cache();

  printf("api_test: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
