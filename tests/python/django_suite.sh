#!/usr/bin/env bash
# Measure fae.django.FaeCache with Django's own memcached cache tests (a measurement, not part
# of scripts/test.sh). Takes Django's test suite from its sdist (downloaded into a temporary
# directory; nothing of Django's is written into this repository), adds a settings module with a
# FaeCache cache and one test class, FaeCacheTests, made the way Django's file makes
# PyMemcacheCacheTests and PyLibMCCacheTests (BaseMemcachedTests: every BaseCacheTests test plus
# the memcached ones), and runs it, then PyMemcacheCacheTests with the real pymemcache, against a
# memcached started on a free 127.0.0.1 port (killed by PID). Prints both counts.
#
#     bash tests/python/django_suite.sh [DJANGO_SDIST.tar.gz]
#
# KEEP=1 keeps the temporary directory (the runs' logs: pymemcache.log, fae.log).
# Without an argument: pip download --no-binary :all: --no-deps "Django==<the venv's version>".
# Needs the repository's .venv with the fae module built (scripts/test.sh) and Django 5.2.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="$ROOT/.venv/bin/python"
TMP="$(mktemp -d)"
MC_PID=""
cleanup() {
  [ -n "$MC_PID" ] && kill "$MC_PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

SDIST="${1:-}"
if [ -z "$SDIST" ]; then
  VERSION="$("$PY" -c 'import django; print(django.__version__)')"
  "$PY" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
    "Django==$VERSION" -d "$TMP/dl"
  SDIST="$(ls "$TMP"/dl/*.tar.gz)"
fi
tar xzf "$SDIST" -C "$TMP" --wildcards '*/tests/*'
TESTS="$(ls -d "$TMP"/*/tests)"

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
MC_ARGS=(-l 127.0.0.1 -p "$PORT" -U 0 -m 64)
[ "$(id -u)" -eq 0 ] && MC_ARGS+=(-u root)
memcached "${MC_ARGS[@]}" &
MC_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done

# Django's file finds a backend's tests by its BACKEND in settings.CACHES.
cat > "$TESTS/fae_settings.py" <<PY
from test_sqlite import *  # noqa: F401,F403

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "fae": {"BACKEND": "fae.django.FaeCache", "LOCATION": "127.0.0.1:$PORT"},
    "pymemcache": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:$PORT",
    },
}
PY
cat >> "$TESTS/cache/tests.py" <<'PY'


# Added by libfae's django_suite.sh: the memcached tests against fae.django.FaeCache.
import fae  # noqa: E402

FaeCache_params = configured_caches.get("fae.django.FaeCache")


@unittest.skipUnless(FaeCache_params, "FaeCache backend not configured")
@override_settings(
    CACHES=caches_setting_for_tests(
        base=FaeCache_params,
        exclude=memcached_excluded_caches,
    )
)
class FaeCacheTests(BaseMemcachedTests, TestCase):
    base_params = FaeCache_params
    # As libmemcached, libfae keeps its connections across requests (a per-process pool).
    should_disconnect_on_close = False

    @property
    def incr_decr_type_error(self):
        return fae.ClientError
PY

run() {
  local label="$1" target="$2" log="$TMP/$3.log"
  (cd "$TESTS" && "$PY" runtests.py --settings=fae_settings --parallel 1 -v 2 "$target") >"$log" 2>&1 || true
  local ran failures errors skipped
  ran="$(sed -n 's/^Ran \([0-9]*\) test.*/\1/p' "$log")"
  failures="$(grep -c '^FAIL:' "$log" || true)"
  errors="$(grep -c '^ERROR:' "$log" || true)"
  skipped="$(grep -c ' skipped ' "$log" || true)"
  echo "$label: ran ${ran:-0}, $((${ran:-0} - failures - errors - skipped)) passed, $failures failed, $errors errors, $skipped skipped"
  grep -E '^(FAIL|ERROR):' "$log" | sed 's/^/    /' || true
  [ -n "$ran" ] || tail -20 "$log"
}
run "Django $(basename "$(dirname "$TESTS")") PyMemcacheCacheTests (pymemcache)" cache.tests.PyMemcacheCacheTests pymemcache
run "Django $(basename "$(dirname "$TESTS")") FaeCacheTests (fae.django.FaeCache)" cache.tests.FaeCacheTests fae
