"""Telling a node's process-isolation workers apart from its other children, killing one and
waiting for its end, and reading its threads' scheduling policies (shared by the isolation
tests in tests/ and tests/network/)."""

from __future__ import annotations

import os
import signal
import time

from pan_runtime.isolation import priority
from pan_runtime.isolation.protocol import WORKER_MODULE


def workers_of(pid: int) -> list[int]:
    """The worker processes whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and WORKER_MODULE.encode() in cmd:
            out.append(int(entry))
    return out


def policies(pid: int) -> set[int]:
    """The scheduling policies of ``pid``'s threads (``SCHED_IDLE`` for a demoted worker)."""
    out = set()
    for tid in priority.threads(pid):
        try:
            out.add(os.sched_getscheduler(tid))
        except ProcessLookupError:
            continue
    return out


def ended(pid: int) -> bool:
    """True once ``pid`` has ended (gone, or a zombie its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def kill_and_wait(pid: int, guard_s: float = 60.0) -> None:
    """SIGKILL ``pid`` and return once it has ended (``guard_s``: a hang guard, not a deadline)."""
    os.kill(pid, signal.SIGKILL)
    guard = time.monotonic() + guard_s
    while not ended(pid):
        assert time.monotonic() < guard, f"process {pid} did not end after SIGKILL"
        time.sleep(0.01)
