"""``fae.pymemcache.client``: pymemcache's client classes on libfae."""

from .base import Client, PooledClient  # noqa: F401
from .hash import HashClient  # noqa: F401
from .retrying import RetryingClient  # noqa: F401
from ..exceptions import (  # noqa: F401
    MemcacheClientError,
    MemcacheError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
    MemcacheUnknownError,
)
