"""pylibmc's ``ClientPool`` and ``ThreadMappedPool``. A ``fae.pylibmc.Client`` is thread-safe
already (one libfae client with pooled connections), so these only keep pylibmc code running:
``clone()`` shares the libfae client."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from queue import Queue


class ClientPool(Queue):
    """A queue of clones of a client; ``reserve()`` lends one out."""

    def __init__(self, mc=None, n_slots=0):
        Queue.__init__(self, n_slots)
        if mc and n_slots:
            self.fill(mc, n_slots)

    @contextmanager
    def reserve(self, block=False):
        mc = self.get(block)
        try:
            yield mc
        finally:
            self.put(mc)

    def fill(self, mc, n_slots):
        for _ in range(n_slots):
            self.put(mc.clone())


class ThreadMappedPool(dict):
    """One clone of ``master`` per thread; call ``relinquish()`` before a thread exits."""

    def __new__(cls, master):
        return super().__new__(cls)

    def __init__(self, master):
        self.master = master

    @property
    def current_key(self):
        return threading.current_thread().ident

    @contextmanager
    def reserve(self):
        key = self.current_key
        mc = self.pop(key, None)
        if mc is None:
            mc = self.master.clone()
        try:
            yield mc
        finally:
            self[key] = mc

    def relinquish(self):
        return self.pop(self.current_key, None)
