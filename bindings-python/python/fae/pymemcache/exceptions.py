"""pymemcache's exception names and hierarchy, for ``fae.pymemcache``.

Each class also derives from the matching ``fae`` class, so ``except fae.Error`` keeps catching
everything ``fae.pymemcache`` raises."""

from __future__ import annotations

from .. import _errors


class MemcacheError(_errors.Error):
    "Base exception class"


class MemcacheClientError(MemcacheError, _errors.ClientError):
    """Raised when memcached fails to parse the arguments to a request, likely due to a
    malformed key and/or value, a bug in this library, or a version mismatch with
    memcached."""


class MemcacheUnknownCommandError(MemcacheClientError):
    """Raised when memcached fails to parse a request, likely due to a bug in this library
    or a version mismatch with memcached."""


class MemcacheIllegalInputError(MemcacheClientError):
    """Raised when a key or value is not legal for Memcache (see the class docs for
    Client for more details)."""


class MemcacheServerError(MemcacheError, _errors.ServerError):
    """Raised when memcached reports a failure while processing a request, likely due to a
    bug or transient issue in memcached."""


class MemcacheUnknownError(MemcacheError, _errors.ServerError):
    """Raised when this library receives a response from memcached that it cannot parse,
    likely due to a bug in this library or a version mismatch with memcached."""


class MemcacheUnexpectedCloseError(MemcacheServerError):
    "Raised when the connection with memcached closes unexpectedly."


_BY_REASON = {
    "invalid_key": MemcacheIllegalInputError,
    "invalid_value": MemcacheIllegalInputError,
    "unsupported_value": MemcacheIllegalInputError,
    "invalid_argument": MemcacheIllegalInputError,
    "client_error": MemcacheClientError,
    "server_error": MemcacheServerError,
    "protocol": MemcacheUnknownError,
    "reset": MemcacheUnexpectedCloseError,
}


def translate(e: _errors.Error) -> Exception:
    """The pymemcache-named exception for a ``fae`` one. Timeouts and connection failures
    stay ``fae.TimeoutError``/``fae.ConnectionError`` (OSErrors, as pymemcache's socket errors
    are); other reasons become ``MemcacheClientError`` or ``MemcacheError``."""
    if isinstance(e, (_errors.TimeoutError, _errors.ConnectionError)) and e.reason != "reset":
        return e
    cls = _BY_REASON.get(e.reason)
    if cls is None:
        cls = MemcacheClientError if isinstance(e, _errors.ClientError) else MemcacheError
    new = cls(str(e), e.reason, e.destination, e.detail)
    new.__cause__ = None
    return new
