"""The C entry the node's UDP fast path calls (``pan_wasm._fast``), driven directly: a failure
of the host's own bookkeeping around the code is the host's error, never the code's fault."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from pan_runtime.node.pni import VERDICT_FORWARD
from pan_runtime.plugin.runtime import as_fault
from pan_runtime.pni_api import BAD_ARGUMENT
from pan_wasm.code import WasmCode

#: pan_fast_run_fn, called with the GIL held as the fast path does
RUN = ctypes.PYFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
CTX_SIZE = 40  # sizeof(pan_fast_ctx)


class TickBumpFailed(Exception):
    pass


class BrokenTicks:
    """A tick budget whose ``seq`` cannot be bumped (the host's bookkeeping fails)."""

    @property
    def seq(self) -> int:
        return 0

    @seq.setter
    def seq(self, value: int) -> None:
        raise TickBumpFailed("seq is read-only here")


def _fast_run(loaded: WasmCode) -> Any:
    entry = loaded.fast_entry()
    assert entry is not None, "pan_wasm._fast is not built"
    fn, state = entry
    body = (ctypes.c_uint8 * 64)()
    ctx = (ctypes.c_uint8 * CTX_SIZE)()
    return lambda: RUN(fn)(state, ctypes.addressof(body), len(body), ctypes.addressof(ctx))


def test_a_failed_tick_bump_is_the_hosts_error_not_the_codes_drop(forward: WasmCode) -> None:
    run = _fast_run(forward)
    assert run() == VERDICT_FORWARD
    forward.after_fast_run()
    broken = BrokenTicks()
    forward._fast.bind(forward._accept, broken, 0)
    try:
        assert run() == BAD_ARGUMENT  # the code did not run
        with pytest.raises(TickBumpFailed) as err:
            forward.after_fast_run()
    finally:
        forward._fast.bind(forward._accept, forward._ticks, 0)
    fault = as_fault(err.value, "wasm", forward.code.short_name)
    assert fault.reason == "runtime_error"  # counted against the host, not as a trap or budget
    assert not forward.needs_reset
    forward.after_fast_run()  # the error was taken once: nothing left to report
    assert run() == VERDICT_FORWARD
    forward.after_fast_run()
