"""Host calls: one ctypes callback per PNI call that native code uses, from the generated ``pni_marshal``.

Each callback turns C arguments into the host's Python arguments (pointer + length into a
memoryview over the code's memory, without copying), sets ``host.current`` when a batch is
running, calls ``host.<call>`` and returns its int (during a run of the node's fast path,
the host builds the capsule's environment itself when a call needs it). Nothing raises into C: an exception is
recorded on the owner and becomes a ``RuntimeFault`` once control is back in Python, while
the code sees ``PNI_BAD_ARGUMENT``.

Memoryviews are slices of one read-write memoryview spanning the user address space
(``ADDRESS_SPACE``): a slice costs ~0.1 µs, a ``(c_char * n).from_address`` ~0.35 µs.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

from pan_native.pni_marshal import CALLBACK_TYPES, FACTORIES

__all__ = ["ADDRESS_SPACE", "CALLS", "FaultSink", "make_callback"]

_from_memory = ctypes.pythonapi.PyMemoryView_FromMemory
_from_memory.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_from_memory.restype = ctypes.py_object
_PyBUF_WRITE = 0x200
#: the user half of the x86-64 address space as one writable memoryview (slice it, never copy it)
ADDRESS_SPACE: memoryview = _from_memory(0, 1 << 47, _PyBUF_WRITE)
#: the names of the PNI calls native code may import (as ``pni_<call>``)
CALLS = frozenset(FACTORIES)


class FaultSink(Protocol):
    """What a callback reports to: the batch in progress and where exceptions go."""

    _batch: Any  # the sequence of environments of a running batch, else None
    _batch_index: ctypes.c_int32  # index of the capsule the batch is running

    def _fault(self, exc: BaseException, call: str) -> int: ...


def make_callback(call: str, host: Any, sink: FaultSink) -> Any:
    """A ctypes callback for ``pni_<call>`` that calls ``host.<call>``; keep it alive while used."""
    method = getattr(host, call)
    return CALLBACK_TYPES[call](FACTORIES[call](ADDRESS_SPACE, host, sink, method))
