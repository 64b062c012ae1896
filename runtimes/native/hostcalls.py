"""Host calls: one ctypes callback per PNI call that native code uses, generated from the spec.

Each callback turns C arguments into the host's Python arguments (pointer + length into a
memoryview over the code's memory, without copying), sets ``host.current`` when a batch is
running (or, when the node's compiled fast path is running the capsule, has the node build
its environment first: ``pan_runtime.net.fastpath.materialize``), calls ``host.<call>`` and
returns its int. Nothing raises into C: an exception is
recorded on the owner and becomes a ``RuntimeFault`` once control is back in Python, while
the code sees ``PNI_BAD_ARGUMENT``.

Memoryviews are slices of one read-write memoryview spanning the user address space
(``ADDRESS_SPACE``): a slice costs ~0.1 µs, a ``(c_char * n).from_address`` ~0.35 µs.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, Protocol

from pan_runtime.net.fastpath import materialize
from pni_spec import load_spec
from pni_spec.spec import Call

__all__ = ["ADDRESS_SPACE", "FaultSink", "make_callback", "callback_type", "c_signature"]

_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_from_memory.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_from_memory.restype = ctypes.py_object
_PyBUF_WRITE = 0x200
#: the user half of the x86-64 address space as one writable memoryview (slice it, never copy it)
ADDRESS_SPACE: memoryview = _from_memory(0, 1 << 47, _PyBUF_WRITE)

_SCALAR = {
    "i32": ctypes.c_int32,
    "u32": ctypes.c_uint32,
    "i64": ctypes.c_int64,
    "u64": ctypes.c_uint64,
    "handle": ctypes.c_uint32,
    "link": ctypes.c_int64,
}
_FIXED = {"addr_in": 16, "addr_out": 16, "name_out": 32}
_RESULT = {"i32": ctypes.c_int32, "i64": ctypes.c_int64}


class FaultSink(Protocol):
    """What a callback reports to: the batch in progress and where exceptions go."""

    _batch: Any  # the sequence of environments of a running batch, else None
    _batch_index: ctypes.c_int32  # index of the capsule the batch is running

    def _fault(self, exc: BaseException, call: str) -> int: ...


def c_signature(call: Call) -> list[Any]:
    """ctypes argument types of ``pni_<call>``: pointers are unsigned 64-bit integers."""
    out: list[Any] = []
    for p in call.params:
        if p.type in _SCALAR:
            out.append(_SCALAR[p.type])
        elif p.type in ("bytes_in", "bytes_out"):
            out += [ctypes.c_uint64, ctypes.c_uint32]
        else:
            out.append(ctypes.c_uint64)
    return out


def callback_type(call: Call) -> Any:
    return ctypes.CFUNCTYPE(_RESULT[call.result], *c_signature(call))


def _source(call: Call) -> str:
    params: list[str] = []
    checks: list[str] = []
    args: list[str] = []
    for p in call.params:
        n = p.name
        if p.type in _SCALAR:
            params.append(n)
            args.append(n)
        elif p.type in ("bytes_in", "bytes_out"):
            params += [f"{n}_p", f"{n}_n"]
            checks.append(f"if not {n}_p and {n}_n: return OUT_OF_RANGE")
            args.append(f"M[{n}_p:{n}_p + {n}_n]")
        else:
            size = _FIXED[p.type]
            params.append(f"{n}_p")
            checks.append(f"if not {n}_p: return OUT_OF_RANGE")
            args.append(f"M[{n}_p:{n}_p + {size}]")
    body = [f"def pni_{call.name}({', '.join(params)}):"]
    body += [f"    {c}" for c in checks]
    body += [
        "    try:",
        "        if host.current is None:",
        "            materialize()",
        "        if sink._batch is not None:",
        "            host.current = sink._batch[sink._batch_index.value]",
        f"        return method({', '.join(args)})",
        "    except BaseException as exc:",
        f"        return sink._fault(exc, {call.name!r})",
    ]
    return "\n".join(body)


_OUT_OF_RANGE = load_spec().status_value("OUT_OF_RANGE")


@functools.cache
def _compiled(call: Call) -> Any:
    return compile(_source(call), f"<pni_{call.name} callback>", "exec")


def make_callback(call: Call, host: Any, sink: FaultSink) -> Any:
    """A ctypes callback for ``pni_<call>`` that calls ``host.<call>``; keep it alive while used."""
    method = getattr(host, call.name)
    scope: dict[str, Any] = {
        "M": ADDRESS_SPACE,
        "OUT_OF_RANGE": _OUT_OF_RANGE,
        "sink": sink,
        "host": host,
        "method": method,
        "materialize": materialize,
    }
    exec(_compiled(call), scope)
    return callback_type(call)(scope[f"pni_{call.name}"])
