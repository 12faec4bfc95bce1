#!/usr/bin/env bash
# Install what libfae needs on a fresh Debian/Ubuntu machine (idempotent; root or sudo).
# Rust (cargo 1.85+) must already be installed: https://rustup.rs
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# memcached: the real servers every test and the demo talk to.
# libmemcached-dev: the baseline the benchmark compares against.
# gcc, pkg-config, valgrind: build and check the C example and C API tests.
# php-cli php-dev libclang-dev: build the PHP extension (ext-php-rs runs php-config and bindgen).
# php-memcached php-fpm libfcgi-bin: the PHP interop test, the real php-fpm test (cgi-fcgi).
PACKAGES=(memcached libmemcached-dev gcc pkg-config valgrind ca-certificates
          php-cli php-dev libclang-dev php-memcached php-fpm libfcgi-bin)

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
