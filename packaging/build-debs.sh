#!/usr/bin/env bash
# Build the Debian packages a fleet installs without Rust:
#
#   packaging/build-debs.sh [OUT_DIR]        # default OUT_DIR: target/debian
#
#   php-fae_<version>-1_<arch>.deb   the PHP extension: fae.so in PHP's extension dir and
#                                    mods-available/fae.ini (enabled with phpenmod on install)
#   fae_<version>-1_<arch>.deb       the fae CLI (/usr/bin/fae), systemd units for the stats
#                                    merger and fae watch, /run/fae via tmpfiles.d
#
# Release builds (cargo build --release), staged trees with DEBIAN/control, dpkg-deb --build.
# The PHP package is built for the PHP that php-config names and depends on its extension
# API (phpapi-NNNNNNNN), so apt refuses it on a PHP it was not built for. Set FAE_DEB_NO_BUILD=1
# to package what target/release already holds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/target/debian}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VERSION=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)
DEB_VERSION="$VERSION-1"
ARCH=$(dpkg --print-architecture)
MAINTAINER="libfae maintainers <libfae@example.invalid>"
HOMEPAGE=$(sed -n 's/^repository = "\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)

if [ -z "${FAE_DEB_NO_BUILD:-}" ]; then
  # Two commands: `--bin fae` next to `-p fae-php` would select the binary only.
  (cd "$ROOT" && cargo build --release -p fae-php && cargo build --release -p fae-core --bin fae)
fi
PHP_LIB="$TARGET/release/libfae_php.so"
FAE_BIN="$TARGET/release/fae"
for f in "$PHP_LIB" "$FAE_BIN"; do
  [ -f "$f" ] || { echo "build-debs: $f not found" >&2; exit 1; }
done

# The libc a binary needs: the newest GLIBC_x.y symbol version it references.
glibc_min() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUT"

copyright() { # DIR: the Debian copyright file (machine-readable format)
  install -d "$1"
  cat > "$1/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: libfae
Source: $HOMEPAGE

Files: *
License: Apache-2.0
Comment: On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPY
}

# ---- php-fae ---------------------------------------------------------------------------------
PHP_API=$(php-config --phpapi)
PHP_VERSION=$(php-config --version | cut -d. -f1,2)
EXT_DIR=$(php-config --extension-dir)
P="$STAGE/php-fae"
install -d "$P/DEBIAN" "$P$EXT_DIR" "$P/etc/php/$PHP_VERSION/mods-available"
install -m 644 "$PHP_LIB" "$P$EXT_DIR/fae.so"
strip --strip-unneeded "$P$EXT_DIR/fae.so"
install -m 644 "$ROOT/bindings-php/fae.ini" "$P/etc/php/$PHP_VERSION/mods-available/fae.ini"
copyright "$P/usr/share/doc/php-fae"
echo "/etc/php/$PHP_VERSION/mods-available/fae.ini" > "$P/DEBIAN/conffiles"
cat > "$P/DEBIAN/control" <<CONTROL
Package: php-fae
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(du -sk "$P" | cut -f1)
Depends: libc6 (>= $(glibc_min "$P$EXT_DIR/fae.so")), phpapi-$PHP_API, php-common
Section: php
Priority: optional
Homepage: $HOMEPAGE
Description: memcached client with mcrouter-style routing for PHP (libfae)
 The fae extension: Fae\\Client, a drop-in for php-memcached's Memcached class (same API,
 options, result codes, value format and key placement) with libfae's pooled connections,
 deadlines, circuit breakers and routing; Fae\\SessionHandler for sessions.
 Built for PHP $PHP_VERSION (extension API $PHP_API). Enabled for every SAPI on install.
CONTROL
cat > "$P/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && command -v phpenmod >/dev/null 2>&1; then
    phpenmod -v ALL -s ALL fae || true
fi
SCRIPT
cat > "$P/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && command -v phpdismod >/dev/null 2>&1; then
    phpdismod -v ALL -s ALL fae || true
fi
SCRIPT
chmod 755 "$P/DEBIAN/postinst" "$P/DEBIAN/prerm"
dpkg-deb --root-owner-group --build "$P" "$OUT/php-fae_${DEB_VERSION}_$ARCH.deb" >/dev/null

# ---- fae (CLI and services) --------------------------------------------------------------------
F="$STAGE/fae"
install -d "$F/DEBIAN" "$F/usr/bin" "$F/lib/systemd/system" "$F/usr/lib/tmpfiles.d" "$F/etc/default"
install -m 755 "$FAE_BIN" "$F/usr/bin/fae"
strip --strip-unneeded "$F/usr/bin/fae"
install -m 644 "$ROOT/packaging/systemd/fae-stats.service" "$ROOT/packaging/systemd/fae-watch.service" \
  "$F/lib/systemd/system/"
install -m 644 "$ROOT/packaging/systemd/fae.tmpfiles" "$F/usr/lib/tmpfiles.d/fae.conf"
install -m 644 "$ROOT/packaging/systemd/fae-stats.default" "$F/etc/default/fae-stats"
install -m 644 "$ROOT/packaging/systemd/fae-watch.default" "$F/etc/default/fae-watch"
copyright "$F/usr/share/doc/fae"
printf '%s\n' /etc/default/fae-stats /etc/default/fae-watch > "$F/DEBIAN/conffiles"
cat > "$F/DEBIAN/control" <<CONTROL
Package: fae
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(du -sk "$F" | cut -f1)
Depends: libc6 (>= $(glibc_min "$F/usr/bin/fae"))
Section: net
Priority: optional
Homepage: $HOMEPAGE
Description: libfae command-line tool: routing checks, stats merger, topology watcher
 fae routes keys and runs get/set/delete through libfae's router, checks configs, merges
 the stats snapshots of a host's worker processes into Prometheus metrics (fae stats) and
 renders etcd/ZooKeeper/file topologies into the snapshot file clients watch (fae watch).
 Ships systemd units fae-stats.service and fae-watch.service (not enabled on install;
 settings in /etc/default/fae-stats and /etc/default/fae-watch).
CONTROL
cat > "$F/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if command -v systemd-tmpfiles >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemd-tmpfiles --create fae.conf || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
fi
SCRIPT
chmod 755 "$F/DEBIAN/postinst"
dpkg-deb --root-owner-group --build "$F" "$OUT/fae_${DEB_VERSION}_$ARCH.deb" >/dev/null

ls -l "$OUT"/*.deb
