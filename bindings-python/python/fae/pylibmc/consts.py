"""pylibmc's constants: ``hashers``, ``distributions`` (name ⇄ number), the behavior names and
the exception classes (also set on the package, as pylibmc does)."""

from __future__ import annotations

import sys

from . import _pylibmc

errors = tuple(e for (_, e) in _pylibmc.exceptions)

_pkg = sys.modules[__name__.rsplit(".", 1)[0]]
for _name, _exc in _pylibmc.exceptions:
    setattr(sys.modules[__name__], _name, _exc)
    setattr(_pkg, _name, _exc)

all_behaviors = _pylibmc.all_behaviors
all_callbacks = _pylibmc.all_callbacks

hashers, hashers_rvs = {}, {}
distributions, distributions_rvs = {}, {}
for _name in dir(_pylibmc):
    if _name.startswith("hash_"):
        hashers[_name[5:]] = getattr(_pylibmc, _name)
        hashers_rvs[getattr(_pylibmc, _name)] = _name[5:]
    elif _name.startswith("distribution_"):
        _key = _name[13:].replace("_", " ")
        distributions[_key] = getattr(_pylibmc, _name)
        distributions_rvs[getattr(_pylibmc, _name)] = _key


class BehaviorDict(dict):
    """The ``behaviors`` dict: assigning an item sets that behavior on the client."""

    def __init__(self, client, *args, **kwds):
        super().__init__(*args, **kwds)
        self.client = client

    def __setitem__(self, name, value):
        super().__setitem__(name, value)
        self.client.set_behaviors({name: value})

    def update(self, d):
        super().update(d)
        self.client.set_behaviors(d.copy())
