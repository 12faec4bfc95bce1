#!/usr/bin/env bash
# Install what libfae needs on a fresh Debian/Ubuntu machine (idempotent; root or sudo).
# Rust (cargo 1.88+) must already be installed: https://rustup.rs
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# memcached: the real servers every test and the demo talk to (Debian's is built with TLS:
#   the TLS tests start it with -Z, and with -Y for the login).
# openssl: the command the Python and PHP TLS tests make their certificates with (the Rust
#   tests and the benchmark use rcgen).
# libmemcached-dev: the baseline the benchmark compares against.
# gcc, pkg-config, valgrind: build and check the C example and C API tests.
# python3-venv, python3-dev, zlib1g-dev: the Python binding's venv; pylibmc (a test and bench
# baseline) builds against libmemcached-dev and zlib.
# php-cli php-dev libclang-dev: build the PHP extension (ext-php-rs runs php-config and bindgen);
# php-memcached php-fpm libfcgi-bin: the PHP interop test and the real php-fpm test (cgi-fcgi).
# etcd-server, etcd-client: the real etcd the discovery tests start (measured: 7 s to install).
# zookeeper: the real ZooKeeper (run with java; not zookeeperd, which adds a system service);
#   45 packages incl. a JRE, measured 11 s to install.
# prometheus: for its promtool, which lints the exported metrics (`promtool check metrics`);
#   on a machine run by systemd apt also enables its server (`systemctl disable --now
#   prometheus` if unwanted); containers without a service manager start nothing.
PACKAGES=(memcached openssl libmemcached-dev gcc pkg-config valgrind ca-certificates
  python3-venv python3-dev zlib1g-dev
  etcd-server etcd-client zookeeper
  php-cli php-dev libclang-dev php-memcached php-fpm libfcgi-bin
  prometheus)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
command -v memcached >/dev/null || { echo "setup: memcached missing after install" >&2; exit 1; }

# Python: a venv in the repository root with maturin (builds the fae module), pytest, and the
# clients the tests and the benchmark compare against (pymemcache, pylibmc, Django), and mypy
# (its stubtest checks fae/_fae.pyi against the built module).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  python3 -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check \
  'maturin>=1.9.4,<2' pytest Django pymemcache pylibmc mypy
