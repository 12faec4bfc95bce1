#!/usr/bin/env bash
# Build the portable wheel and the sdist of the Python binding (distribution `libfae`, import `fae`):
# one abi3 wheel for every CPython >= 3.9, linked against glibc 2.17 (manylinux2014 /
# manylinux_2_17: RHEL 7+, Ubuntu 18.04+, Debian 10+, Amazon Linux 2) with the zig toolchain from
# the Python package index, so no manylinux container is needed. Then checks it with auditwheel.
#
#     bash bindings-python/build-wheel.sh [OUT_DIR]      (default: target/wheels)
#
# Needs the repository's .venv (scripts/setup.sh); installs ziglang and auditwheel into it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${1:-$ROOT/target/wheels}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="$ROOT/.venv/bin/python"
# maturin finds zig as `python -m ziglang` with the python on PATH: the venv's.
# (PATH is changed only when needed: pyo3's build script reruns when PATH changes.)
export VIRTUAL_ENV="$ROOT/.venv"
case ":$PATH:" in
  *":$VIRTUAL_ENV/bin:"*) ;;
  *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;;
esac
[ -x "$PY" ] || { echo "build-wheel: run scripts/setup.sh first (no .venv)" >&2; exit 1; }
"$PY" -m pip install -q --disable-pip-version-check 'maturin>=1.9.4,<2' ziglang auditwheel

# The sdist and the wheel carry this copy of the LICENSE: it must be the repository's.
cmp -s "$ROOT/LICENSE" "$HERE/LICENSE" || { echo "build-wheel: bindings-python/LICENSE differs from LICENSE (cp LICENSE bindings-python/)" >&2; exit 1; }

cd "$HERE"
# Own target dir: the zig-linked build must not mix with the workspace's or maturin develop's.
"$ROOT/.venv/bin/maturin" build --release --strip --zig --compatibility manylinux2014 \
  -i "$PY" --target-dir "$ROOT/target/wheel-build" --out "$OUT"
"$ROOT/.venv/bin/maturin" sdist --out "$OUT"

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
WHEEL="$(ls "$OUT"/libfae-"$VERSION"-cp39-abi3-manylinux*_2_17_x86_64*.whl 2>/dev/null | head -1 || true)"
[ -f "$WHEEL" ] || { echo "build-wheel: no cp39-abi3 manylinux_2_17 wheel in $OUT: $(ls "$OUT")" >&2; exit 1; }
"$ROOT/.venv/bin/auditwheel" show "$WHEEL" | tee "$OUT/auditwheel.txt"
grep -q 'manylinux_2_17_x86_64' "$OUT/auditwheel.txt" || { echo "build-wheel: not manylinux_2_17" >&2; exit 1; }
"$PY" - "$WHEEL" "$OUT/libfae-$VERSION.tar.gz" <<'PY'
import sys, tarfile, zipfile
wheel, sdist = sys.argv[1:]
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zipfile.ZipFile(wheel).namelist()), "no LICENSE in wheel"
assert any(n.endswith("/LICENSE") for n in tarfile.open(sdist).getnames()), "no LICENSE in sdist"
PY
echo "build-wheel: $WHEEL"
echo "build-wheel: $OUT/libfae-$VERSION.tar.gz"
