"""Django cache backend: ``fae.django.FaeCache``.

::

    CACHES = {
        "default": {
            "BACKEND": "fae.django.FaeCache",
            "LOCATION": ["10.0.0.1:11211", "10.0.0.2:11211"],   # or "h1:p1;h2:p2"
            "OPTIONS": {"mode": "libmemcached", "timeout": 0.25},  # any fae.Client keyword
        }
    }

It behaves like Django's ``PyMemcacheCache`` (same ``BaseMemcachedCache`` contract): timeouts
``None`` (never expire), ``0`` and negative (expire at once), over 30 days (sent as a unix
time); ``get_or_set`` (with stampede protection: leases, see ``fae.Client.get_or_set``), ``touch``, ``incr``/``decr`` raising ``ValueError`` on a missing key,
``clear`` (``flush_all``), and ``InvalidCacheKey`` for keys memcached cannot take. Values use
``serde="pymemcache"`` by default, the layout ``PyMemcacheCache`` writes, so its entries read
back; coming from ``PyLibMCCache``, set ``OPTIONS = {"serde": "pylibmc"}``. Keys land where the
old backend put them with ``"mode": "pymemcache"`` (PyMemcacheCache's HashClient) or the default
``"libmemcached"`` (PyLibMCCache with ``ketama_weighted``).

``close()``, which Django calls at the end of every request, keeps the connections: libfae's pool
is per process, thread-safe and fork-aware, so reconnecting per request would only add latency
(Django's ``PyLibMCCache`` does the same for libmemcached).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.memcached import BaseMemcachedCache

import fae


class FaeCache(BaseMemcachedCache):
    """A Django cache backend on one process-wide ``fae.Client``."""

    def __init__(self, server: Any, params: Dict[str, Any]) -> None:
        super().__init__(server, params, library=fae, value_not_found_exception=KeyError)
        self._class = fae.Client
        self._options = {"serde": "pymemcache", **(params.get("OPTIONS") or {})}

    @property
    def client_servers(self) -> List[str]:
        return [s.strip() for s in self._servers if s.strip()]

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: Optional[int] = None,
    ) -> Any:
        """Django's ``get_or_set`` with stampede protection: a missing key's ``default`` (called
        if callable) is computed once across every thread and process sharing the servers; the
        others get its value (``fae.Client.get_or_set``: memcached leases)."""
        key = self.make_and_validate_key(key, version=version)
        compute = default if callable(default) else (lambda: default)
        return self._cache.get_or_set(key, compute, expire=self.get_backend_timeout(timeout))

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        try:
            stored = self._cache.set(key, value, self.get_backend_timeout(timeout))
        except fae.ClientError as e:
            if e.reason != "value_too_large":
                raise
            stored = False
        if not stored:
            # Like Django's memcached backends: a value that cannot be stored (over the 1 MB
            # item limit) must not leave the old value behind.
            self._cache.delete(key)

    def set_many(
        self, data: Dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> List[Any]:
        safe: Dict[str, Any] = {}
        original: Dict[str, Any] = {}
        for key, value in data.items():
            k = self.make_and_validate_key(key, version=version)
            safe[k] = value
            original[k] = key
        exptime = self.get_backend_timeout(timeout)
        try:
            # set_multi: the name Django's memcached backends call (and tests patch).
            failed = self._cache.set_multi(safe, exptime)
        except fae.ClientError as e:
            if e.reason != "value_too_large":
                raise
            # One value is too large: store the others one by one and report it.
            failed = []
            for k, v in safe.items():
                try:
                    if not self._cache.set(k, v, exptime):
                        failed.append(k)
                except fae.ClientError as e2:
                    if e2.reason != "value_too_large":
                        raise
                    self._cache.delete(k)
                    failed.append(k)
        return [original[k] for k in failed]

    def touch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Optional[int] = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(self._cache.touch(key, self.get_backend_timeout(timeout)))

    def delete_many(self, keys: Iterable[Any], version: Optional[int] = None) -> None:
        keys = [self.make_and_validate_key(key, version=version) for key in keys]
        if keys:
            self._cache.delete_many(keys)

    def close(self, **kwargs: Any) -> None:
        # Keep the pooled connections (see the module docstring).
        pass
