"""The exception tree of :mod:`fae`.

Every exception carries the failure's stable ``reason`` name (the same names as libfae's stats,
logs and C result messages), the ``destination`` (``"host:port"``) it concerns when there is
one, and the ``detail`` message.

::

    fae.Error
     ├─ fae.ClientError        (also a ValueError)     bad key/value/argument/config, closed
     │                                                  client, memcached's CLIENT_ERROR/ERROR
     ├─ fae.ServerError                                 SERVER_ERROR, a reply that cannot be parsed
     ├─ fae.TimeoutError       (also a TimeoutError)    the request's deadline passed
     ├─ fae.ConnectionError    (also a ConnectionError) connect failed, reset, I/O error
     ├─ fae.NoServerAvailable                           breaker open (tko) or no server
     └─ fae.AuthenticationError (also a PermissionError) login refused, TLS handshake failed
"""

from __future__ import annotations

import builtins
from typing import Optional

__all__ = [
    "Error",
    "ClientError",
    "ServerError",
    "TimeoutError",
    "ConnectionError",
    "NoServerAvailable",
    "AuthenticationError",
]


class Error(Exception):
    """Base class of every libfae error.

    Attributes:
        reason: stable reason name, e.g. ``"invalid_key"``, ``"timeout"``, ``"connect_refused"``.
        destination: ``"host:port"`` the error concerns, or None.
        detail: the detail message, or None.
    """

    def __init__(
        self,
        message: str,
        reason: str = "error",
        destination: Optional[str] = None,
        detail: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.destination = destination
        self.detail = detail


class ClientError(Error, ValueError):
    """The caller's input was rejected before any I/O: an invalid key (reason
    ``invalid_key``), a value over ``max_value_size`` (``value_too_large``), a value the serde
    cannot store or read (``invalid_value``, ``unsupported_value``), a bad argument or config
    (``invalid_argument``, ``invalid_config``; numbers out of range too, and config dicts that are
    cyclic or nested deeper than 128 levels), a closed client (``closed``), or memcached
    refusing the request as malformed: its ``CLIENT_ERROR``/``ERROR`` reply, e.g. ``incr`` of a
    non-numeric value (``client_error``, as pymemcache's ``MemcacheClientError``)."""


class ServerError(Error):
    """memcached answered ``SERVER_ERROR`` (``server_error``) or a reply that could not be
    parsed (``protocol``)."""


class TimeoutError(Error, builtins.TimeoutError):
    """The request did not complete within ``timeout`` (reason ``timeout``)."""


class ConnectionError(Error, builtins.ConnectionError):
    """No connection could be made (``connect_refused``, ``connect_timeout``,
    ``connect_failed``) or it broke mid-request (``reset``, ``io``)."""


class AuthenticationError(Error, builtins.PermissionError):
    """The server refused the login of the config's ``auth`` (reason ``auth_failed``), or the
    TLS handshake failed (``tls_failed``: certificate not trusted, expired or for another name,
    or a server that does not speak TLS). Not retried: the settings must change. The server is
    not asked again for ``health.probe_max_ms``; every request fails fast with this error."""


class NoServerAvailable(Error):
    """No server can take the request: its breaker is open (``tko``) or none is configured
    (``no_servers``)."""
