"""Execution budgets for wasm code: epoch ticks (default) or fuel.

Epoch mode: one daemon thread per engine advances the engine's epoch every
``epoch_tick_ms``; each store's deadline is one tick ahead and a deadline callback decides,
once per tick at most, whether the call running now has used up its time. The per-call
cost is one Python integer increment — no FFI call, no message to another thread. Wasm
runs with the GIL released (ctypes), so the ticker keeps ticking while code spins.

An idle node costs no CPU: after ``IDLE_TICKS`` ticks in which no deadline callback ran (no
wasm code ran across a tick), the ticker advances the epoch once more and parks. From then
on every store is past its deadline, so the first epoch check of any wasm code that runs —
a new call, or one coming back from a long host call — calls its deadline callback, which
wakes the ticker (``TickBudget.on_deadline``). No call path pays for this: the C fast entry
and the Python one stay as they are, and a new store wakes the ticker when it is made.

Fuel mode: the store's fuel is set before every call (one extra FFI call per capsule) and
counts instructions exactly; use it when runs must be deterministic rather than timed.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import wasmtime

__all__ = ["EpochTicker", "TickBudget", "MODES"]

MODES = ("epoch", "fuel")


class EpochTicker:
    """A daemon thread calling ``engine.increment_epoch()`` every ``period_ms`` while wasm
    code runs, parked while none does (see the module docstring)."""

    #: ticks without a deadline callback before the ticker parks
    IDLE_TICKS = 8

    def __init__(self, engine: wasmtime.Engine, period_ms: float):
        self._engine = engine
        self._period = period_ms / 1000.0
        self._stop = threading.Event()
        self._awake = threading.Event()
        self._thread: threading.Thread | None = None
        #: the ticker is parked (or about to park) until ``wake``
        self.sleeping = False
        #: a deadline callback ran since the ticker last looked
        self.busy = False
        #: times the ticker parked (for tests and statistics)
        self.parks = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pan-wasm-epoch", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Let a parked ticker tick again (a deadline callback, a new store)."""
        self.sleeping = False
        self._awake.set()

    def _run(self) -> None:
        engine, period, stop, awake = self._engine, self._period, self._stop, self._awake
        idle = 0
        while not stop.wait(period):
            engine.increment_epoch()
            if self.busy:
                self.busy = False
                idle = 0
                continue
            idle += 1
            if idle < self.IDLE_TICKS:
                continue
            awake.clear()
            self.sleeping = True
            engine.increment_epoch()  # every store is now past its deadline: the next check wakes us
            engine.increment_epoch()
            # a callback that ran since the ticker last looked: not idle after all; ``stop`` sets
            # the stop flag before the wake-up, so one that came before the clear above is seen here
            if self.busy or stop.is_set():
                self.sleeping = False
            else:
                self.parks += 1
                awake.wait()
            self.sleeping = False
            self.busy = False
            idle = 0

    def stop(self) -> None:
        self._stop.set()  # before the wake-up: a ticker about to park looks at it after clearing ``_awake``
        self._awake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None


class TickBudget:
    """Counts the ticks one call has seen; the deadline callback's state for one store.

    ``seq`` is bumped before every call into the instance. A tick seen under a new ``seq``
    starts the count at one (it may be a tick that fell between calls), so a call is
    stopped after between ``limit`` and ``limit + 1`` tick periods of running.
    """

    __slots__ = ("seq", "limit", "stopped", "ticker", "_seen_seq", "_ticks")

    def __init__(self, limit: int = 1, ticker: EpochTicker | None = None):
        self.seq = 0
        self.limit = limit
        self.stopped = False
        #: the engine's ticker, told that wasm code runs (and woken if it parked)
        self.ticker = ticker
        self._seen_seq = -1
        self._ticks = 0

    @staticmethod
    def ticks_for(time_ms: float, tick_ms: float) -> int:
        return max(1, math.ceil(time_ms / tick_ms))

    def on_deadline(self) -> int | None:
        """1 to continue for another tick, ``None`` to stop the running call."""
        ticker = self.ticker
        if ticker is not None:
            ticker.busy = True
            if ticker.sleeping:
                ticker.wake()
        if self.seq != self._seen_seq:
            self._seen_seq = self.seq
            self._ticks = 1
        else:
            self._ticks += 1
        if self._ticks > self.limit:
            self.stopped = True
            return None
        return 1
