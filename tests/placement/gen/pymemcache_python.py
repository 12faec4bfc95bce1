"""Writes tests/placement/pymemcache-python.csv with the real pymemcache: the server its
HashClient (defaults, allow_unicode_keys=True) picks for str keys of any characters, bytes keys,
each with and without a key_prefix.

Run: python tests/placement/gen/pymemcache_python.py  (pymemcache 4.0 installed; no server is
contacted: HashClient places a key without I/O). Columns: kind (str or bytes), key_prefix and
key as hex of their bytes (a str key as UTF-8, the bytes it travels as), server.
"""

import os
import random

from pymemcache.client.hash import HashClient

SERVERS = [("127.0.0.1", 21211 + i) for i in range(4)]
PREFIXES = [b"", b"app:", b"\xc3\xa9t\xc3\xa9/", b"b'"]
ROWS = 10_000

# Code point ranges to draw from: Latin-1 (where the low byte is the code point), the rest of
# the BMP, and astral planes. ASCII whitespace, control characters, DEL and surrogates are
# left out: pymemcache or memcached refuse them as keys.
RANGES = [(0x21, 0x7E), (0x80, 0xFF), (0x100, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]


def random_str(rng, budget):
    out = []
    for _ in range(rng.randint(1, 12)):
        lo, hi = rng.choice(RANGES)
        c = chr(rng.randint(lo, hi))
        if len("".join(out + [c]).encode()) > budget:
            break
        out.append(c)
    return "".join(out) or "x"


def random_bytes(rng, budget):
    n = rng.randint(1, min(24, budget))
    # No byte <= 0x20 and no DEL: the text protocol cannot carry them.
    return bytes(rng.choice([b for b in range(0x21, 0x100) if b != 0x7F]) for _ in range(n))


def main():
    rng = random.Random(16)
    clients = {p: HashClient(SERVERS, key_prefix=p, allow_unicode_keys=True) for p in PREFIXES}
    path = os.path.join(os.path.dirname(__file__), "..", "pymemcache-python.csv")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write("kind,key_prefix,key,server\n")
        for i in range(ROWS):
            prefix = PREFIXES[i % len(PREFIXES)]
            budget = 250 - len(prefix)
            if i % 10 < 5:
                key = random_str(rng, budget)
                kind, raw = "str", key.encode()
            elif i % 10 < 6:
                key = "key:%d" % i
                kind, raw = "str", key.encode()
            else:
                key = random_bytes(rng, budget)
                kind, raw = "bytes", key
            host, port = clients[prefix]._get_client(key).server
            f.write(f"{kind},{prefix.hex()},{raw.hex()},{host}:{port}\n")


if __name__ == "__main__":
    main()
