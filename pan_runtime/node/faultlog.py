"""Warnings of faults in code objects: the code's label and the fault's message in the log,
rate-limited so faulting code cannot flood it.

A fault is counted as a drop either way (``node.count_fault``); this adds a WARNING line a
user sees without turning on debug logging. Per code object, the first fault is logged at
once and then at most one per ``interval_ns``, the line naming how many went unlogged in
between. Across all code objects at most ``burst`` lines are written per interval, since
code from the network can come as many code objects. Messages are written by the code (an
exception's text), so they are cut to ``MAX_MESSAGE`` characters with control characters
escaped: one fault is one log line.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import RuntimeFault

__all__ = ["FaultLog", "MAX_MESSAGE", "printable"]

#: longest fault message written to the log, in characters
MAX_MESSAGE = 300


def printable(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line: control characters escaped, at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[: limit + 1])
    return out if len(out) <= limit else out[: limit - 1] + "…"


@dataclass
class _Seen:
    next_ns: int
    unlogged: int = 0


class FaultLog:
    """Rate-limited WARNING lines for faults of code objects (one instance per node)."""

    def __init__(
        self,
        logger: logging.Logger,
        clock: Callable[[], int],
        *,
        interval_ns: int = 10_000_000_000,
        burst: int = 20,
        tracked: int = 4096,
    ):
        self.log = logger
        self.clock = clock
        self.interval_ns = interval_ns
        self.burst = burst
        self.tracked = tracked
        #: code name -> when its next fault may be logged, and faults not logged since
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()
        self._window_start = 0
        self._window_lines = 0
        #: faults not logged (for a code object's rate or the burst across code objects)
        self.unlogged = 0

    def note(self, node: str, code: CodeObject, runtime: str, fault: RuntimeFault) -> bool:
        """Log ``fault`` of ``code`` if its rate allows; True if a line was written."""
        if not self.log.isEnabledFor(logging.WARNING):
            return False
        now = self.clock()
        seen = self._seen.get(code.name)
        if seen is not None and now < seen.next_ns:
            seen.unlogged += 1
            self.unlogged += 1
            return False
        if now - self._window_start >= self.interval_ns:
            self._window_start, self._window_lines = now, 0
        if self._window_lines >= self.burst:
            if seen is not None:
                seen.unlogged += 1
            self.unlogged += 1
            return False
        self._window_lines += 1
        more = seen.unlogged if seen is not None else 0
        if seen is None:
            seen = self._seen[code.name] = _Seen(0)
            if len(self._seen) > self.tracked:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(code.name)
        seen.next_ns = now + self.interval_ns
        seen.unlogged = 0
        self.log.warning(
            "%s: code %s (%s) faulted [%s]: %s%s",
            node,
            code.short_name,
            runtime,
            fault.reason.value,
            printable(str(fault)),
            f" ({more} more faults of it since the last warning)" if more else "",
        )
        return True
