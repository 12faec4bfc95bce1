#!/bin/sh
# Build the fae PHP extension and install it for the PHP that php-config names:
#
#   bindings-php/install.sh            # cargo build --release -p fae-php, then install
#   bindings-php/install.sh --no-build # install target/release/libfae_php.so as it is
#
# Copies the extension to $(php-config --extension-dir)/fae.so and bindings-php/fae.ini
# (extension=fae plus every fae.* setting, documented) to PHP's configuration: on Debian and
# Ubuntu to /etc/php/<version>/mods-available/fae.ini, enabled for every SAPI with phpenmod;
# elsewhere to $(php-config --ini-dir)/20-fae.ini. Needs root for system PHP (or DESTDIR to
# stage the files). Building needs Rust, php-dev and libclang-dev; the php-fae Debian package
# (packaging/build-debs.sh) installs without them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=yes
case ${1:-} in
    --no-build) build=no ;;
    "") ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
esac
command -v php-config >/dev/null || { echo "$0: php-config not found (apt-get install php-dev)" >&2; exit 1; }
if [ $build = yes ]; then
    (cd "$root" && cargo build --release -p fae-php)
fi
lib=${CARGO_TARGET_DIR:-$root/target}/release/libfae_php.so
[ -f "$lib" ] || { echo "$0: $lib not found; run cargo build --release -p fae-php" >&2; exit 1; }

dest=${DESTDIR:-}
ext_dir=$(php-config --extension-dir)
install -d "$dest$ext_dir"
install -m 644 "$lib" "$dest$ext_dir/fae.so"
php_version=$(php-config --version | cut -d. -f1,2)
mods=/etc/php/$php_version/mods-available
if [ -d "$mods" ]; then
    install -d "$dest$mods"
    install -m 644 "$here/fae.ini" "$dest$mods/fae.ini"
    enabled=""
    if [ -z "$dest" ] && command -v phpenmod >/dev/null; then
        phpenmod -v "$php_version" fae
        enabled=" (enabled: phpenmod fae)"
    fi
    echo "installed $dest$ext_dir/fae.so and $dest$mods/fae.ini$enabled"
else
    ini_dir=$(php-config --ini-dir)
    [ -n "$ini_dir" ] || { echo "$0: php-config has no --ini-dir; add extension=fae to php.ini" >&2; exit 1; }
    install -d "$dest$ini_dir"
    install -m 644 "$here/fae.ini" "$dest$ini_dir/20-fae.ini"
    echo "installed $dest$ext_dir/fae.so and $dest$ini_dir/20-fae.ini"
fi
echo "check: php -m | grep -x fae   (restart php-fpm to load it there)"
