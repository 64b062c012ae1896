"""Telling a node's process-isolation workers apart from its other children (shared by the
isolation tests in tests/ and tests/network/)."""

from __future__ import annotations

import os

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
