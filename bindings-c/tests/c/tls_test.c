/* The C API over TLS with memcached's text-protocol login (`-Z` and `-Y`).
 *
 *   tls_test TLS_ADDR CA_FILE OTHER_CA_FILE PASSWORD_FILE WRONG_PASSWORD_FILE
 *
 * TLS_ADDR is a memcached serving TLS only, with a certificate for 127.0.0.1 signed by CA_FILE,
 * that requires the login `app` with the password in PASSWORD_FILE. OTHER_CA_FILE is a CA that
 * signed nothing. Run by bindings-c/tests/c_programs.rs. Prints one line per failed check and
 * a summary; exit status 0 only if every check passed. Compiles as C99 and as C++. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <fae.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* This thread's last error text (empty when there is none). */
static const char *last_error(void) {
  static char buf[1024];
  size_t n = 0;
  if (fae_last_error_message(buf, sizeof buf, &n) != FAE_RESULT_OK) buf[0] = '\0';
  return buf;
}

/* A client for `json`, or NULL (with a failed check) when the config is refused. */
static fae_client *client_for(const char *json) {
  fae_config *config = NULL;
  fae_client *client = NULL;
  fae_result rc = fae_config_from_json((const uint8_t *)json, strlen(json), &config);
  CHECK(rc == FAE_RESULT_OK);
  if (rc != FAE_RESULT_OK) {
    fprintf(stderr, "config refused: %s\n", last_error());
    return NULL;
  }
  rc = fae_client_new(config, &client);
  fae_config_free(config);
  CHECK(rc == FAE_RESULT_OK);
  return rc == FAE_RESULT_OK ? client : NULL;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const uint8_t KEY[] = "c:tls:key";
static const uint8_t VALUE[] = "a value that crossed TLS";

/* The error text of the last failing_set. */
static char failed_text[1024];

/* A set through a client that must fail: the code it gave (its text in failed_text), within
 * the connect deadline. */
static fae_result failing_set(const char *json, const char *what) {
  fae_client *c = client_for(json);
  fae_result rc;
  double t0;
  if (c == NULL) return FAE_RESULT_OK;
  t0 = now_s();
  rc = fae_client_set(c, KEY, sizeof KEY - 1, VALUE, sizeof VALUE - 1, 0, 0);
  /* connect_ms 500 + io_ms 1000 below: a hang would overrun both. */
  CHECK(now_s() - t0 < 3.0);
  snprintf(failed_text, sizeof failed_text, "%s", last_error());
  if (rc == FAE_RESULT_OK) fprintf(stderr, "%s: the set succeeded\n", what);
  fae_client_free(c);
  return rc;
}

int main(int argc, char **argv) {
  char json[4096];
  const char *addr, *ca, *other_ca, *pw, *wrong_pw;
  fae_client *c;
  fae_item *item = NULL;
  fae_result rc;
  if (argc != 6) {
    fprintf(stderr, "usage: tls_test TLS_ADDR CA_FILE OTHER_CA_FILE PASSWORD_FILE WRONG_PASSWORD_FILE\n");
    return 2;
  }
  addr = argv[1];
  ca = argv[2];
  other_ca = argv[3];
  pw = argv[4];
  wrong_pw = argv[5];

  /* The right CA and password: set, get, a miss, all over TLS after the login. */
  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\"], \"timeouts\": {\"connect_ms\": 500, \"io_ms\": 1000},"
           " \"tls\": {\"ca_file\": \"%s\"}, \"auth\": {\"username\": \"app\", \"password_file\": \"%s\"}}",
           addr, ca, pw);
  c = client_for(json);
  if (c != NULL) {
    rc = fae_client_set(c, KEY, sizeof KEY - 1, VALUE, sizeof VALUE - 1, 7, 0);
    CHECK(rc == FAE_RESULT_OK);
    if (rc != FAE_RESULT_OK) fprintf(stderr, "set: %s\n", last_error());
    rc = fae_client_get(c, KEY, sizeof KEY - 1, &item);
    CHECK(rc == FAE_RESULT_OK);
    if (rc == FAE_RESULT_OK) {
      size_t n = 0;
      const uint8_t *v = fae_item_value(item, &n);
      CHECK(n == sizeof VALUE - 1 && memcmp(v, VALUE, n) == 0);
      CHECK(fae_item_flags(item) == 7);
      fae_item_free(item);
    }
    rc = fae_client_get(c, (const uint8_t *)"c:tls:absent", 12, &item);
    CHECK(rc == FAE_RESULT_NOT_FOUND);
    fae_client_free(c);
  }

  /* A wrong password: AUTH_FAILED, and the text names neither password. */
  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\"], \"timeouts\": {\"connect_ms\": 500, \"io_ms\": 1000},"
           " \"tls\": {\"ca_file\": \"%s\"}, \"auth\": {\"username\": \"app\", \"password_file\": \"%s\"}}",
           addr, ca, wrong_pw);
  rc = failing_set(json, "wrong password");
  CHECK(rc == FAE_RESULT_AUTH_FAILED);
  CHECK(failed_text[0] != '\0' && strstr(failed_text, "canary") == NULL);

  /* A CA that did not sign the server's certificate: AUTH_FAILED (tls_failed), no hang. */
  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\"], \"timeouts\": {\"connect_ms\": 500, \"io_ms\": 1000},"
           " \"tls\": {\"ca_file\": \"%s\"}, \"auth\": {\"username\": \"app\", \"password_file\": \"%s\"}}",
           addr, other_ca, pw);
  rc = failing_set(json, "wrong CA");
  CHECK(rc == FAE_RESULT_AUTH_FAILED);
  CHECK(strstr(failed_text, "tls") != NULL);
  if (strstr(failed_text, "tls") == NULL) fprintf(stderr, "wrong CA: %s\n", failed_text);

  /* A plain-text client to the TLS server: an error, not a hang or a wrong answer. */
  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\"], \"timeouts\": {\"connect_ms\": 500, \"io_ms\": 1000}}", addr);
  rc = failing_set(json, "plain text to TLS");
  CHECK(rc != FAE_RESULT_OK);

  printf("tls_test: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
