"""The Python side of the Java PNI: a JPype proxy that forwards to the node's ``PniHost``.

Java code reaches it only for calls the Java ``HostPni`` cannot serve from the direct body
buffer (sends, state, other segments, ...), about 2 µs per call. The proxy class is built
once from ``pni_spec`` so a new call in the spec needs no change here: for each call it
unpacks the Java arguments (arrays with offset and length for byte ranges, 16/32-byte
arrays for addresses and names), calls ``host.<call>`` and copies outputs back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pan_runtime.net.fastpath import materialize
from pan_runtime.node.pni import OUT_OF_RANGE, PniHost
from pni_spec import load_spec

__all__ = ["java_name", "upcall_class"]

_FIXED = {"addr_in": 16, "addr_out": 16, "name_out": 32}
_CLASS: Any = None


def java_name(call: str) -> str:
    """The Java method name of a spec call: ``seg_get_u8`` -> ``segGetU8``."""
    first, *rest = call.split("_")
    return first + "".join(p[:1].upper() + p[1:] for p in rest)


def _span(arr: Any, off: int, n: int) -> bool:
    return arr is not None and off >= 0 and n >= 0 and off + n <= len(arr)


def _forwarder(call_name: str, types: Sequence[str]) -> Callable[..., int]:
    """A proxy method for one call; argument handling is decided here, once."""
    plan: list[tuple[str, int]] = []  # (kind, how many Java arguments it takes)
    for t in types:
        if t in ("bytes_in", "bytes_out"):
            plan.append((t, 3))
        else:
            plan.append((t, 1))

    def method(self: Any, *jargs: Any) -> int:
        host = self.host
        if host.current is None:  # the node's fast path is running this capsule
            materialize()
        args: list[Any] = []
        outs: list[tuple[Any, int, bytearray]] = []
        i = 0
        for kind, width in plan:
            if width == 3:
                arr, off, n = jargs[i], int(jargs[i + 1]), int(jargs[i + 2])
                if not _span(arr, off, n):
                    return OUT_OF_RANGE
                if kind == "bytes_in":
                    args.append(memoryview(arr).cast("B")[off : off + n])
                else:
                    buf = bytearray(n)
                    outs.append((arr, off, buf))
                    args.append(memoryview(buf))
            elif kind in _FIXED:
                arr = jargs[i]
                size = _FIXED[kind]
                if not _span(arr, 0, size):
                    return OUT_OF_RANGE
                if kind == "addr_in":
                    args.append(memoryview(arr).cast("B")[:size])
                else:
                    buf = bytearray(size)
                    outs.append((arr, 0, buf))
                    args.append(memoryview(buf))
            else:
                args.append(int(jargs[i]))
            i += width
        result = getattr(host, call_name)(*args)
        for arr, off, buf in outs:
            arr[off : off + len(buf)] = bytes(buf)
        return result

    method.__name__ = java_name(call_name)
    return method


def upcall_class(upcalls_interface: Any) -> type:
    """The proxy class implementing ``org.pan.jvm.Upcalls`` (built once per process)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from jpype import JImplements, JOverride

    ns: dict[str, Any] = {}

    def __init__(self: Any, host: PniHost) -> None:
        self.host = host
        self.envs: Sequence[Any] = ()

    def select(self: Any, index: int) -> None:
        self.host.current = self.envs[index]

    ns["__init__"] = __init__
    ns["select"] = JOverride(select)
    for call in load_spec().calls:
        ns[java_name(call.name)] = JOverride(_forwarder(call.name, [p.type for p in call.params]))
    _CLASS = JImplements(upcalls_interface)(type("PniUpcalls", (), ns))
    return _CLASS
