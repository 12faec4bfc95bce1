/* fae_set_log_callback: libfae's log records reach a C function.
 * Usage: log_test DEAD_ADDR LIVE_ADDR. Exit 0 when every check passed. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fae.h"

struct seen {
  pthread_mutex_t lock;
  int records;
  int breaker_open;
  int reload_ok;
  int bad_level;
  int not_terminated;
};

static void on_log(void *userdata, fae_log_level level, const char *message,
                   size_t message_len) {
  struct seen *s = (struct seen *)userdata;
  pthread_mutex_lock(&s->lock);
  s->records++;
  if (level < FAE_LOG_ERROR || level > FAE_LOG_INFO) s->bad_level++;
  if (message[message_len] != '\0') s->not_terminated++;
  if (strstr(message, "breaker=open") && strstr(message, "reason=connect_refused") &&
      level == FAE_LOG_WARN)
    s->breaker_open++;
  if (strstr(message, "reload=ok") && level == FAE_LOG_INFO) s->reload_ok++;
  printf("log level=%d: %.*s\n", (int)level, (int)message_len, message);
  pthread_mutex_unlock(&s->lock);
}

static int failures = 0;
#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "FAILED line %d: %s\n", __LINE__, #cond); \
      failures++;                                                \
    }                                                            \
  } while (0)

static fae_client *client_for(const char *addr) {
  char json[512];
  fae_config *cfg = NULL;
  fae_client *client = NULL;
  snprintf(json, sizeof json,
           "{\"servers\": [\"%s\"], \"health\": {\"max_tko_fraction\": 1.0,"
           " \"background\": false}}",
           addr);
  CHECK(fae_config_from_json((const uint8_t *)json, strlen(json), &cfg) == FAE_RESULT_OK);
  CHECK(fae_client_new(cfg, &client) == FAE_RESULT_OK);
  fae_config_free(cfg);
  return client;
}

int main(int argc, char **argv) {
  struct seen s;
  fae_item *item = NULL;
  fae_config *cfg = NULL;
  fae_client *client;
  char json[512];
  int before;
  if (argc != 3) {
    fprintf(stderr, "usage: log_test DEAD_ADDR LIVE_ADDR\n");
    return 2;
  }
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.lock, NULL);

  CHECK(fae_set_log_callback(0, on_log, &s) == FAE_RESULT_INVALID_ARGUMENT);
  CHECK(fae_set_log_callback(5, on_log, &s) == FAE_RESULT_INVALID_ARGUMENT);
  CHECK(fae_set_log_callback(FAE_LOG_INFO, on_log, &s) == FAE_RESULT_OK);

  /* A refused connection opens the server's breaker: one warn record. */
  client = client_for(argv[1]);
  CHECK(fae_client_get(client, (const uint8_t *)"k", 1, &item) == FAE_RESULT_CONNECT_FAILED);
  CHECK(s.breaker_open == 1);

  /* A reload applied: one info record. */
  snprintf(json, sizeof json, "{\"servers\": [\"%s\"]}", argv[2]);
  CHECK(fae_config_from_json((const uint8_t *)json, strlen(json), &cfg) == FAE_RESULT_OK);
  CHECK(fae_client_reload(client, cfg) == FAE_RESULT_OK);
  CHECK(s.reload_ok == 1);
  fae_client_free(client);

  /* Warn level: info records (a reload) are filtered out, warnings still come. */
  CHECK(fae_set_log_callback(FAE_LOG_WARN, on_log, &s) == FAE_RESULT_OK);
  client = client_for(argv[1]);
  CHECK(fae_client_reload(client, cfg) == FAE_RESULT_OK);
  CHECK(s.reload_ok == 1);
  fae_client_free(client);

  /* NULL: delivery stops. */
  CHECK(fae_set_log_callback(FAE_LOG_DEBUG, NULL, NULL) == FAE_RESULT_OK);
  before = s.records;
  client = client_for(argv[1]);
  CHECK(fae_client_get(client, (const uint8_t *)"k", 1, &item) == FAE_RESULT_CONNECT_FAILED);
  CHECK(fae_client_reload(client, cfg) == FAE_RESULT_OK);
  fae_client_free(client);
  CHECK(s.records == before);

  CHECK(s.bad_level == 0);
  CHECK(s.not_terminated == 0);
  fae_config_free(cfg);
  if (failures) {
    fprintf(stderr, "log_test: %d failures\n", failures);
    return 1;
  }
  printf("log_test: OK (%d records)\n", s.records);
  return 0;
}
