"""The epoch ticker (``pan_wasm.limits``): it parks while no wasm code runs, and every budget
still holds: loops are stopped in a call that wakes it, in a store made while it was parked,
and after a host call long enough for it to park in the middle of the call."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from wasm_helpers import make_env, wat_code

from pan_runtime.errors import BudgetExceeded
from pan_runtime.node.env import Budget
from pan_wasm.runtime import WasmRuntime

LOOP_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (loop $spin (br $spin))
    i32.const 0))
"""

#: pan_fast_run_fn, called with the GIL held as the fast path does
RUN = ctypes.PYFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)

SLOW_HOST_THEN_LOOP_WAT = """
(module
  (import "pan_pni_1" "node_now_ns" (func $now (result i64)))
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (drop (call $now))
    (loop $spin (br $spin))
    i32.const 0))
"""


@pytest.fixture
def ticking() -> Iterator[WasmRuntime]:
    rt = WasmRuntime({"epoch_tick_ms": 1.0})
    yield rt
    rt.close()


def _wait_parked(rt: WasmRuntime) -> int:
    ticker = rt.ticker
    assert ticker is not None
    deadline = time.monotonic() + 30  # a hang guard only
    while not (ticker.sleeping and ticker.parks):
        assert time.monotonic() < deadline, "the epoch ticker never parked while no code ran"
        time.sleep(0.01)
    return ticker.parks


def _run(loaded: Any, host: Any, budget: Budget) -> int:
    """One accept; a hang guard wakes the ticker after 30 s (and the test fails) if nothing
    else did, so a broken wake-up fails the test instead of hanging it."""
    ticker = loaded._rt.ticker
    rescued: list[bool] = []

    def rescue() -> None:
        rescued.append(True)
        for _ in range(1000):
            ticker.wake()
            time.sleep(0.001)

    guard = threading.Timer(30.0, rescue)
    guard.start()
    env = make_env(loaded.code, bytes(16), budget)
    host.current = env
    try:
        return int(loaded.accept(env))
    finally:
        guard.cancel()
        env.clear()
        assert not rescued, "the call ran on with the ticker parked: only the hang guard woke it"


def test_the_ticker_parks_while_no_code_runs_and_loops_are_still_stopped(ticking: WasmRuntime, host: Any) -> None:
    loop = ticking.load(wat_code(LOOP_WAT), [], host)
    for _ in range(3):
        parks = _wait_parked(ticking)
        with pytest.raises(BudgetExceeded) as err:  # the call's first epoch check wakes the ticker
            _run(loop, host, Budget(time_ms=10.0))
        assert err.value.reason == "budget"
        loop.reset()
        assert _wait_parked(ticking) > parks  # and it parks again once nothing runs


def test_a_store_made_while_the_ticker_is_parked_is_still_stopped(ticking: WasmRuntime, host: Any) -> None:
    ticking.load(wat_code(LOOP_WAT, meta={"label": "first"}), [], host)  # starts the ticker
    _wait_parked(ticking)
    loop = ticking.load(wat_code(LOOP_WAT, meta={"label": "second"}), [], host)
    with pytest.raises(BudgetExceeded):
        _run(loop, host, Budget(time_ms=10.0))


def test_a_loop_after_a_host_call_the_ticker_parked_in_is_still_stopped(ticking: WasmRuntime, host: Any) -> None:
    def slow_now() -> int:
        time.sleep(0.1)  # 100 ticks: the ticker parks while the call is in here
        return 0

    host.node_now_ns = slow_now  # type: ignore[method-assign]
    loaded = ticking.load(wat_code(SLOW_HOST_THEN_LOOP_WAT), [], host)
    parks = _wait_parked(ticking)
    with pytest.raises(BudgetExceeded) as err:
        _run(loaded, host, Budget(time_ms=10.0))
    assert err.value.reason == "budget"
    assert ticking.ticker is not None and ticking.ticker.parks > parks  # it did park mid-call


def test_a_fast_run_wakes_the_parked_ticker_and_is_stopped(ticking: WasmRuntime, host: Any) -> None:
    """The C entry of the UDP fast path (``pan_wasm._fast``) calls wasm without Python: its
    first epoch check is what wakes the ticker."""
    loop = ticking.load(wat_code(LOOP_WAT), [], host)
    entry = loop.fast_entry()
    assert entry is not None, "pan_wasm._fast is not built"
    fn, state = entry
    body = (ctypes.c_uint8 * 16)()
    ctx = (ctypes.c_uint8 * 40)()  # a pan_fast_ctx
    _wait_parked(ticking)
    ticker = ticking.ticker
    assert ticker is not None
    rescued: list[bool] = []

    def rescue() -> None:
        rescued.append(True)
        for _ in range(1000):
            ticker.wake()
            time.sleep(0.001)

    guard = threading.Timer(30.0, rescue)  # a hang guard only
    guard.start()
    try:
        RUN(fn)(state, ctypes.addressof(body), len(body), ctypes.addressof(ctx))
    finally:
        guard.cancel()
    assert not rescued, "the fast run ran on with the ticker parked"
    with pytest.raises(BudgetExceeded):
        loop.after_fast_run()


class _EngineThatStopsBeforePark:
    """Stands in for the engine: on the idle tick after which the ticker parks, it waits until
    ``stop`` has run its wake-up, so the stop lands between the tick and the park."""

    def __init__(self) -> None:
        self.calls = 0
        self.ticker: Any = None

    def increment_epoch(self) -> None:
        self.calls += 1
        if self.calls == self.ticker.IDLE_TICKS:
            while not self.ticker._awake.is_set():
                time.sleep(0.001)


def test_stop_just_before_the_ticker_parks_ends_the_ticker() -> None:
    from pan_wasm.limits import EpochTicker

    engine = _EngineThatStopsBeforePark()
    ticker = EpochTicker(engine, 0.1)  # type: ignore[arg-type]
    engine.ticker = ticker
    ticker.start()
    while engine.calls < ticker.IDLE_TICKS:
        time.sleep(0.001)
    stopper = threading.Thread(target=ticker.stop, daemon=True)
    stopper.start()
    stopper.join(60)  # a hang guard only: a stop that is not seen never returns
    assert not stopper.is_alive(), "the ticker parked after stop() and never ended"
    assert not ticker.running and ticker.parks == 0
