"""``fae.pylibmc.client``: pylibmc's ``Client`` (server specs, behaviors by name, the mapping
interface, ``clone``) on ``fae.pylibmc._pylibmc.client``."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

from . import _pylibmc
from .consts import BehaviorDict, all_behaviors, all_callbacks, distributions, distributions_rvs, hashers, hashers_rvs

_all_behaviors_set = set(all_behaviors) | set(all_callbacks)
server_type_map = {"tcp": _pylibmc.server_type_tcp, "udp": _pylibmc.server_type_udp,
                   "unix": _pylibmc.server_type_unix}
_MISS = object()


def _split_spec_type(spec: str):
    if spec.startswith("/"):
        return "unix", spec
    if spec.startswith("udp:"):
        return "udp", spec[4:]
    return "tcp", spec


def _unpack_addr(spec: str, port: Any = None, weight: Any = 1):
    if spec.startswith("["):
        if "]" not in spec:
            raise ValueError(spec)
        if spec.endswith("]"):
            addr = spec[1:-1]
        else:
            addr, port = spec[1:].rsplit("]:", 1)
    elif ":" in spec:
        addr, port = spec.split(":", 1)
    else:
        addr = spec
    if isinstance(port, str) and ":" in port:
        port, weight = port.split(":", 1)
    return addr, port, weight


def translate_server_spec(server: str, port: int = 11211, weight: int = 1):
    """``"host[:port[:weight]]"``, ``"[v6]:port"``, ``"udp:…"`` or a socket path →
    ``(type, address, port, weight)``, as pylibmc."""
    scheme, spec = _split_spec_type(server)
    stype = server_type_map[scheme]
    if scheme == "unix":
        addr, port = spec, 0
    else:
        addr, port, weight = _unpack_addr(spec, port=port, weight=weight)
    return stype, str(addr), int(port), int(weight)


def translate_server_specs(servers: Iterable[Any]):
    return [s if isinstance(s, tuple) and len(s) == 3 else translate_server_spec(s) for s in servers]


def _behaviors_symbolic(behaviors: Dict[str, Any]) -> Dict[str, Any]:
    behaviors = behaviors.copy()
    behaviors["hash"] = hashers_rvs[behaviors["hash"]]
    behaviors["distribution"] = distributions_rvs[behaviors["distribution"]]
    return behaviors


def _behaviors_numeric(behaviors: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not behaviors:
        return behaviors
    behaviors = behaviors.copy()
    if "_retry_timeout" in behaviors:
        behaviors.setdefault("retry_timeout", behaviors.pop("_retry_timeout"))
    unknown = set(behaviors).difference(_all_behaviors_set)
    if unknown:
        raise ValueError("unknown behavior names: %s" % ", ".join(map(str, sorted(unknown))))
    if behaviors.get("hash") is not None:
        behaviors["hash"] = hashers[behaviors["hash"]]
    if behaviors.get("ketama_hash") in hashers:
        behaviors["ketama_hash"] = hashers[behaviors["ketama_hash"]]
    if behaviors.get("distribution") is not None:
        behaviors["distribution"] = distributions[behaviors["distribution"]]
    behaviors.pop("namespace", None)
    return behaviors


class Client(_pylibmc.client):
    """pylibmc's ``Client(servers, behaviors=None, binary=False, username=None,
    password=None)`` on libfae. Thread-safe (one libfae client, pooled connections), so the
    pools below are optional."""

    def __init__(self, servers: Iterable[Any], behaviors: Optional[Dict[str, Any]] = None,
                 binary: bool = False, username: Any = None, password: Any = None) -> None:
        self.binary = binary
        self.addresses = list(servers)
        super().__init__(servers=translate_server_specs(self.addresses), binary=binary,
                         username=username, password=password,
                         behaviors=_behaviors_numeric(behaviors))

    def __repr__(self) -> str:
        return "%s(%r, binary=%r)" % (type(self).__name__, self.addresses, self.binary)

    def __str__(self) -> str:
        return "<%s for %s, binary=%r>" % (type(self).__name__, ", ".join(map(str, self.addresses)), self.binary)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISS)
        if value is _MISS:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self.set(key, value):
            raise KeyError("failed setting %r" % (key,))

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISS) is not _MISS

    def get_behaviors(self) -> BehaviorDict:
        return BehaviorDict(self, _behaviors_symbolic(super().get_behaviors()))

    def set_behaviors(self, behaviors: Dict[str, Any]) -> None:
        return super().set_behaviors(_behaviors_numeric(behaviors))

    behaviors = property(get_behaviors, set_behaviors)

    @property
    def behaviours(self):
        raise AttributeError("nobody uses british spellings")

    def clone(self) -> "Client":
        obj = super().clone()
        obj.addresses = list(self.addresses)
        obj.binary = self.binary
        return obj
