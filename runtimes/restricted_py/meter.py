"""The step meter: a per-call budget that restricted code counts down and cannot escape.

Instrumented code keeps one global in its module dict: ``_left_``, the steps left in the
current chunk. Every loop iteration and every entry into a function that can call
decrements it inline; when it goes negative the code calls ``_stop_`` (``Meter.stop``),
which either draws the next chunk of steps or halts the call. Once per chunk the meter also
asks the call's account (``account.py``) whether the call used up its time budget (CPU
time) or had an allocation refused, and counts the code's frames on the stack: recursion
spends a step per level, so code never nests more than ``chunk`` frames past ``max_depth``,
and no per-call depth bookkeeping is needed. A call that uses up its time in the middle of
a chunk has its ``_left_`` set to -1 by the account's ticker, so the next step comes here.

A halt raises ``Halt``, a ``BaseException`` subclass that code cannot name, and leaves
``_left_`` hugely negative. Every ``except`` handler and ``finally`` block of the code starts
with ``if _left_ < 0: _stop_()``, so a handler that catches the halt (``except:``,
``except BaseException``) re-raises it before any of its own statements run, and so does
every later tick: once halted, the call stays halted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["Halt", "Late", "Meter", "MEMORY", "TIME", "HELD"]

_HALTED_LEFT = -(1 << 62)
#: flags of a call's account (``_account.c``): an allocation refused, the time budget used
#: up, the code object holding more than its limit after the call
MEMORY = 1
TIME = 2
HELD = 4


class Halt(BaseException):
    """Ends a call of restricted code; ``reason`` is ``budget`` or ``guard``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Late(Halt):
    """Raised by the account's ticker in late code that runs no step (straight-line code)."""

    def __init__(self) -> None:
        super().__init__("budget", "time budget spent")


def _no_account() -> int:
    return 0


class Meter:
    """Step, time and depth accounting for one loaded code object."""

    __slots__ = (
        "g",
        "steps",
        "chunk",
        "chunk0",
        "extra0",
        "extra",
        "time_ns",
        "memory",
        "check",
        "max_depth",
        "reason",
        "detail",
        "budget",
        "filename",
        "sentinels",
    )

    def __init__(self, g: dict[str, Any], max_depth: int, chunk: int, filename: str):
        self.g = g
        self.filename = filename
        #: code objects of the runtime frames that call into the code: the depth walk stops there
        self.sentinels: set[Any] = set()
        self.max_depth = max_depth
        self.chunk = chunk
        self.budget: Any = None
        self.reason = ""
        self.detail = ""
        #: the call's account flags so far (``Account.check``)
        self.check: Callable[[], int] = _no_account
        self.memory = 0
        g["_left_"] = 0
        g["_stop_"] = self.stop
        self.configure(200_000, 50.0)

    def configure(self, steps: int, time_ms: float | None, memory: int = 0) -> None:
        """Set the per-call step budget and time budget (None or <= 0: no time limit) and the
        per-call memory limit; the last two are for messages, the account enforces them."""
        self.memory = memory
        steps = max(int(steps), 1)
        self.steps = steps
        self.chunk0 = min(steps, self.chunk)
        self.extra0 = steps - self.chunk0
        self.extra = self.extra0
        self.time_ns = int(time_ms * 1e6) if time_ms and time_ms > 0 else 0

    def arm(self) -> None:
        """Give the next call its full budget (the runtime inlines this on the hot path)."""
        self.g["_left_"] = self.chunk0
        self.extra = self.extra0

    @property
    def halted(self) -> bool:
        return self.extra < 0

    def used(self) -> int:
        """Steps the last call used (all of them if it was halted for the budget)."""
        if self.extra < 0:
            return self.steps
        return self.steps - self.extra - max(self.g["_left_"], 0)

    def stop(self) -> bool:
        """Called by code when ``_left_`` ran out or ``_depth_`` is too deep (``_stop_``)."""
        g = self.g
        extra = self.extra
        if extra < 0:
            raise Halt(self.reason, self.detail)
        if self.depth() > self.max_depth:
            self.halt("guard", f"recursion deeper than {self.max_depth} calls")
        flags = self.check()
        if flags:
            self.over(flags)
        left = g["_left_"]
        if left >= 0:
            return True
        if extra == 0:
            self.halt("budget", f"step budget of {self.steps} steps spent")
        n = extra if extra < self.chunk else self.chunk
        self.extra = extra - n
        g["_left_"] = left + n
        return True

    def over(self, flags: int) -> NoReturn:
        """Halt for what the account reported: a refused allocation or the time used up."""
        if flags & MEMORY:
            self.halt("memory", f"memory budget of {self.memory} bytes per call spent")
        self.halt("budget", f"time budget of {self.time_ns / 1e6:g} ms spent")

    def charge(self, n: int) -> None:
        """Spend N steps at once (bulk work in a builtin), halting if the budget runs out."""
        g = self.g
        left = g["_left_"] - n
        g["_left_"] = left
        while left < 0:
            self.stop()
            left = g["_left_"]

    def depth(self) -> int:
        """How many frames of the code are on the stack above the runtime's call into it."""
        n = 0
        filename, sentinels = self.filename, self.sentinels
        f = sys._getframe(1)
        while f is not None and f.f_code not in sentinels:
            if f.f_code.co_filename == filename:
                n += 1
            f = f.f_back
        return n

    def halt(self, reason: str, detail: str) -> NoReturn:
        """Halt the running call for good; later ticks and handlers re-raise."""
        if self.extra >= 0:
            self.reason = reason
            self.detail = detail
            self.extra = -1
        self.g["_left_"] = _HALTED_LEFT
        raise Halt(self.reason, self.detail)
