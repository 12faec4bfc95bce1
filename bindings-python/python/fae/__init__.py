"""libfae for Python: a memcached client with a router inside.

``fae.Client`` speaks pymemcache's and pylibmc's method names, places keys like the client you
are leaving (``mode=``), reads and writes their value layouts (``serde=``), releases the GIL for
all I/O, is safe to share between threads and survives ``fork()``. The core's events (breaker
transitions, reloads, discovery) are logged to ``logging.getLogger("fae")``. See
``bindings-python/README.md`` for the full API, serde layouts, Django and migration notes.

    >>> import fae
    >>> mc = fae.Client(["127.0.0.1:11211"])
    >>> mc.set("user:1", {"name": "alice"}, expire=300)
    True
    >>> mc.get("user:1")
    {'name': 'alice'}
"""

from __future__ import annotations

import atexit as _atexit
import os as _os

from . import _fae
from ._errors import (
    AuthenticationError,
    ClientError,
    ConnectionError,
    Error,
    NoServerAvailable,
    ServerError,
    TimeoutError,
)
from ._fae import Client, Lease

__version__: str = _fae.version()

__all__ = [
    "Client",
    "Lease",
    "Error",
    "ClientError",
    "ServerError",
    "TimeoutError",
    "ConnectionError",
    "NoServerAvailable",
    "AuthenticationError",
    "__version__",
]

# gunicorn, uwsgi and Celery prefork workers fork after importing fae. The core marks a new
# process generation in the child (pthread_atfork) so no inherited socket is ever shared with
# the parent; this hook keeps that handler installed in children for their own forks.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_fae._after_fork_in_child)

# The core's log records go to logging.getLogger("fae") (installed when _fae was imported).
# Once the interpreter starts shutting down no record is handed over any more, so no
# background thread tries to take the GIL while it finalizes. atexit runs this before
# logging's own shutdown handler (registered earlier, run later).
_atexit.register(_fae._logging_shutdown)
