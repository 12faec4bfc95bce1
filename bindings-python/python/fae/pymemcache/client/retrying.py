"""``fae.pymemcache.client.retrying``: pymemcache's ``RetryingClient`` wrapper, for any
``fae.pymemcache`` client (or any object with the same methods)."""

from __future__ import annotations

from time import sleep
from typing import Any, Tuple

__all__ = ["RetryingClient"]


def _exception_tuple(name: str, value: Any) -> Tuple[type, ...]:
    if value is None:
        return ()
    if not isinstance(value, (tuple, set, list)):
        raise ValueError("%s must be either a tuple, a set or a list." % name)
    value = tuple(value)
    if not all(isinstance(v, type) and issubclass(v, Exception) for v in value):
        raise ValueError("%s is only allowed to contain elements that are subclasses of Exception." % name)
    return value


class RetryingClient:
    """Retries a call on the wrapped client up to ``attempts`` times, sleeping
    ``retry_delay`` seconds in between, for the exceptions in ``retry_for`` (all if None)
    except those in ``do_not_retry_for``."""

    def __init__(self, client: Any, attempts: int = 2, retry_delay: float = 0,
                 retry_for: Any = None, do_not_retry_for: Any = None) -> None:
        if attempts < 1:
            raise ValueError("`attempts` argument must be at least 1. Otherwise no attempts are made.")
        self._client = client
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._retry_for = _exception_tuple("retry_for", retry_for)
        self._do_not_retry_for = _exception_tuple("do_not_retry_for", do_not_retry_for)
        for cls in self._retry_for:
            if cls in self._do_not_retry_for:
                raise ValueError(
                    'Exception class "%r" was present in both `retry_for` and `do_not_retry_for`. '
                    "Any exception class is only allowed in a single argument." % cls
                )
        self._client_dir = dir(client)

    def _retry(self, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(self._attempts):
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if (
                    attempt >= self._attempts - 1
                    or (self._retry_for and not isinstance(exc, self._retry_for))
                    or (self._do_not_retry_for and isinstance(exc, self._do_not_retry_for))
                    or name not in self._client_dir
                ):
                    raise
                sleep(self._retry_delay)

    def __getattr__(self, name: str) -> Any:
        func = getattr(self._client, name)
        return lambda *args, **kwargs: self._retry(name, func, *args, **kwargs)

    def __dir__(self) -> Any:
        return self._client_dir

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set(key, value, noreply=True)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError
        return value

    def __delitem__(self, key: Any) -> None:
        self.delete(key, noreply=True)
