"""``fae.pymemcache``: pymemcache's public modules on libfae.

Change ``import pymemcache`` to ``import fae.pymemcache as pymemcache`` (or ``from
fae.pymemcache.client.hash import HashClient``): the same classes, constructor arguments,
return types (``bytes`` CAS tokens) and exception names, with libfae's pooled, thread-safe
client underneath. ``HashClient`` places keys exactly as pymemcache's does, so both can share
a cluster during a migration. Thin Python over ``fae.Client``: no routing or I/O of its own."""

__version__ = "4.0.0"

from .client.base import Client, PooledClient  # noqa: E402,F401
from .client.hash import HashClient  # noqa: E402,F401
from .client.retrying import RetryingClient  # noqa: E402,F401
from .exceptions import (  # noqa: E402,F401
    MemcacheClientError,
    MemcacheError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
    MemcacheUnknownError,
)

__all__ = [
    "Client",
    "PooledClient",
    "HashClient",
    "RetryingClient",
    "MemcacheError",
    "MemcacheClientError",
    "MemcacheUnknownCommandError",
    "MemcacheIllegalInputError",
    "MemcacheServerError",
    "MemcacheUnknownError",
    "MemcacheUnexpectedCloseError",
]
