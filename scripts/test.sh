#!/usr/bin/env bash
# Set up a fresh machine and run every check and test libfae has.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace

echo "== PHP extension (tests/php against real memcached; php-memcached loaded for interop)"
cargo build -p fae-php
PHP_EXT="$PWD/target/debug/libfae_php.so"
PHP_MEMC=()
if [ -f /etc/php/8.2/mods-available/memcached.ini ]; then
  # Debian's php-memcached needs igbinary and msgpack loaded first.
  PHP_MEMC=(-d extension=igbinary -d extension=msgpack -d extension=memcached)
fi
php -n "${PHP_MEMC[@]}" -d extension="$PHP_EXT" tests/php/run.php
echo "== PHP under a real php-fpm"
FAE_PHP_EXT="$PHP_EXT" bash tests/php/fpm_test.sh
