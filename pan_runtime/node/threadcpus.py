"""Fast-path threads on CPUs of their own: ``limits.thread_cpus`` (set by ``pan_runtime.net``).

With several fast-path threads (``limits.threads``) the kernel's scheduler decides where each
runs, and it can put them on one CPU: a thread that sleeps on the node's lock is woken on the
CPU of the thread that freed it, and both then take turns there in 4 ms slices while the other
CPU idles (seen in a scheduler trace of a two-thread drain on a two-vCPU machine, for tens of
ms at a time). ``thread_cpus`` ties each thread to one CPU instead: thread I (the event loop's
thread is 0) runs on ``thread_cpus[I % len(thread_cpus)]``, set by the thread itself when it
starts. Processes the node starts afterwards (workers) get the CPUs the process had before
(``free_cpus``), not the one of the thread that started them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from pan_runtime.errors import ConfigError

__all__ = ["check", "pin", "free_cpus"]

log = logging.getLogger("pan.threadcpus")

_lock = threading.Lock()
#: the CPUs the process could run on before its first thread was pinned (None: none was)
_before: frozenset[int] | None = None


def free_cpus() -> frozenset[int] | None:
    """The CPUs this process could run on before a fast-path thread was pinned (None: no
    thread was; a process started now inherits the CPUs of the thread that starts it)."""
    return _before


def _allowed() -> set[int]:
    return set(_before) if _before is not None else os.sched_getaffinity(0)


def check(cpus: Sequence[int]) -> None:
    """``ConfigError`` unless every CPU of ``cpus`` is one this process may run on."""
    allowed = _allowed()
    bad = sorted(set(cpus) - allowed)
    if bad:
        raise ConfigError(
            f"limits.thread_cpus names CPU {', '.join(map(str, bad))}, which this node may not run on "
            f"(its CPUs: {', '.join(map(str, sorted(allowed)))}); name those, or leave thread_cpus empty"
        )


def pin(index: int, cpus: Sequence[int]) -> int | None:
    """Put the calling thread, fast-path thread ``index``, on its CPU of ``cpus``; returns that
    CPU (None: ``cpus`` is empty and the thread stays where it was). ``ConfigError`` when the
    kernel refuses it (the CPU went offline, or a cgroup took it since ``check``)."""
    global _before
    if not cpus:
        return None
    cpu = cpus[index % len(cpus)]
    with _lock:
        if _before is None:
            _before = frozenset(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(threading.get_native_id(), {cpu})
    except OSError as exc:
        raise ConfigError(f"cannot put fast-path thread {index} on CPU {cpu} (limits.thread_cpus): {exc}") from exc
    log.debug("fast-path thread %d on CPU %d", index, cpu)
    return cpu
