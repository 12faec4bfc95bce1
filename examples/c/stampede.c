/* libfae C stampede protection: get_or_set with a compute callback, then the lease by hand.
 *
 *   ./stampede 127.0.0.1:11211 ...
 *
 * Build as demo.c (`make -C examples/c stampede`). Exit status 0 when every step behaved as
 * expected; 1 with a message otherwise. Compiles as C++ too. */
#include <fae.h>

#include <stdio.h>
#include <string.h>

#define KEY(s) (const uint8_t *)(s), strlen(s)

struct db {
  int queries; /* how often the "database" was asked */
};

/* The compute callback: load the value from the source, hand it over, return 0 (non-zero: the
 * load failed, nothing is stored). Runs on the calling thread; must not longjmp or throw. */
static int load_user(void *userdata, const uint8_t *key, size_t key_len, fae_value_sink *sink) {
  struct db *db = (struct db *)userdata;
  char row[64];
  int n = snprintf(row, sizeof row, "row for %.*s", (int)key_len, (const char *)key);
  db->queries++;
  return fae_value_sink_set(sink, (const uint8_t *)row, (size_t)n, 0) == FAE_RESULT_OK ? 0 : 1;
}

static int fail(const char *what, fae_result r) {
  char detail[256];
  size_t n = 0;
  if (fae_last_error_message(detail, sizeof detail, &n) != FAE_RESULT_OK) {
    n = 0;
  }
  fprintf(stderr, "stampede: %s failed (code %u): %.*s\n", what, (unsigned)r, (int)n, detail);
  return 1;
}

int main(int argc, char **argv) {
  char json[512];
  size_t used = 0;
  int i, status = 1;
  fae_config *cfg = NULL;
  fae_client *client = NULL;
  fae_item *item = NULL;
  fae_lease *lease = NULL;
  struct db db = {0};
  fae_result r;

  used += (size_t)snprintf(json, sizeof json, "{\"servers\": [");
  for (i = 1; i < argc && used < sizeof json - 64; i++) {
    used += (size_t)snprintf(json + used, sizeof json - used, "%s\"%s\"", i > 1 ? ", " : "",
                             argv[i]);
  }
  snprintf(json + used, sizeof json - used, "]}");
  if ((r = fae_config_from_json((const uint8_t *)json, strlen(json), &cfg)) != FAE_RESULT_OK) {
    return fail("fae_config_from_json", r);
  }
  if ((r = fae_client_new(cfg, &client)) != FAE_RESULT_OK) {
    fae_config_free(cfg);
    return fail("fae_client_new", r);
  }
  fae_client_delete(client, KEY("user:42"));

  /* Read-through: computed once, then served from the cache. */
  for (i = 0; i < 2; i++) {
    size_t len;
    const uint8_t *v;
    r = fae_client_get_or_set(client, KEY("user:42"), 300, load_user, &db, &item);
    if (r != FAE_RESULT_OK) {
      fail("fae_client_get_or_set", r);
      goto out;
    }
    v = fae_item_value(item, &len);
    printf("get_or_set user:42 = %.*s (database queries: %d)\n", (int)len, (const char *)v,
           db.queries);
    fae_item_free(item);
  }

  /* The same by hand: a lease read, then a fill that only lands if nothing changed since. */
  fae_client_delete(client, KEY("user:7"));
  if ((r = fae_client_get_or_lease(client, KEY("user:7"), &lease)) != FAE_RESULT_OK) {
    fail("fae_client_get_or_lease", r);
    goto out;
  }
  switch (fae_lease_status(lease)) {
  case FAE_LEASE_HIT:
  case FAE_LEASE_STALE:
    printf("lease user:7: serve the cached value\n");
    break;
  case FAE_LEASE_MISS:
  case FAE_LEASE_REFRESH: {
    bool stored = false;
    r = fae_client_set_with_lease(client, KEY("user:7"), KEY("row for user:7"), 0, 300,
                                  fae_lease_token(lease), &stored);
    if (r != FAE_RESULT_OK) {
      fail("fae_client_set_with_lease", r);
      goto out;
    }
    printf("lease user:7: computed and filled (%s)\n", stored ? "stored" : "a newer write won");
    break;
  }
  case FAE_LEASE_WAIT:
  default:
    printf("lease user:7: someone else is filling; read again shortly\n");
    break;
  }
  status = 0;
  printf("stampede: OK\n");
out:
  fae_lease_free(lease);
  fae_client_free(client);
  fae_config_free(cfg);
  return status;
}
