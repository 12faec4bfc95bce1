"""pymemcache's serde names for ``fae.pymemcache``.

``pickle_serde``/``PickleSerde`` and ``compressed_serde``/``CompressedSerde`` with zlib map to
libfae's native ``serde="pymemcache"`` layout (the same flags and bytes, encoded in Rust); any
other object with pymemcache's ``serialize(key, value)``/``deserialize(key, value, flags)``
methods (pymemcache's own serde objects included) is called as is."""

from __future__ import annotations

import logging
import pickle
import zlib
from typing import Any, Callable, Optional, Tuple

FLAG_BYTES = 0
FLAG_PICKLE = 1 << 0
FLAG_INTEGER = 1 << 1
FLAG_LONG = 1 << 2
FLAG_COMPRESSED = 1 << 3
FLAG_TEXT = 1 << 4

DEFAULT_PICKLE_VERSION = pickle.HIGHEST_PROTOCOL


def _python_memcache_serializer(key: Any, value: Any, pickle_version: Optional[int] = None) -> Tuple[Any, int]:
    """python-memcache's layout as pymemcache writes it: bytes 0, str 16, int 2, else pickle 1."""
    if type(value) is bytes:
        return value, FLAG_BYTES
    if type(value) is str:
        return value.encode("utf8"), FLAG_TEXT
    if type(value) is int:
        return "%d" % value, FLAG_INTEGER
    return pickle.dumps(value, DEFAULT_PICKLE_VERSION if pickle_version is None else pickle_version), FLAG_PICKLE


def get_python_memcache_serializer(pickle_version: int = DEFAULT_PICKLE_VERSION) -> Callable[[Any, Any], Tuple[Any, int]]:
    """A python-memcache serializer with ``pickle_version``."""
    return lambda key, value: _python_memcache_serializer(key, value, pickle_version)


python_memcache_serializer = get_python_memcache_serializer()


def python_memcache_deserializer(key: Any, value: bytes, flags: int) -> Any:
    """Reads what ``python_memcache_serializer`` (or python-memcache) wrote; a pickle that
    fails to load reads as None, as in pymemcache."""
    if flags == 0:
        return value
    if flags & FLAG_TEXT:
        return value.decode("utf8")
    if flags & (FLAG_INTEGER | FLAG_LONG):
        return int(value)
    if flags & FLAG_PICKLE:
        try:
            return pickle.loads(value)
        except Exception:
            logging.getLogger(__name__).info("Pickle error", exc_info=True)
            return None
    return value


class PickleSerde:
    """pymemcache's pickle serde: bytes 0, str 16, int 2, anything else pickled (1)."""

    def __init__(self, pickle_version: int = DEFAULT_PICKLE_VERSION) -> None:
        self._pickle_version = pickle_version

    # fae.pymemcache clients encode this layout natively; these are for callers that use the
    # serde directly (a CompressedSerde with its own compressor wraps it, for one).
    def serialize(self, key: Any, value: Any) -> Tuple[bytes, int]:
        if isinstance(value, bytes):
            return value, FLAG_BYTES
        if isinstance(value, str):
            return value.encode("utf8"), FLAG_TEXT
        if type(value) is int:
            return str(value).encode("ascii"), FLAG_INTEGER
        return pickle.dumps(value, self._pickle_version), FLAG_PICKLE

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        if flags == 0:
            return value
        if flags & FLAG_TEXT:
            return value.decode("utf8")
        if flags & (FLAG_INTEGER | FLAG_LONG):
            return int(value)
        if flags & FLAG_PICKLE:
            return pickle.loads(value)
        return value


pickle_serde = PickleSerde()


class CompressedSerde:
    """pymemcache's compressing serde: values of at least ``min_compress_len`` bytes are
    compressed (flag 8). With zlib and a pickle serde this is libfae's native layout."""

    def __init__(
        self,
        compress: Callable[[bytes], bytes] = zlib.compress,
        decompress: Callable[[bytes], bytes] = zlib.decompress,
        serde: Any = pickle_serde,
        min_compress_len: int = 400,
    ) -> None:
        self._compress = compress
        self._decompress = decompress
        self._serde = serde
        self._min_compress_len = min_compress_len

    def native(self) -> Optional[dict]:
        if (
            self._compress is zlib.compress
            and self._decompress is zlib.decompress
            and isinstance(self._serde, PickleSerde)
        ):
            return {"serde": "pymemcache", "pickle_protocol": self._serde._pickle_version,
                    # libfae's rule is pymemcache's: longer than this, 0 = never.
                    "min_compress_len": max(self._min_compress_len, 0)}
        return None

    def serialize(self, key: Any, value: Any) -> Tuple[bytes, int]:
        value, flags = self._serde.serialize(key, value)
        if len(value) > self._min_compress_len > 0:
            old_value = value
            value = self._compress(value)
            # As pymemcache: the compressed form unless it came out larger.
            if len(old_value) < len(value):
                value = old_value
            else:
                flags |= FLAG_COMPRESSED
        return value, flags

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        if flags & FLAG_COMPRESSED:
            value = self._decompress(value)
        return self._serde.deserialize(key, value, flags & ~FLAG_COMPRESSED)


compressed_serde = CompressedSerde()


class LegacyWrappingSerde:
    """Wraps pymemcache's old ``serializer``/``deserializer`` functions as a serde."""

    def __init__(self, serializer_func: Any, deserializer_func: Any) -> None:
        self.serialize = serializer_func or self._default_serialize
        self.deserialize = deserializer_func or self._default_deserialize

    def _default_serialize(self, key: Any, value: Any) -> Tuple[Any, int]:
        return value, 0

    def _default_deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        return value


def native_options(serde: Any) -> Optional[dict]:
    """fae.Client options for a serde libfae encodes natively, else None."""
    if isinstance(serde, PickleSerde):
        return {"serde": "pymemcache", "pickle_protocol": serde._pickle_version}
    if isinstance(serde, CompressedSerde):
        return serde.native()
    return None
