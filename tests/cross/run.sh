#!/usr/bin/env bash
# Cross-language test: values and placement shared by the PHP extension (and php-memcached
# itself, when installed), the Python module and the C library, against three real memcached
# servers this script starts on free 127.0.0.1 ports and stops by PID at exit.
#
#   PHP (Fae\Client and php-memcached, default settings: FastLZ above 2000 bytes) writes →
#     Python (serde="interop") reads and decodes; C reads the same stored bytes and flags
#   Python (serde="interop") writes → Fae\Client and php-memcached read
#   Fae\Client, php-memcached, Python and C place 300 keys on the same servers
#
# Uses what scripts/test.sh builds: target/debug/libfae_php.so (or $FAE_PHP_EXT), the fae
# module importable by `python` (or $PYTHON), and target/debug/libfae.so (built here if stale).
# Prints PASS/FAIL lines, then "N passed, M failed"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/cross
PY=${PYTHON:-python}
command -v "$PY" >/dev/null || PY=python3

cargo build -q -p fae-c || exit 1
if [ -z "${FAE_PHP_EXT:-}" ]; then
  cargo build -q -p fae-php || exit 1
fi
PHP_EXT=${FAE_PHP_EXT:-$ROOT/target/debug/libfae_php.so}
LIB_DIR=$ROOT/target/debug
"$PY" -c 'import fae' || { echo "cross: the fae Python module is not installed (maturin develop)" >&2; exit 1; }

PHP=(php -n)
if php -n -d extension=igbinary -d extension=msgpack -d extension=memcached \
  -r 'exit(class_exists("Memcached") ? 0 : 1);' 2>/dev/null; then
  # Debian's php-memcached needs igbinary and msgpack loaded first.
  PHP+=(-d extension=igbinary -d extension=msgpack -d extension=memcached)
  PHP_NS=(fae pmc)
else
  echo "cross: php-memcached is not installed; testing Fae\\Client only"
  PHP_NS=(fae)
fi
PHP+=(-d extension="$PHP_EXT")

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

MC_ARGS=(-l 127.0.0.1 -U 0 -m 64)
[ "$(id -u)" -eq 0 ] && MC_ARGS+=(-u root)
SERVERS=""
for _ in 1 2 3; do
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  memcached "${MC_ARGS[@]}" -p "$port" >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  SERVERS+="${SERVERS:+,}127.0.0.1:$port"
done

PASSED=0
FAILED=0
# step NAME COMMAND...: run, show its PASS/FAIL lines, count them; a non-zero exit is a failure.
step() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  [ -n "$out" ] && echo "$out"
  PASSED=$((PASSED + $(grep -c '^PASS' <<<"$out")))
  FAILED=$((FAILED + $(grep -c '^FAIL' <<<"$out")))
  if [ $rc -ne 0 ]; then
    echo "FAIL $name: exit status $rc"
    FAILED=$((FAILED + 1))
  fi
}
pass_if() { if "$@"; then echo "PASS $NAME"; else echo "FAIL $NAME"; fi; }

echo "== cross: servers $SERVERS"
step "php write" "${PHP[@]}" "$HERE/php_side.php" write "$SERVERS"

NAME="c: c_side.c compiles against include/fae.h"
step "c compile" pass_if gcc -std=c99 -Wall -Wextra -Werror -pedantic -I"$ROOT/include" \
  "$HERE/c_side.c" -L"$LIB_DIR" -lfae -Wl,-rpath,"$LIB_DIR" -o "$TMP/c_side"
read -r -a KEYS <<<"$("$PY" "$HERE/py_side.py" keys "${PHP_NS[@]}")"
step "c raw" sh -c '"$@" > "'"$TMP"'/c_raw.txt"' _ "$TMP/c_side" "$SERVERS" php-memcached-default raw "${KEYS[@]}"
step "python read" "$PY" "$HERE/py_side.py" read "$SERVERS" "$TMP/c_raw.txt"

step "python write" "$PY" "$HERE/py_side.py" write "$SERVERS"
step "php read" "${PHP[@]}" "$HERE/php_side.php" read "$SERVERS"

step "php place" "${PHP[@]}" "$HERE/php_side.php" place "$SERVERS" 300 "$TMP/php_place.txt"
step "c place" sh -c '"$@" > "'"$TMP"'/c_default.txt"' _ "$TMP/c_side" "$SERVERS" php-memcached-default place place 300
step "c place" sh -c '"$@" > "'"$TMP"'/c_ketama.txt"' _ "$TMP/c_side" "$SERVERS" libmemcached place place 300
step "python place" "$PY" "$HERE/py_side.py" place "$SERVERS" "$TMP/php_place.txt" "$TMP/c_default.txt" "$TMP/c_ketama.txt"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
