"""libfae from Python: route keys over several memcached servers, read a key another language
wrote, and show where keys live.

    python examples/python/demo.py 127.0.0.1:21211 127.0.0.1:21212 127.0.0.1:21213
"""

import sys

import fae


def main(servers):
    mc = fae.Client(servers, timeout=0.5)  # mode="libmemcached", serde="pymemcache" by default

    mc.set("py:user:1", {"name": "alice", "langs": ["python", "rust"]}, expire=300)
    mc.set("py:greeting", "héllo from Python")
    mc.set("py:visits", 41)
    print("get py:user:1        ->", mc.get("py:user:1"))
    print("incr py:visits       ->", mc.incr("py:visits"))

    many = {f"py:item:{i}": i * i for i in range(10)}
    print("set_many failed      ->", mc.set_many(many))
    got = mc.get_many(list(many) + ["py:missing"])
    print(f"get_many             -> {len(got)} hits of {len(many) + 1} keys")

    assert mc.get("py:user:1")["name"] == "alice" and len(got) == len(many)

    # demo:a was written by the C example through libfae.so with client flags 1: same
    # placement; read it as raw bytes (flags 1 means "pickle" to the pymemcache layout).
    raw = fae.Client(servers, serde="raw")
    print("get demo:a (from C)  ->", raw.get("demo:a"))

    for key in ("py:user:1", "py:greeting", "py:visits"):
        print(f"route_for {key:<12} -> {mc.route_for(key)[0]}")

    try:
        mc.get("bad key")
    except fae.ClientError as e:
        print("bad key              ->", type(e).__name__, e.reason)

    mc.close()


if __name__ == "__main__":
    main(sys.argv[1:] or ["127.0.0.1:11211"])
