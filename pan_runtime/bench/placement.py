"""``--placement``: which CPUs the sender, middle and receiver run on.

On two cores, ``onecpu`` (everything on one CPU) gives the steadiest figures: no process ever
waits for a wake-up on another core. ``hosts`` gives the middle node a CPU of its own and
the ends the other one, which stands in for wires but is noisier; ``free`` leaves it to the
scheduler.
"""

from __future__ import annotations

import functools
import os

__all__ = ["ROLES", "cpus_for", "cpu_apart", "middle_thread_cpus", "taskset_prefix", "pin_self"]

ROLES = ("harness", "sender", "middle", "receiver")


def cpus_for(placement: str, role: str) -> set[int] | None:
    """The CPUs ``role`` is pinned to under ``placement`` (None: not pinned)."""
    if placement == "free":
        return None
    allowed = _machine_cpus()
    if placement == "onecpu" or len(allowed) < 2:
        return {allowed[0]}
    return {allowed[1]} if role == "middle" else {allowed[0]}


@functools.cache
def _machine_cpus() -> list[int]:
    """The CPUs this process could use when placement was first asked for: read once, because
    ``pin_self`` narrows the harness to the ends' CPU and every later answer must not see that."""
    return sorted(os.sched_getaffinity(0))


def cpu_apart(placement: str) -> int | None:
    """A CPU the middle is not pinned to under ``placement``, one the ends are not pinned to
    either where there is one (for workers that poll: ``--worker-poll-us``); None when the
    middle is not pinned or no other CPU is allowed."""
    middle = cpus_for(placement, "middle")
    if middle is None:
        return None
    ends = cpus_for(placement, "sender") or set()
    rest = [c for c in _machine_cpus() if c not in middle]
    free = [c for c in rest if c not in ends]
    return (free or rest or [None])[0]


def middle_thread_cpus(placement: str) -> list[int]:
    """The CPUs ``--pin-threads`` gives the middle's fast-path threads in turn
    (``limits.thread_cpus``): the middle's under ``placement``, the machine's when it is free."""
    return sorted(cpus_for(placement, "middle") or _machine_cpus())


def taskset_prefix(placement: str, role: str) -> list[str]:
    """``taskset -c N`` for a command, so the process is pinned before it starts any thread."""
    cpus = cpus_for(placement, role)
    if cpus is None:
        return []
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cpus))]


def pin_self(placement: str, role: str = "harness") -> set[int]:
    """Pin this process; returns the affinity it had, to restore with ``os.sched_setaffinity``."""
    before = os.sched_getaffinity(0)
    cpus = cpus_for(placement, role)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    return before
