"""Demoting a worker whose batch runs long, and restoring it when the batch ends.

A code object looping until its budget stops it holds a CPU for the whole budget; on a machine
with fewer CPUs than busy workers its worker competes with the node and with other code
objects' workers, and at the scheduler's normal priority it delays them by a time slice or more
each time. Starting every worker at a low priority would cost honest code on a busy machine (a
worker's budget is wall time), so the node demotes only a worker whose current batch has run
longer than ``NodeConfig.worker_demote_ms``, and restores it when the batch's verdicts come back.

Demoted means ``SCHED_IDLE`` for every thread of the worker: the scheduler runs it only when
nothing else on its CPU wants to run, and a waking thread of any normal process preempts it at
once. Niceness 19 is weaker (a nice-19 thread still gets a share of the CPU and is not
preempted at once) and is per thread as well: a JVM's or wasmtime's threads started before the
demotion keep their own, so every thread in ``/proc/PID/task`` is set. Threads a demoted worker
starts inherit the policy; restoring lists the threads again until no new one turns up.

Restoring needs the node to be allowed to raise a thread's priority again: ``CAP_SYS_NICE``, or
an ``RLIMIT_NICE`` that allows the workers' niceness (the worker inherits the node's; e.g.
``LimitNICE=20`` in a systemd unit). Without either the node does not demote (``restorable``
says why). The worker cannot undo a demotion itself: its seccomp filter allows neither
``setpriority`` nor ``sched_setscheduler`` (``pan_runtime.isolation.confine``).
"""

from __future__ import annotations

import os
import resource

__all__ = ["open_clock", "read_clock", "demote", "restore", "restorable", "threads", "demoted"]

#: CAP_SYS_NICE's bit in a capability set (linux/capability.h)
_CAP_SYS_NICE = 23
#: how many times ``restore`` lists a worker's threads again for ones started meanwhile
_PASSES = 4


def restorable(nice: int) -> str | None:
    """None when this process may restore a demoted worker to niceness ``nice``, else why not."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    if int(line.split()[1], 16) >> _CAP_SYS_NICE & 1:
                        return None
                    break
    except (OSError, ValueError):
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or soft >= 20 - nice:
        return None
    return (f"the node has no CAP_SYS_NICE and its RLIMIT_NICE is {soft} (below {20 - nice}): "
            "it could lower a worker's priority but not restore it")


def open_clock(pid: int) -> int:
    """A descriptor on the CPU time of process ``pid``'s main thread, the one that runs its
    code (``read_clock``); the runtime's own threads (a JVM's compiler and collector) are not
    counted. A per-thread CPU clock of another process is not readable, its schedstat is."""
    return os.open(f"/proc/{pid}/task/{pid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)


def read_clock(fd: int) -> int | None:
    """The ns of CPU time behind ``open_clock``'s descriptor; None once the thread has ended."""
    try:
        return int(os.pread(fd, 64, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def threads(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (empty when it has ended)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return []


def _own() -> set[int]:
    """This process's threads: never touched, whatever a reused thread id would say."""
    return set(threads(os.getpid()))


def demote(pid: int) -> int:
    """Put every thread of worker ``pid`` at ``SCHED_IDLE``; returns how many were set.
    ``pid`` must be an unreaped child (its id cannot have been reused)."""
    own = _own()
    done = 0
    idle = os.sched_param(0)
    for tid in threads(pid):
        if tid in own:
            continue
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, idle)
            done += 1
        except ProcessLookupError:  # the thread has just ended
            continue
    return done


def restore(pid: int) -> int:
    """Put every thread of worker ``pid`` back at the normal policy (its niceness was never
    changed); returns how many were set. Raises ``PermissionError`` when not allowed."""
    own = _own()
    seen: set[int] = set()
    normal = os.sched_param(0)
    for _ in range(_PASSES):
        fresh = [t for t in threads(pid) if t not in seen and t not in own]
        if not fresh:
            break
        for tid in fresh:
            seen.add(tid)
            try:
                if os.sched_getscheduler(tid) != os.SCHED_OTHER:
                    os.sched_setscheduler(tid, os.SCHED_OTHER, normal)
            except ProcessLookupError:
                continue
    return len(seen)


def demoted(pid: int) -> list[int]:
    """The threads of ``pid`` not at the normal policy (for tests and ``pan stats``)."""
    out = []
    for tid in threads(pid):
        try:
            if os.sched_getscheduler(tid) != os.SCHED_OTHER:
                out.append(tid)
        except ProcessLookupError:
            continue
    return out
