#!/usr/bin/env bash
# Install the built wheel into a fresh venv of every CPython 3.9-3.13 found here and run a smoke
# test in each (set/get/get_many and the drop-in modules against a memcached started on a free
# 127.0.0.1 port, killed by PID). Prints "N passed, M failed"; exits non-zero on any failure.
#
#     bash tests/python/wheel_install.sh [WHEEL]   (default: the one in target/wheels)
#
# Build the wheel first with bindings-python/build-wheel.sh. Interpreters are looked up as
# ~/.pyenv/versions/3.X.*/bin/python3.X, then python3.X on PATH; a missing version is reported as skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WHEEL="${1:-$(ls -t "$ROOT"/target/wheels/libfae-*-cp39-abi3-*.whl 2>/dev/null | head -1)}"
[ -f "$WHEEL" ] || { echo "wheel_install: no wheel (run bindings-python/build-wheel.sh)" >&2; exit 1; }
WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cat > "$TMP/smoke.py" <<'PY'
import os, socket, subprocess, sys, time

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

port = free_port()
args = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
if os.geteuid() == 0:
    args += ["-u", "root"]
proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    import fae
    import fae.pylibmc
    from fae.pymemcache.client.hash import HashClient

    addr = f"127.0.0.1:{port}"
    c = fae.Client(servers=[addr])
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v"
    assert c.set("é", "text") and c.get("é") == "text"
    assert c.get_many(["k", "missing"]) == {"k": b"v"}
    try:
        c.get("bad key")
        raise AssertionError("a key with a space was accepted")
    except fae.Error:
        pass
    m = fae.pylibmc.Client([addr])
    m["n"] = 5
    assert m["n"] == 5 and "n" in m
    h = HashClient([("127.0.0.1", port)])
    h.set("h", b"x")
    assert h.get("h") == b"x"
    print(f"ok {sys.version.split()[0]} {fae._fae.__file__.rsplit('/', 1)[-1]}")
finally:
    proc.kill()
    proc.wait()
PY

passed=0
failed=0
for v in 3.9 3.10 3.11 3.12 3.13; do
  py="$(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$py" ]; then
    py="$(command -v "python$v" || true)"
    # A pyenv shim for a version that is not selected exists but does not run.
    [ -n "$py" ] && ! "$py" -c '' 2>/dev/null && py=""
  fi
  if [ -z "$py" ]; then
    echo "skip  CPython $v: not installed"
    continue
  fi
  venv="$TMP/venv$v"
  if "$py" -m venv "$venv" &&
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$WHEEL" &&
    (cd "$TMP" && "$venv/bin/python" smoke.py); then
    passed=$((passed + 1))
  else
    echo "FAIL  CPython $v ($py)"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
