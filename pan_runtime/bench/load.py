"""How busy the machine was with other work while a cell of a run was measured.

The load average counts the run's own processes (sender, middle, receiver, harness) as well,
so it cannot tell a busy machine from a busy run. ``OthersShare`` reads instead the CPU time
the whole machine spent (``/proc/stat``, the hypervisor's steal included) and subtracts what
the run's own processes spent (``/proc/<pid>/stat``, their children included: a middle's
workers, which may poll a CPU of their own): what is left is the share of the
machine's CPUs other work used during the cell. Cells where it is high are flagged as noisy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .syscalls import children

__all__ = ["BUSY_SHARE", "OthersShare", "loadavg"]

#: a cell during which other work used more than this share of the machine's CPUs is flagged
BUSY_SHARE = 0.25


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _machine() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every CPU since boot, or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _process(pid: int) -> int:
    """Clock ticks ``pid`` and its reaped children used (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime


class OthersShare:
    """The share of the machine's CPU time (0..1) that processes other than the run's own
    used between ``start()`` and ``stop()``; ``pids`` names the run's other processes, whose
    children (a middle's workers) are the run's too."""

    def __init__(self, pids: Callable[[], Iterable[int]] = tuple):
        self.pids = pids
        self._start: tuple[int, int, int] | None = None

    def _ours(self) -> int:
        pids = set(self.pids())
        return sum(_process(p) for p in {os.getpid(), *pids, *(c for p in pids for c in children(p))})

    def start(self) -> None:
        m = _machine()
        self._start = (*m, self._ours()) if m else None

    def stop(self) -> float | None:
        m, s = _machine(), self._start
        if m is None or s is None:
            return None
        busy, total = m[0] - s[0], m[1] - s[1]
        if total <= 0:
            return None
        others = busy - (self._ours() - s[2])
        return min(1.0, max(0.0, others / total))
