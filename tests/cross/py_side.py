"""The Python side of the cross-language test (tests/cross/run.sh).

    python py_side.py read SERVERS C_RAW     the fae_* / pmc_* keys PHP wrote, read with
                                             serde="interop"; C_RAW holds what C read (c_side raw)
    python py_side.py write SERVERS          py_* keys with serde="interop" for PHP to read
    python py_side.py place SERVERS PHP C_DEFAULT C_KETAMA
                                             placement files of PHP and C against route_for
    python py_side.py keys NS...             the keys PHP writes under each namespace

Every client here uses php-memcached's default placement (mode "php-memcached-default") unless
it compares ketama. Prints "PASS py: ..." / "FAIL py: ..." lines; run.sh counts them.
"""

import json
import math
import socket
import sys

import fae

PHP_DEFAULT = "php-memcached-default"


def check(name, ok, detail=""):
    print(("PASS" if ok else "FAIL") + f" py: {name}" + ("" if ok else f": {detail}"))


def raw_get(addr, key):
    """(flags, bytes) of `key` on the server `addr` (memcached's text protocol), or None."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(f"get {key}\r\n".encode())
        buf = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"{addr} closed the connection")
            buf += chunk
            if buf == b"END\r\n":
                return None
            head, sep, rest = buf.partition(b"\r\n")
            if sep and head.startswith(b"VALUE"):
                _, _, flags, n = head.split()[:4]
                if len(rest) >= int(n) + len(b"\r\nEND\r\n"):
                    return int(flags), rest[: int(n)]


# What PHP writes (tests/cross/php_side.php), as Python's interop serde reads it: PHP strings
# come back as bytes (PHP strings carry no encoding).
PHP_VALUES = {
    "str": b"hello from php",
    "utf8": "héllo wörld".encode(),
    "big": b"fae cross-language " * 300,
    "huge": b"0123456789abcdef" * 4200 + b"tail",
    "int": 42,
    "neg": -7,
    "maxint": 2**63 - 1,
    "float": 3.25,
    "tenth": 0.1,
    "inf": math.inf,
    "true": True,
    "false": False,
    "json": {"a": [1, 2], "b": None, "c": "x"},
    "bigjson": ["cross"] * 500,
}
# FastLZ-compressed by php-memcached's defaults (≥ 2000 bytes, saves ≥ 23 %): flags type | 0x50.
PHP_COMPRESSED = {"big": 0x50, "huge": 0x50, "bigjson": 0x56}
PHP_STRINGS = ("str", "utf8")

PY_VALUES = {
    "str": "héllo from python",
    "bytes": b"raw \x00\x01 bytes",
    "int": 1234567890123,
    "neg": -5,
    "float": 2.5,
    "tenth": 0.1,
    "inf": math.inf,
    "true": True,
    "false": False,
    "dict": {"k": [1, 2], "n": None},
    "list": [1, "two", 3.5],
    "big": "compress me " * 500,
    "bigbytes": b"z" * 10000,
}


def read(servers, c_raw_path):
    c = fae.Client(servers, serde="interop", mode=PHP_DEFAULT)
    c_raw = {}
    with open(c_raw_path) as f:
        for line in f:
            parts = line.split()
            c_raw[parts[0]] = None if parts[1] == "MISS" else (int(parts[1]), bytes.fromhex(parts[2] if len(parts) > 2 else ""))
    namespaces = ["fae"] + (["pmc"] if any(k.startswith("pmc_") for k in c_raw) else [])
    for ns in namespaces:
        for k, want in PHP_VALUES.items():
            key = f"{ns}_{k}"
            try:
                got = c.get(key)
            except fae.Error as e:
                got = e
            check(f"interop reads {key}", type(got) is type(want) and got == want, repr(got)[:200])
            addr = c.route_for(key)[0]
            wire = raw_get(addr, key)
            if k in PHP_COMPRESSED:
                plain = want if isinstance(want, bytes) else json.dumps(want, separators=(",", ":")).encode()
                ok = wire is not None and wire[0] == PHP_COMPRESSED[k] and wire[1][:4] == len(plain).to_bytes(4, "little")
                check(f"{key} is FastLZ-compressed with a little-endian length prefix", ok, repr(wire and (hex(wire[0]), wire[1][:8])))
            # C reads the very bytes and flags the decoder above took apart.
            check(f"C reads {key} as stored", c_raw.get(key) == wire, f"C {c_raw.get(key)!r:.80} vs {wire!r:.80}")
            if k in PHP_STRINGS:
                check(f"C reads {key} byte-exact", c_raw.get(key) == (0, want), repr(c_raw.get(key)))


def write(servers):
    c = fae.Client(servers, serde="interop", mode=PHP_DEFAULT)
    for k, v in PY_VALUES.items():
        check(f"interop set py_{k}", c.set(f"py_{k}", v) is True)
    # What PHP will see on the wire: zlib (every php-memcached build reads it) with the length prefix.
    flags, data = raw_get(c.route_for("py_big")[0], "py_big")
    check("py_big is zlib-compressed for PHP (0x30, user flag 0x8000 = str)", flags == 0x8000_0030 and int.from_bytes(data[:4], "little") == len(PY_VALUES["big"]), hex(flags))


def place(servers, php_path, c_default_path, c_ketama_path):
    def table(path):
        with open(path) as f:
            return [line.split() for line in f if line.strip()]

    php = table(php_path)
    c_default = dict(table(c_default_path))
    c_ketama = dict(table(c_ketama_path))
    default = fae.Client(servers, mode=PHP_DEFAULT)
    ketama = fae.Client(servers)  # mode "libmemcached": php-memcached's OPT_LIBKETAMA_COMPATIBLE
    prefixed = fae.Client(servers, key_prefix="app:")  # hashed with the key, as pymemcache
    bad = {"default": [], "ketama": [], "prefix": [], "stored": []}
    used = set()
    for key, fae_d, pmc_d, fae_k, pmc_k, fae_hashed in php:
        d, k = default.route_for(key)[0], ketama.route_for(key)[0]
        used.update((d, k))
        if not (d == fae_d == pmc_d == c_default.get(key)):
            bad["default"].append((key, d, fae_d, pmc_d, c_default.get(key)))
        if not (k == fae_k == pmc_k == c_ketama.get(key)):
            bad["ketama"].append((key, k, fae_k, pmc_k, c_ketama.get(key)))
        if prefixed.route_for(key)[0] != fae_hashed:
            bad["prefix"].append(key)
        # PHP stored the key with its default placement: it is on that very server.
        wire = raw_get(d, key)
        if wire is None or wire[1] != f"v{key[5:]}".encode():
            bad["stored"].append(key)
    n = len(php)
    check(f"{n} keys: Python, Fae\\Client, php-memcached and C pick the same server (php-memcached default)", not bad["default"], bad["default"][:3])
    check(f"{n} keys: same server under ketama (OPT_LIBKETAMA_COMPATIBLE / mode libmemcached)", not bad["ketama"], bad["ketama"][:3])
    check(f"{n} keys: a hashed prefix places alike (key_prefix / OPT_HASH_WITH_PREFIX_KEY)", not bad["prefix"], bad["prefix"][:3])
    check(f"{n} keys PHP stored are on the server Python names", not bad["stored"], bad["stored"][:3])
    check("the keys spread over every server", len(used) == len(servers), sorted(used))


def main():
    mode = sys.argv[1]
    if mode == "keys":
        print(" ".join(f"{ns}_{k}" for ns in sys.argv[2:] for k in PHP_VALUES))
        return
    servers = sys.argv[2].split(",")
    if mode == "read":
        read(servers, sys.argv[3])
    elif mode == "write":
        write(servers)
    elif mode == "place":
        place(servers, *sys.argv[3:6])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
