#!/usr/bin/env bash
# Runs php-memcached's own test suite (the tests/ directory of its repository, given as
# the first argument; never copied into this repository) with PHP's run-tests.php twice:
# once against the real php-memcached, once against our extension alone, which provides
# the `Memcached` classes itself. Prints both pass counts.
#
#   tests/php/memcached_suite.sh /path/to/php-memcached/tests [more run-tests.php args]
#
# The suite expects memcached on 127.0.0.1:11211 (its config.inc and the session tests'
# INI sections); one is started there for the run and stopped by PID. Set FAE_SUITE_KEEP=1
# to keep the per-run output directories (their .diff/.out files) for inspection.
#
# Both runs use the tests unchanged. (An extension build that does not yet register the
# `memcached` module name gets one edit in its copy: the SKIPIFs' `extension_loaded("memcached")`
# becomes `class_exists("Memcached")`.)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SRC="${1:?usage: memcached_suite.sh PATH_TO_PHP_MEMCACHED_TESTS [run-tests args]}"
shift
EXT="${FAE_PHP_EXT:-$ROOT/target/debug/libfae_php.so}"
PHP="$(command -v php)"
RUN_TESTS="${RUN_TESTS_PHP:-$(ls /usr/lib/php/*/build/run-tests.php 2>/dev/null | head -1)}"
[ -f "$RUN_TESTS" ] || { echo "run-tests.php not found (install php-dev or set RUN_TESTS_PHP)" >&2; exit 2; }
[ -f "$SRC/config.inc" ] || { echo "$SRC does not look like php-memcached's tests/ (no config.inc)" >&2; exit 2; }
if (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null; then
  echo "port 11211 is in use; the suite needs it for its own memcached" >&2; exit 2
fi

TMP="$(mktemp -d)"
USER_ARGS=(); [ "$(id -u)" -eq 0 ] && USER_ARGS=(-u root)
memcached "${USER_ARGS[@]}" -l 127.0.0.1 -p 11211 -U 0 -m 64 & MC_PID=$!
cleanup() { kill "$MC_PID" 2>/dev/null; wait "$MC_PID" 2>/dev/null; [ -n "${FAE_SUITE_KEEP:-}" ] || rm -rf "$TMP"; }
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null && break; sleep 0.1; done

# Debian's php-memcached needs igbinary and msgpack loaded first; both runs load them so
# that the serializer tests run (or skip) alike.
SERIALIZERS=()
for e in igbinary msgpack; do
  "$PHP" -n -d extension=$e -r 'exit(0);' 2>/dev/null && SERIALIZERS+=(-d "extension=$e")
done

run_suite() { # name, dir, php -d args...
  local name="$1" dir="$2"; shift 2
  local log="$TMP/$name.log"
  # -n: no php.ini; -d: pass settings to every test's php; -q: no questions.
  NO_INTERACTION=1 TEST_PHP_EXECUTABLE="$PHP" "$PHP" -n "$RUN_TESTS" -n -q --no-color -p "$PHP" \
    "${SERIALIZERS[@]}" "$@" "${EXTRA_ARGS[@]}" "$dir" > "$log" 2>&1
  local passed total
  passed=$(sed -n 's/^Tests passed *: *\([0-9]*\).*/\1/p' "$log")
  total=$(sed -n 's/^Number of tests *: *\([0-9]*\).*/\1/p' "$log")
  printf '%-16s passed %s of %s  (%s)\n' "$name" "${passed:-?}" "${total:-?}" \
    "$(grep -E '^Tests (skipped|failed|warned)' "$log" | sed 's/ *(.*//; s/Tests //; s/ *: */ /' | tr '\n' ',' | sed 's/,$//')"
  sed -n '/^FAILED TEST SUMMARY/,/^====/p' "$log" | sed -n "s|.*\[$dir/\(.*\)\] *$|  \1|p" > "$TMP/$name.failed"
}
EXTRA_ARGS=("$@")

cp -r "$SRC" "$TMP/original"
cp -r "$SRC" "$TMP/fae"
if ! "$PHP" -n -d "extension=$EXT" -r 'exit(extension_loaded("memcached") ? 0 : 1);'; then
  grep -rl 'extension_loaded("memcached")' "$TMP/fae" | xargs -r sed -i 's/extension_loaded("memcached")/class_exists("Memcached")/'
fi

run_suite php-memcached "$TMP/original" -d extension=memcached
FAE_ARGS=(-d "extension=$EXT")
if ! "$PHP" -n -d "extension=$EXT" -r 'exit(class_exists("Memcached", false) ? 0 : 1);'; then
  # An extension build that predates its own `Memcached` class: subclass Fae\Client.
  printf '<?php\nclass Memcached extends Fae\\Client {}\nclass MemcachedException extends Fae\\Exception {}\n' > "$TMP/shim.php"
  FAE_ARGS+=(-d "auto_prepend_file=$TMP/shim.php")
fi
run_suite fae "$TMP/fae" "${FAE_ARGS[@]}"
if [ -n "${FAE_SUITE_VERBOSE:-}" ]; then
  echo "-- failing with php-memcached:"; cat "$TMP/php-memcached.failed"
  echo "-- failing with fae:"; cat "$TMP/fae.failed"
fi
[ -n "${FAE_SUITE_KEEP:-}" ] && echo "outputs kept in $TMP"
exit 0
