#!/bin/sh
# Install libfae's C library, header and pkg-config file under PREFIX.
#
#   cargo build --release -p fae-c
#   bindings-c/install.sh PREFIX [BUILD_DIR]
#
# BUILD_DIR holds libfae.so and libfae.a; default: ${CARGO_TARGET_DIR:-target}/release.
# Installs PREFIX/lib/libfae.so.X.Y.Z (SONAME libfae.so.X) with the symlinks libfae.so.X (what
# programs load) and libfae.so (what -lfae finds), PREFIX/lib/libfae.a without its embedded
# LLVM bitcode and debug sections (41 MB -> 13 MB), PREFIX/include/fae.h and PREFIX/lib/pkgconfig/fae.pc.
# DESTDIR stages the files under DESTDIR/PREFIX (packaging) with paths in fae.pc left as
# PREFIX. Then:
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
case $1 in
    /*) prefix=$1 ;;
    *) mkdir -p "$1" && prefix=$(cd "$1" && pwd) ;;
esac
dest=${DESTDIR:-}$prefix
build=${2:-${CARGO_TARGET_DIR:-$root/target}/release}
version=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
major=${version%%.*}

for f in libfae.so libfae.a; do
    if [ ! -f "$build/$f" ]; then
        echo "$0: $build/$f not found; run cargo build --release -p fae-c first" >&2
        exit 1
    fi
done

install -d "$dest/lib/pkgconfig" "$dest/include"
install -m 755 "$build/libfae.so" "$dest/lib/libfae.so.$version"
ln -sf "libfae.so.$version" "$dest/lib/libfae.so.$major"
ln -sf "libfae.so.$major" "$dest/lib/libfae.so"
if command -v strip >/dev/null 2>&1; then
    # Most of a release libfae.a is LLVM bitcode (.llvmbc, kept in every object for LTO) and
    # std's debug info: neither is needed to link a C program against it (41 MB -> 13 MB).
    # The symbol tables a static link needs stay.
    strip --strip-debug --remove-section=.llvmbc --remove-section=.llvmcmd \
        -o "$dest/lib/libfae.a" "$build/libfae.a"
    chmod 644 "$dest/lib/libfae.a"
else
    install -m 644 "$build/libfae.a" "$dest/lib/libfae.a"
fi
install -m 644 "$root/include/fae.h" "$dest/include/fae.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" \
    "$here/fae.pc.in" > "$dest/lib/pkgconfig/fae.pc"
echo "installed libfae $version to $dest"
