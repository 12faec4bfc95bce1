#!/usr/bin/env bash
# The Debian packages work with no Rust on the machine: build them (packaging/build-debs.sh),
# check their metadata, unpack them into a temporary root with dpkg -x and, with a PATH that holds no cargo or rustc, load the extension by name
# (extension=fae from the unpacked extension dir) and run the unpacked fae against a real
# memcached. Also: every fae.* INI setting the extension registers is documented in the
# shipped fae.ini, and systemd accepts the units. Then, as root, dpkg -i for real, checked and
# purged again. Prints "N passed, N failed".
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TMP="$(mktemp -d)"
PASSED=0; FAILED=0
MC_PID=""
cleanup() { [ -n "$MC_PID" ] && kill "$MC_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
check() { if eval "$1"; then PASSED=$((PASSED+1)); else FAILED=$((FAILED+1)); echo "FAIL: $2" >&2; fi; }

bash "$ROOT/packaging/build-debs.sh" "$TMP/debs" >/dev/null || { echo "FAIL: build-debs.sh" >&2; exit 1; }
ARCH=$(dpkg --print-architecture)
VERSION=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1)
PHP_DEB="$TMP/debs/php-fae_${VERSION}-1_$ARCH.deb"
FAE_DEB="$TMP/debs/fae_${VERSION}-1_$ARCH.deb"
check '[ -f "$PHP_DEB" ] && [ -f "$FAE_DEB" ]' "both packages built"
check 'dpkg-deb --field "$PHP_DEB" Depends | grep -q "phpapi-$(php-config --phpapi)"' "php-fae depends on its PHP extension API"
check 'dpkg-deb --ctrl-tarfile "$PHP_DEB" | tar -xO ./conffiles | grep -q mods-available/fae.ini' "fae.ini is a conffile"
dpkg-deb --contents "$FAE_DEB" > "$TMP/fae.contents"
for f in usr/bin/fae lib/systemd/system/fae-stats.service lib/systemd/system/fae-watch.service \
  usr/lib/tmpfiles.d/fae.conf etc/default/fae-stats usr/share/man/man1/fae.1.gz usr/share/man/man1/fae-stats.1.gz \
  usr/share/bash-completion/completions/fae; do
  check 'grep -q " \./$f\$" "$TMP/fae.contents"' "fae ships /$f"
done

R="$TMP/root"
dpkg -x "$PHP_DEB" "$R"
dpkg -x "$FAE_DEB" "$R"
EXT_DIR="$R$(php-config --extension-dir)"
INI="$R/etc/php/$(php-config --version | cut -d. -f1,2)/mods-available/fae.ini"
check '[ -f "$EXT_DIR/fae.so" ] && [ -f "$INI" ]' "fae.so and fae.ini unpacked"

# No Rust toolchain on PATH from here on: only the system's directories.
NORUST_PATH=/usr/sbin:/usr/bin:/sbin:/bin
check '! env PATH=$NORUST_PATH sh -c "command -v cargo || command -v rustc" >/dev/null' "no cargo or rustc on the test PATH"
php_() { env -i PATH=$NORUST_PATH php -n -d extension_dir="$EXT_DIR" -d extension=fae "$@"; }
check '[ "$(php_ -r "var_dump(class_exists(\"Fae\\\\Client\"));")" = "bool(true)" ]' "extension=fae loads Fae\\Client"
check '[ "$(php_ -r "echo Fae\\version();")" = "$VERSION" ]' "Fae\\version() is the package version"
# The shipped ini file loads the extension by itself (it holds extension=fae).
check '[ "$(env -i PATH=$NORUST_PATH PHP_INI_SCAN_DIR= php -d extension_dir="$EXT_DIR" -c "$INI" -r "echo extension_loaded(\"fae\") ? \"yes\" : \"no\";")" = yes ]' "fae.ini loads the extension"
for name in $(php_ -r 'echo implode(" ", array_keys(ini_get_all("fae")));'); do
  check 'grep -q "^;*$name *=" "$INI"' "fae.ini documents $name"
done
check '[ -n "$(php_ -r "echo implode(\" \", array_keys(ini_get_all(\"fae\")));")" ]' "the extension registers fae.* settings"

check '[ "$(env -i PATH=$NORUST_PATH "$R/usr/bin/fae" --version)" = "fae $VERSION" ]' "the unpacked fae runs"
check '! ldd "$R/usr/bin/fae" | grep -q "not found"' "fae needs only system libraries"
check '! ldd "$EXT_DIR/fae.so" | grep -q "not found"' "fae.so needs only system libraries"

# The unpacked fae and extension against a real memcached.
PORT=$(php -n -r '$s=stream_socket_server("tcp://127.0.0.1:0");$n=stream_socket_get_name($s,false);echo substr($n,strrpos($n,":")+1);')
USER_ARGS=(); [ "$(id -u)" -eq 0 ] && USER_ARGS=(-u root)
memcached "${USER_ARGS[@]}" -l 127.0.0.1 -p "$PORT" -U 0 -m 16 & MC_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
check 'printf v1 | env -i PATH=$NORUST_PATH "$R/usr/bin/fae" set --servers 127.0.0.1:$PORT deb:k' "fae set"
check '[ "$(php_ -r "\$m = new Fae\\Client(); \$m->addServer(\"127.0.0.1\", $PORT); echo \$m->get(\"deb:k\");")" = v1 ]' "the extension reads what fae wrote"

if command -v systemd-analyze >/dev/null; then
  # The units as shipped, with ExecStart pointing at the unpacked fae (verify checks that it is
  # executable). Unknown keys are only warnings, so any output fails the check.
  mkdir -p "$TMP/units"
  for unit in fae-stats fae-watch; do
    sed "s|/usr/bin/fae|$R/usr/bin/fae|" "$R/lib/systemd/system/$unit.service" > "$TMP/units/$unit.service"
    check 'systemd-analyze verify "$TMP/units/$unit.service" >"$TMP/verify" 2>&1 && [ ! -s "$TMP/verify" ] || { cat "$TMP/verify" >&2; false; }' "systemd-analyze verify $unit.service"
  done
fi

# The real thing: dpkg -i on this machine (root; skipped if either package is already
# installed, so a developer's own install is never removed), the system's php loading the
# extension through the ini that postinst enabled, /usr/bin/fae on a PATH without Rust, then
# dpkg --purge. FAE_DEB_INSTALL=0 skips it.
if [ "$(id -u)" -eq 0 ] && [ "${FAE_DEB_INSTALL:-1}" = 1 ] \
  && ! dpkg -s php-fae >/dev/null 2>&1 && ! dpkg -s fae >/dev/null 2>&1; then
  purge() { dpkg --purge fae php-fae >/dev/null 2>&1; }
  trap 'purge; cleanup' EXIT
  check 'DEBIAN_FRONTEND=noninteractive dpkg -i "$PHP_DEB" "$FAE_DEB" >"$TMP/dpkg.log" 2>&1 || { cat "$TMP/dpkg.log" >&2; false; }' "dpkg -i php-fae fae"
  check '[ "$(env -i PATH=$NORUST_PATH php -r "echo extension_loaded(\"fae\") ? \"yes\" : \"no\";")" = yes ]' "after dpkg -i, php loads fae through its ini"
  check '[ "$(env -i PATH=$NORUST_PATH php -r "\$m = new Fae\\Client(); \$m->addServer(\"127.0.0.1\", $PORT); echo \$m->get(\"deb:k\");")" = v1 ]' "the installed extension reads what fae wrote"
  check '[ "$(env -i PATH=$NORUST_PATH fae --version)" = "fae $VERSION" ]' "the installed fae is on PATH"
  check 'env -i PATH=$NORUST_PATH fae get --servers 127.0.0.1:$PORT deb:k | grep -qx v1' "the installed fae reads the value"
  purge
  check '! dpkg -s php-fae >/dev/null 2>&1 && ! [ -e /usr/bin/fae ]' "dpkg --purge removes both"
  trap cleanup EXIT
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
