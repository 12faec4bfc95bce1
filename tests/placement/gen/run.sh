#!/usr/bin/env bash
# Regenerate the socket-server placement vectors (tests/placement/*_unix*.csv) with the real
# clients: libmemcached (a small C program), php-memcached (PHP CLI) and pymemcache/pylibmc
# (Python). Run from anywhere; needs libmemcached-dev, gcc, php-memcached, memcached and a
# Python with pymemcache and pylibmc (default: the repository's .venv).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$(dirname "$HERE")"
ROOT="$(cd "$OUT/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

gcc -O2 -Wall -o "$TMP/libmemcached_unix" "$HERE/libmemcached_unix.c" $(pkg-config --cflags --libs libmemcached)
"$TMP/libmemcached_unix" > "$OUT/libmemcached_unix.csv"
"$TMP/libmemcached_unix" w1234 > "$OUT/libmemcached_unix_w1234.csv"

PHPM=(php -n -d extension=igbinary -d extension=msgpack -d extension=memcached)
"${PHPM[@]}" "$HERE/php_memcached_unix.php" ketama > "$OUT/php-memcached_unix.csv"
"${PHPM[@]}" "$HERE/php_memcached_unix.php" ketama-w1234 > "$OUT/php-memcached_unix_w1234.csv"
"${PHPM[@]}" "$HERE/php_memcached_unix.php" default > "$OUT/php-memcached-default_unix.csv"

"$PY" "$HERE/python_unix.py" "$OUT"
