"""``fae.pylibmc``: pylibmc's public API on libfae.

Change ``import pylibmc`` to ``import fae.pylibmc as pylibmc``: ``Client`` with ``behaviors``
(the placement ones select the matching libfae mode: default → ``php-memcached-default``,
``{"ketama": True}`` → ``libmemcached-ketama``, ``{"ketama_weighted": True}`` →
``libmemcached``), the mapping interface, ``clone``, ``ClientPool``, ``ThreadMappedPool``,
every ``*_multi`` with ``key_prefix``, ``get_stats``, overridable ``serialize``/``deserialize``
and pylibmc's exception classes (each also an ``fae.Error``). Thin Python over ``fae.Client``.
"""

from __future__ import annotations

from . import _pylibmc
from ._pylibmc import *  # noqa: F401,F403
from ._pylibmc import __version__  # noqa: F401
from .consts import distributions, hashers  # noqa: E402
from .client import Client  # noqa: E402
from .pools import ClientPool, ThreadMappedPool  # noqa: E402


def build_info() -> str:
    return "pylibmc %s on libfae (compression=%s, sasl=%s)" % (
        __version__, _pylibmc.support_compression, _pylibmc.support_sasl)


__all__ = ["hashers", "distributions", "Client", "ClientPool", "ThreadMappedPool"] + [
    n for n in dir(_pylibmc) if not n.startswith("_") and n not in ("annotations", "pickle", "weakref", "zlib")
]
