"""The PNI as WebAssembly imports: signatures and host callbacks from the generated ``pni_marshal``.

Each spec call becomes an import ``pan_pni_1.<call>``. Parameter mapping: ``handle``/
``u32``/``i32`` → i32; ``i64``/``u64``/``link`` → i64; ``bytes_in``/``bytes_out`` → two
i32 (pointer, length); ``addr_in``/``addr_out``/``name_out`` → one i32 pointer to 16 or
32 bytes. Results are i32 or i64 as the spec says.

A callback is generated per call (``pni_spec/gen_wasm.py``) as straight-line Python (no
loop over parameter kinds at run time): it reads the raw argument slots, checks every (pointer, length) against the
instance's linear memory — a range outside it returns ``OUT_OF_RANGE`` to the code
without reaching the host — passes memoryviews of linear memory to ``host.<call>`` and
writes the result back. (During a run of the node's UDP fast path the host builds the
capsule's environment itself when a call needs it.)
Nothing a guest passes can make a callback raise; a host method
that raises (a host bug) becomes a trap recorded on the calling code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pan_runtime.pni_api import OUT_OF_RANGE
from pan_wasm import fastcall
from pan_wasm.pni_marshal import FACTORIES, SIGNATURES, SLOT

__all__ = ["wasm_signature", "CallbackState", "make_callback"]

if SLOT != fastcall.SLOT:  # the generated callbacks index the raw value array with this stride
    raise ImportError(f"pan_wasm.pni_marshal was generated for SLOT={SLOT}, fastcall uses {fastcall.SLOT}")


def wasm_signature(call: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(param types, result types) of the import for ``call``, as "i32"/"i64" strings."""
    return SIGNATURES[call]


class CallbackState(Protocol):
    """What a generated callback needs from the code object it serves."""

    #: the environments of a running batch, or None outside a batch
    batch_envs: Any

    def sync_batch(self) -> None:
        """Point ``host.current`` at the capsule the batch loop is on."""

    def host_failed(self, call: str, exc: BaseException) -> int:
        """Record a host exception; returns the trap pointer for the callback to return."""


def make_callback(
    call: str, method: Callable[..., int], mem: Any, state: CallbackState
) -> Callable[[int, int, Any, int], int]:
    """The raw callback for ``call``: ``callback(env, caller, slots, n) -> 0 | trap``.

    ``mem`` is a ``fastcall.LinearMemory`` (rebound in place when the instance is reset).
    """
    host = getattr(method, "__self__", None)
    if not hasattr(host, "current"):
        host = _NO_FAST_PATH
    return FACTORIES[call](method, mem, state, OUT_OF_RANGE, host)


class _NoFastPath:
    """Stands in for a host that is not a node's (a method that is not bound to one)."""

    current = False


_NO_FAST_PATH = _NoFastPath()
