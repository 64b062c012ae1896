"""The Python side of the Java PNI: a JPype proxy that forwards to the node's ``PniServer``.

Java code reaches it only for calls the Java ``PniBridge`` cannot serve from the direct body
buffer (sends, state, other segments, ...), about 2 µs per call. The proxy's methods are
generated from the spec into ``pni_marshal`` (``pni_spec/gen_jvm.py``), so a new call in the
spec needs no change here: each unpacks the Java arguments (arrays with offset and length
for byte ranges, fixed-size arrays for addresses and names), calls ``host.<call>`` and
copies outputs back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pan_jvm.pni_marshal import make_methods

if TYPE_CHECKING:
    from pan_runtime.node.pni import PniServer

__all__ = ["upcall_class"]

_CLASS: Any = None


def upcall_class(upcalls_interface: Any) -> type:
    """The proxy class implementing ``org.pan.jvm.Upcalls`` (built once per process)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from jpype import JImplements, JOverride

    ns: dict[str, Any] = {}

    def __init__(self: Any, host: PniServer) -> None:
        self.host = host
        self.envs: Sequence[Any] = ()

    def select(self: Any, index: int) -> None:
        self.host.current = self.envs[index]

    ns["__init__"] = __init__
    ns["select"] = JOverride(select)
    for name, method in make_methods().items():
        ns[name] = JOverride(method)
    _CLASS = JImplements(upcalls_interface)(type("PniUpcalls", (), ns))
    return _CLASS
