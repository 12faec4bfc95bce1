#!/usr/bin/env bash
# Set up a fresh machine and run every check and test libfae has.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The venv setup.sh made, on PATH for the whole script: pyo3's build script reruns when PATH
# changes, so it is set once here and never switched midway (toolchain notes §9.1).
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== MSRV (rust-version covers every dependency; clippy's incompatible_msrv covers std APIs)"
python3 scripts/check-msrv.py
echo "== cargo doc (warnings are errors: broken intra-doc links, missing docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
echo "== the bindings' core carries no coordinator code (feature watch off)"
cargo check -q -p fae-core --no-default-features --lib
echo "== cargo test"
cargo test --workspace
echo "== Prometheus: a client's stats_prometheus() and \`fae stats --dir\` pass promtool check metrics"
FAE_REQUIRE_PROMTOOL=1 cargo test -q -p fae-core --test e2e_stats promtool
echo "== Python: build the fae module into the venv, run pytest against real memcached"
# Own target dir: maturin sets PYO3_BUILD_EXTENSION_MODULE, which would otherwise rebuild pyo3
# in target/ on every alternation with cargo test.
# The module is abi3 (_fae.abi3.so); a version-tagged one left by an older build would shadow it.
# The distribution was renamed libfae: drop an older build's `fae` from the venv.
rm -f bindings-python/python/fae/_fae.cpython-*.so
python -m pip uninstall -q -y fae 2>/dev/null || true
(cd bindings-python && maturin develop --release -q --target-dir ../target/maturin)
python -m pytest tests/python -q
echo "== Python stubs: mypy stubtest of fae/_fae.pyi against the built module"
python -m mypy.stubtest fae._fae --allowlist tests/python/stubtest-allowlist.txt
echo "== Python wheel: abi3 manylinux_2_17 wheel and sdist (auditwheel), installed into fresh venvs of CPython 3.9-3.13"
# About 2.5 minutes with a cold target/wheel-build, 30 s warm.
bash bindings-python/build-wheel.sh
bash tests/python/wheel_install.sh

echo "== PHP extension (tests/php against real memcached; php-memcached loaded for interop)"
cargo build -p fae-php
PHP_EXT="$PWD/target/debug/libfae_php.so"
PHP_MEMC=()
if [ -f /etc/php/8.2/mods-available/memcached.ini ]; then
  # Debian's php-memcached needs igbinary and msgpack loaded first.
  PHP_MEMC=(-d extension=igbinary -d extension=msgpack -d extension=memcached)
fi
php -n "${PHP_MEMC[@]}" -d extension="$PHP_EXT" tests/php/run.php
echo "== PHP: TLS and memcached's login (\$config and php.ini fae.tls*/fae.auth_*)"
php -n -d extension="$PHP_EXT" tests/php/security.php
echo "== PHP drop-in for php-memcached (our extension alone provides Memcached)"
php -n -d extension="$PHP_EXT" tests/php/dropin.php
echo "== Cross-language: PHP, Python and C share values and placement (tests/cross)"
FAE_PHP_EXT="$PHP_EXT" bash tests/cross/run.sh
echo "== PHP under a real php-fpm"
FAE_PHP_EXT="$PHP_EXT" bash tests/php/fpm_test.sh
echo "== Debian packages (packaging/build-debs.sh): unpacked (dpkg -x) and installed (dpkg -i, then purged), used with no Rust on PATH"
# Bounded: the release builds are most of it (about 3 minutes on 2 cores).
timeout 1200 bash packaging/test-debs.sh
