#!/bin/sh
# Install libfae's C library, header and pkg-config file under PREFIX.
#
#   cargo build --release -p fae-c
#   bindings-c/install.sh PREFIX [BUILD_DIR]
#
# BUILD_DIR holds libfae.so and libfae.a; default: ${CARGO_TARGET_DIR:-target}/release.
# Installs PREFIX/lib/libfae.so, PREFIX/lib/libfae.a, PREFIX/include/fae.h and
# PREFIX/lib/pkgconfig/fae.pc. Then:
#
#   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig      # unless PREFIX is a system prefix
#   cc app.c $(pkg-config --cflags --libs fae)       # shared
#   cc app.c $(pkg-config --cflags --libs --static fae)  # static: put -Wl,-Bstatic around -lfae
#
# At run time the dynamic linker must find libfae.so: install to a system prefix and run
# ldconfig, or link with -Wl,-rpath,"$(pkg-config --variable=libdir fae)", or set
# LD_LIBRARY_PATH.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 PREFIX [BUILD_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
build=${2:-${CARGO_TARGET_DIR:-$root/target}/release}
version=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)

for f in libfae.so libfae.a; do
    if [ ! -f "$build/$f" ]; then
        echo "$0: $build/$f not found; run cargo build --release -p fae-c first" >&2
        exit 1
    fi
done

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 755 "$build/libfae.so" "$prefix/lib/libfae.so"
install -m 644 "$build/libfae.a" "$prefix/lib/libfae.a"
install -m 644 "$root/include/fae.h" "$prefix/include/fae.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" \
    "$here/fae.pc.in" > "$prefix/lib/pkgconfig/fae.pc"
echo "installed libfae $version to $prefix"
