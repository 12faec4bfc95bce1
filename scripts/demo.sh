#!/usr/bin/env bash
# Set up a fresh machine, start three local memcached servers, and show libfae's main job end
# to end: the C example routes keys across the servers through libfae.so, then the `fae` CLI
# shows where keys live. The servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== building libfae (release)"
cargo build --release -q -p fae-c -p fae-core -p fae-php
ROOT=$PWD
LIB="$ROOT/target/release"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

USER_ARGS=()
[ "$(id -u)" -eq 0 ] && USER_ARGS=(-u root)
SERVERS=()
for port in 21211 21212 21213; do
  memcached "${USER_ARGS[@]}" -l 127.0.0.1 -p "$port" -U 0 -m 64 &
  PIDS+=($!)
  SERVERS+=("127.0.0.1:$port")
done
# Wait until every server answers.
for s in "${SERVERS[@]}"; do
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/${s%:*}/${s#*:}") 2>/dev/null; then break; fi
    sleep 0.1
  done
done
echo "== memcached running on ${SERVERS[*]}"

echo "== C example (examples/c/demo.c against libfae.so)"
gcc -std=c99 -Wall -Wextra -Werror -Iinclude examples/c/demo.c -L"$LIB" -lfae -Wl,-rpath,"$LIB" -o target/demo_c
./target/demo_c "${SERVERS[@]}"

echo "== PHP example (examples/php/demo.php: Fae\\Client as a drop-in for php-memcached)"
php -n -d extension="$LIB/libfae_php.so" examples/php/demo.php "${SERVERS[@]}"

echo "== Python example (examples/python/demo.py through the fae module, with a failover route)"
VENV="$ROOT/.venv"
# The module is abi3 now: a version-tagged _fae from an older build would shadow it.
rm -f bindings-python/python/fae/_fae.cpython-*.so
(cd bindings-python && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
  maturin develop --release -q --target-dir ../target/maturin >/dev/null)
"$VENV/bin/python" examples/python/demo.py "${SERVERS[@]}"

echo "== fae route: where keys live (libmemcached-compatible ketama)"
printf 'user:1\nuser:2\nsession:abc\ncart:42\n' | "$LIB/fae" route --servers "$(IFS=,; echo "${SERVERS[*]}")"
echo "== fae get demo:a (set by the C example, read back through the same placement)"
"$LIB/fae" get --servers "$(IFS=,; echo "${SERVERS[*]}")" demo:a
echo
echo "== demo done"
