"""Lines code objects write with ``pni_log``: rate-limited and one line each, so that code
from the network cannot flood the node's log or forge lines in it.

Per code object a bucket of ``burst`` lines refills at ``per_s`` lines a second; across all
code objects at most ``total_per_s`` lines are written a second, since code from the network
can come as many code objects. A line past either bound is not written; it is counted (per
code object and in ``suppressed``), and the code object's next line says how many of its
own went unwritten before it. The call still answers OK: a code object's log is a service
the node gives as far as its bounds allow, not something its code can rely on. A message is
the code's bytes: cut to ``MAX_TEXT`` characters, control characters escaped (a newline in it
cannot start a line that looks like the node's).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.node.faultlog import printable

__all__ = ["CodeLog", "MAX_TEXT"]

#: longest message written for a code object, in characters (after escaping)
MAX_TEXT = 1000


@dataclass
class _Bucket:
    tokens: float
    at_ns: int
    unwritten: int = 0


class CodeLog:
    """Rate-limited lines of code objects' ``pni_log`` calls (one instance per node)."""

    def __init__(
        self,
        logger: logging.Logger,
        clock: Callable[[], int],
        *,
        per_s: float = 10.0,
        burst: int = 20,
        total_per_s: int = 100,
        tracked: int = 4096,
    ):
        self.log = logger
        self.clock = clock
        self.per_s = per_s
        self.burst = burst
        self.total_per_s = total_per_s
        self.tracked = tracked
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()
        self._second_start = 0
        self._second_lines = 0
        #: lines not written, for a code object's rate or for the node's
        self.suppressed = 0

    def write(self, level: int, code: CodeObject | None, message: bytes) -> bool:
        """Write ``message`` of ``code`` at ``level`` if the bounds allow; True if written."""
        if not self.log.isEnabledFor(level):
            return False
        now = self.clock()
        key = code.name if code is not None else b""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at_ns) / 1e9 * self.per_s)
            bucket.at_ns = now
        if now - self._second_start >= 1_000_000_000:
            self._second_start, self._second_lines = now, 0
        if bucket.tokens < 1.0 or self._second_lines >= self.total_per_s:
            bucket.unwritten += 1
            self.suppressed += 1
            return False
        bucket.tokens -= 1.0
        self._second_lines += 1
        more, bucket.unwritten = bucket.unwritten, 0
        text = printable(message.decode("utf-8", "replace"), MAX_TEXT)
        self.log.log(level, "[%s] %s%s", code.short_name if code is not None else "?", text,
                     f" ({more} more lines of it were not written)" if more else "")
        return True
