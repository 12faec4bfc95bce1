"""Value layouts: fae's serdes against the REAL pymemcache and pylibmc, and php-memcached's
layout (written byte for byte on the wire) for serde="interop". Also placement: keys written by
pylibmc / pymemcache's HashClient are found by fae in the matching mode."""

from __future__ import annotations

import pickle
import struct
import zlib

import pylibmc
import pytest
from pymemcache.client.base import Client as PmClient
from pymemcache.client.hash import HashClient
from pymemcache.serde import CompressedSerde, pickle_serde

import fae
from conftest import raw_command

VALUES = [
    b"bytes",
    b"",
    "text é ☃",
    "",
    0,
    -5,
    2**40,
    2**70,
    1.5,
    [1, "two", {"three": 3}],
    {"a": (1, 2)},
    None,
    ("tuple",),
]


def host_port(addr):
    host, port = addr.split(":")
    return host, int(port)


def wire(addr, key):
    """(flags, data) of the item as memcached holds it."""
    reply = raw_command(addr, f"get {key}\r\n".encode(), b"END\r\n")
    head, rest = reply.split(b"\r\n", 1)
    _, _, flags, n = head.split()
    return int(flags), rest[: int(n)]


@pytest.mark.parametrize("serde", ["pymemcache", "pylibmc", "interop"])
def test_round_trip(server, serde):
    c = fae.Client([server], serde=serde)
    for i, v in enumerate(VALUES + [True, False]):
        c.set(f"v{i}", v)
        got = c.get(f"v{i}")
        if serde == "interop" and isinstance(v, tuple):
            assert got == list(v) or got == v
        elif serde == "interop" and isinstance(v, dict):
            assert got == {"a": [1, 2]}, "JSON: tuples come back as lists"
        else:
            assert got == v, (serde, v)
    many = c.get_many([f"v{i}" for i in range(len(VALUES))])
    assert len(many) == len(VALUES)


def test_raw_serde(server):
    c = fae.Client([server], serde="raw")
    c.set("r", b"\x00\xff")
    assert c.get("r") == b"\x00\xff"
    fae.Client([server]).set("t", "text")
    assert c.get("t") == b"text", "raw ignores flags"


def test_pymemcache_writes_fae_reads_and_back(server):
    pm = PmClient(host_port(server), serde=pickle_serde, default_noreply=False)
    c = fae.Client([server])
    for i, v in enumerate(VALUES):
        pm.set(f"pm{i}", v)
        assert c.get(f"pm{i}") == v, v
        c.set(f"fa{i}", v)
        assert pm.get(f"fa{i}") == v, v
        assert wire(server, f"pm{i}") == wire(server, f"fa{i}"), f"same bytes and flags for {v!r}"


def test_pymemcache_compressed_serde(server):
    pm = PmClient(host_port(server), serde=CompressedSerde(), default_noreply=False)
    c = fae.Client([server], min_compress_len=400)
    big = "x" * 5000
    pm.set("pz", big)
    assert wire(server, "pz")[0] == 16 | 8
    assert c.get("pz") == big
    c.set("fz", {"big": big})
    flags, data = wire(server, "fz")
    assert flags == 1 | 8 and len(data) < 1000
    assert pm.get("fz") == {"big": big}
    c.set("small", "y" * 100)
    assert wire(server, "small")[0] == 16, "under the threshold: not compressed"


def test_pylibmc_writes_fae_reads_and_back(server):
    pl = pylibmc.Client([server])
    c = fae.Client([server], serde="pylibmc")
    values = VALUES + [True, False]
    for i, v in enumerate(values):
        pl.set(f"pl{i}", v)
        c.set(f"fa{i}", v)
        assert wire(server, f"pl{i}") == wire(server, f"fa{i}"), f"same bytes and flags for {v!r}"
        assert c.get(f"pl{i}") == pl.get(f"pl{i}"), v
        assert pl.get(f"fa{i}") == c.get(f"fa{i}"), v
    big = "z" * 5000
    pl.set("plz", big, min_compress_len=100)
    assert wire(server, "plz")[0] == 16 | 8
    assert c.get("plz") == big
    c.set("faz", big, min_compress_len=100)
    assert wire(server, "faz")[0] == 16 | 8
    assert pl.get("faz") == big
    assert pl.incr("pl4", 3) == 3 and c.incr("pl4") == 4


def test_pylibmc_and_pymemcache_read_each_other_through_fae(server):
    # pylibmc ints (flag 4) read in pymemcache mode, pymemcache ints (flag 2) in pylibmc mode.
    pylibmc.Client([server]).set("i4", 7)
    PmClient(host_port(server), serde=pickle_serde, default_noreply=False).set("i2", 8)
    assert fae.Client([server]).get("i4") == 7
    assert fae.Client([server], serde="pylibmc").get("i2") == 8


def put_raw(addr, key, flags, data):
    line = f"set {key} {flags} 0 {len(data)}\r\n".encode() + data + b"\r\n"
    assert raw_command(addr, line) == b"STORED\r\n"


def test_interop_reads_php_memcached_layout(server):
    c = fae.Client([server], serde="interop")
    put_raw(server, "php_s", 0, b"php string")
    put_raw(server, "php_l", 1, b"-42")
    put_raw(server, "php_d", 2, b"3.25")
    put_raw(server, "php_inf", 2, b"-Infinity")
    put_raw(server, "php_t", 3, b"1")
    put_raw(server, "php_f", 3, b"")
    put_raw(server, "php_j", 6, b'{"a":[1,2],"b":null}')
    put_raw(server, "php_uf", 0 | (5 << 16), b"user flags ignored")
    text = ("lorem ipsum " * 400).encode()
    put_raw(server, "php_z", 0x30, struct.pack("<I", len(text)) + zlib.compress(text, 3))
    put_raw(server, "php_jz", 0x36, struct.pack("<I", 12) + zlib.compress(b'{"k":"vvvv"}'))
    assert c.get("php_s") == b"php string"
    assert c.get("php_l") == -42
    assert c.get("php_d") == 3.25
    assert c.get("php_inf") == float("-inf")
    assert c.get("php_t") is True and c.get("php_f") is False
    assert c.get("php_j") == {"a": [1, 2], "b": None}
    assert c.get("php_uf") == b"user flags ignored"
    assert c.get("php_z") == text
    assert c.get("php_jz") == {"k": "vvvv"}
    # FastLZ, php-memcached's default compression: the bytes php-memcached 3.2 stored for
    # str_repeat("hello fastlz ", 4) . "end" (compression_threshold=10).
    fastlz = bytes.fromhex("370000000c68656c6c6f20666173746c7a20e01e0c02656e64")
    put_raw(server, "php_fastlz", 0x50, fastlz)
    assert c.get("php_fastlz") == b"hello fastlz " * 4 + b"end"
    put_raw(server, "php_ser", 4, b'a:1:{i:0;s:1:"x";}')
    put_raw(server, "php_zstd", 0x90, b"\x04\x00\x00\x00zstd")
    for key in ("php_ser", "php_zstd"):
        with pytest.raises(fae.ClientError) as e:
            c.get(key)
        assert e.value.reason == "unsupported_value"
    put_raw(server, "php_badlz", 0x50, b"\x00\x00\x00\x00junk")
    put_raw(server, "php_badlen", 0x50, b"\x36" + fastlz[1:])
    put_raw(server, "php_nomethod", 0x16, fastlz)  # compressed, no method
    for key in ("php_badlz", "php_badlen", "php_nomethod"):
        with pytest.raises(fae.ClientError) as e:
            c.get(key)
        assert e.value.reason == "invalid_value", key
    assert raw_command(server, b"get php_ser\r\n", b"END\r\n").startswith(b"VALUE"), "kept"


def test_interop_writes_php_memcached_layout(server):
    c = fae.Client([server], serde="interop")
    c.set("i", 42)
    c.set("f", 0.1)
    c.set("b", True)
    c.set("b0", False)
    c.set("s", "héllo")
    c.set("y", b"raw")
    c.set("j", {"k": [1, 2]})
    c.set("p", {1, 2})
    assert wire(server, "i") == (1, b"42")
    assert wire(server, "f") == (2, b"0.1")
    assert wire(server, "b") == (3, b"1")
    assert wire(server, "b0") == (3, b"")
    assert wire(server, "s") == (0x8000_0000, "héllo".encode()), "PHP: a string (user flag 0x8000)"
    assert wire(server, "y") == (0, b"raw")
    assert wire(server, "j") == (6, b'{"k":[1,2]}')
    assert wire(server, "p")[0] == 0xF and c.get("p") == {1, 2}
    text = "compress me " * 500
    c.set("z", text)
    flags, data = wire(server, "z")
    assert flags == 0x8000_0000 | 0x30
    assert struct.unpack("<I", data[:4])[0] == len(text)
    assert zlib.decompress(data[4:]).decode() == text
    assert c.get("z") == text
    # And it still reads what the Python clients wrote, where PHP's layout cannot clash.
    pylibmc.Client([server]).set("pl_text", "from pylibmc")
    pylibmc.Client([server]).set("pl_ztext", "w" * 3000, min_compress_len=100)
    assert c.get("pl_text") == "from pylibmc"
    assert c.get("pl_ztext") == "w" * 3000


def test_custom_serde_object(server):
    class Upper:
        def serialize(self, key, value):
            assert isinstance(key, bytes)
            return value.upper().encode(), 77

        def deserialize(self, key, value, flags):
            return (value.decode().lower(), flags)

    c = fae.Client([server], serde=Upper())
    assert c.serde == "custom"
    c.set("c", "abc")
    assert wire(server, "c") == (77, b"ABC")
    assert c.get("c") == ("abc", 77)
    assert c.get_many(["c"]) == {"c": ("abc", 77)}


def test_a_get_inside_a_deserializer_reads_its_own_value(server):
    # A single get copies its value into a per-thread buffer; a get made by the deserializer of
    # another get's value (the same thread, before the outer value is decoded) must neither
    # see nor clobber the outer one.
    plain = fae.Client([server])
    plain.set("inner", b"i" * 10)
    plain.set("big", b"b" * 100_000)  # larger than the buffer a thread keeps

    class Nested:
        def __init__(self):
            self.client = None

        def serialize(self, key, value):
            return value, 0

        def deserialize(self, key, value, flags):
            if key == b"outer":
                return (value, self.client.get("inner"), self.client.get("big"), value)
            return value

    serde = Nested()
    c = fae.Client([server], serde=serde)
    serde.client = c
    c.set("outer", b"o" * 300)
    for _ in range(3):
        assert c.get("outer") == (b"o" * 300, b"i" * 10, b"b" * 100_000, b"o" * 300)
        assert c.get("inner") == b"i" * 10


def test_corrupt_values_raise_clearly(server):
    c = fae.Client([server])
    put_raw(server, "bad_text", 16, b"\xff\xfe")
    put_raw(server, "bad_int", 2, b"twelve")
    put_raw(server, "bad_zlib", 8, b"not zlib")
    for key in ("bad_text", "bad_int", "bad_zlib"):
        with pytest.raises(fae.ClientError) as e:
            c.get(key)
        assert e.value.reason == "invalid_value", key
    put_raw(server, "bad_pickle", 1, b"\x80\x05garbage")
    with pytest.raises(Exception):
        c.get("bad_pickle")


def test_placement_matches_pylibmc_ketama_weighted(servers):
    pl = pylibmc.Client(servers, behaviors={"ketama_weighted": True})
    c = fae.Client(servers, mode="libmemcached", serde="pylibmc")
    keys = [f"user:{i}" for i in range(300)]
    pl.set_multi({k: k for k in keys})
    got = c.get_many(keys)
    assert got == {k: k for k in keys}, "every key pylibmc wrote is where fae looks"


def test_placement_matches_pymemcache_hashclient(servers):
    hc = HashClient([host_port(s) for s in servers], serde=pickle_serde, default_noreply=False)
    c = fae.Client(servers, mode="pymemcache")
    keys = [f"user:{i}" for i in range(300)]
    hc.set_many({k: {"id": k} for k in keys})
    assert c.get_many(keys) == {k: {"id": k} for k in keys}
    c.set_many({f"fae:{i}": i for i in range(100)})
    assert hc.get_many([f"fae:{i}" for i in range(100)]) == {f"fae:{i}": i for i in range(100)}
