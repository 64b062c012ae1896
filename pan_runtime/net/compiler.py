"""Load jobs run in child processes, so compiling hostile code never holds up the node.

A runtime's ``prepare`` returns a ``LoadJob`` (compile a wasm module, check a jar); the
``Compiler`` runs each in a fresh ``python -m pan_runtime.net.compilechild`` process that
dies with the node (``lifetime``), under the node's ``compile_*`` limits: its address space
is capped (``RLIMIT_AS``), it runs at a lower priority, and it is killed when its time is up.
At most ``compile_jobs`` run at once; the others wait in submission order.

Nothing here blocks: the job goes to the child in files (never through a pipe the node could
stall on), memory files (``memfd``) the two processes share by descriptor, so that nothing of
a job outlives them, even a node killed outright; ``poll`` reaps finished children without waiting, and the result is handed to the
job's ``done`` callback as bytes or as a ``CodeObjectError`` whose ``reason`` says why
(``compile_timeout``, ``compile_memory``, ``compile_failed``, or the child's own refusal).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.net.lifetime import child_env
from pan_runtime.plugin.loadjob import LoadJob
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = ["Compiler", "Outcome", "EXIT_REFUSED", "EXIT_MEMORY", "read_file"]

log = logging.getLogger("pan.compiler")

#: exit statuses of the child besides 0 (result written)
EXIT_REFUSED = 3  # the output holds {"reason", "message"} as JSON
EXIT_MEMORY = 4  # the job raised MemoryError


def read_file(fd: int, start: int = 0) -> bytes:
    """What memory file ``fd`` holds from ``start`` to its end (a read may return less than asked)."""
    end = os.fstat(fd).st_size
    parts = []
    while start < end:
        chunk = os.pread(fd, end - start, start)
        if not chunk:
            break
        parts.append(chunk)
        start += len(chunk)
    return b"".join(parts)
#: how often a driver should poll while jobs run
POLL_NS = 5_000_000
#: what engines print when an allocation fails and they abort
_OOM_MARKERS = (b"memory allocation of", b"out of memory", b"MemoryError", b"Cannot allocate memory")

#: a job's result: the bytes for the runtime's ``adopt``, or why there are none
Outcome = bytes | CodeObjectError


@dataclass
class _Job:
    key: bytes
    job: LoadJob
    done: Callable[[Outcome], None]
    label: str
    proc: subprocess.Popen[bytes] | None = None
    #: its memory files, as made: the spec, the payload, the child's output (the result, or
    #: its refusal), the child's stderr
    files: list[int] = field(default_factory=list)
    deadline_ns: int = 0
    killed: bool = False


class Compiler:
    """Runs ``LoadJob``s in child processes, ``limits.compile_jobs`` at once, each bounded."""

    def __init__(self, limits: LoadLimits, clock: Callable[[], int] = time.monotonic_ns):
        self.limits = limits
        self.clock = clock
        self._waiting: deque[_Job] = deque()
        self._running: dict[bytes, _Job] = {}
        self._closed = False
        self.counters: dict[str, int] = {
            "started": 0,
            "compiled": 0,
            "refused": 0,
            "timeouts": 0,
            "out_of_memory": 0,
            "failed": 0,
            "cancelled": 0,
        }

    # ------------------------------------------------------------------ submitting
    def submit(self, key: bytes, job: LoadJob, done: Callable[[Outcome], None], label: str = "") -> None:
        """Run ``job`` when a slot is free; ``done`` gets its outcome from a later ``poll``.
        One job per ``key`` (a code object name): a second submission replaces nothing."""
        if self._closed:
            raise CodeObjectError("the compiler is closed", FaultReason.COMPILE_FAILED)
        if key in self._running or any(j.key == key for j in self._waiting):
            return
        self._waiting.append(_Job(key, job, done, label or key.hex()[:12]))
        self._start_waiting()

    def cancel(self, key: bytes) -> bool:
        """Forget ``key``'s job (killing its child); its ``done`` is not called."""
        for j in self._waiting:
            if j.key == key:
                self._waiting.remove(j)
                self.counters["cancelled"] += 1
                return True
        j = self._running.pop(key, None)
        if j is None:
            return False
        self._kill(j)
        self._cleanup(j)
        self.counters["cancelled"] += 1
        return True

    def pending(self, key: bytes) -> bool:
        return key in self._running or any(j.key == key for j in self._waiting)

    @property
    def busy(self) -> bool:
        """Whether jobs run or wait."""
        return bool(self._running or self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------------ progress
    def poll(self) -> int | None:
        """Finish what has finished, stop what ran out of time, start what waits; returns the
        time (``clock`` ns) to poll again, or None when no job runs or waits."""
        now = self.clock()
        for j in list(self._running.values()):
            assert j.proc is not None
            rc = j.proc.poll()
            if rc is None:
                if now >= j.deadline_ns:
                    self._kill(j)
                    self._finish(j, CodeObjectError(
                        f"{j.label}: compiling took longer than limits.compile_time_ms = "
                        f"{self.limits.compile_time_ms}; the compiler was stopped",
                        FaultReason.COMPILE_TIMEOUT,
                    ))
                continue
            self._finish(j, self._outcome(j, rc))
        self._start_waiting()
        if not self._running:
            return None
        return min(now + POLL_NS, min(j.deadline_ns for j in self._running.values()))

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.limits.compile_jobs:
            j = self._waiting.popleft()
            try:
                self._start(j)
            except OSError as exc:
                self._cleanup(j)
                log.error("cannot start a compiler process for %s: %s", j.label, exc)
                self.counters["failed"] += 1
                j.done(CodeObjectError(f"{j.label}: cannot start a compiler process: {exc}", FaultReason.COMPILE_FAILED))
                continue
            self._running[j.key] = j

    def _start(self, j: _Job) -> None:
        limits = self.limits
        spec = {
            "target": j.job.target,
            "settings": dict(j.job.settings),
            "memory": limits.compile_memory,
            # a backstop for a child whose parent cannot kill it in time: CPU seconds
            "cpu_s": math.ceil(limits.compile_time_ms / 1000) + 1,
        }
        for name, data in (("job", json.dumps(spec).encode()), ("payload", j.job.payload), ("out", b""), ("stderr", b"")):
            j.files.append(os.memfd_create(f"pan-load-{name}", os.MFD_CLOEXEC))
            with open(j.files[-1], "wb", closefd=False) as f:
                f.write(data)
        given = j.files[:3]
        j.proc = subprocess.Popen(
            [sys.executable, "-m", "pan_runtime.net.compilechild", *map(str, given)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=j.files[3],
            env=child_env(),
            close_fds=True,
            pass_fds=given,
        )
        j.deadline_ns = self.clock() + limits.compile_time_ms * 1_000_000
        self.counters["started"] += 1

    def _outcome(self, j: _Job, rc: int) -> Outcome:
        out_fd, err_fd = j.files[2], j.files[3]
        label = j.label
        if rc == 0:
            try:
                data = read_file(out_fd)
            except OSError as exc:
                self.counters["failed"] += 1
                return CodeObjectError(f"{label}: the compiler left no result: {exc}", FaultReason.COMPILE_FAILED)
            self.counters["compiled"] += 1
            return data
        if rc == EXIT_REFUSED:
            self.counters["refused"] += 1
            try:
                why = json.loads(read_file(out_fd))
                reason = why.get("reason")
                return CodeObjectError(str(why["message"]), FaultReason(reason) if reason else None)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return CodeObjectError(f"{label}: refused, unreadably: {exc}", FaultReason.COMPILE_FAILED)
        tail = self._stderr_tail(err_fd)
        if rc == EXIT_MEMORY or rc in (-signal.SIGXFSZ,) or (rc < 0 and any(m in tail for m in _OOM_MARKERS)):
            self.counters["out_of_memory"] += 1
            return CodeObjectError(
                f"{label}: compiling needed more than limits.compile_memory = {self.limits.compile_memory} bytes",
                FaultReason.COMPILE_MEMORY,
            )
        if rc == -signal.SIGXCPU:
            self.counters["timeouts"] += 1
            return CodeObjectError(
                f"{label}: compiling used more CPU time than limits.compile_time_ms allows",
                FaultReason.COMPILE_TIMEOUT,
            )
        self.counters["failed"] += 1
        what = f"signal {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.Signals._value2member_map_ else f"status {rc}"
        text = tail.decode("utf-8", "replace").strip().splitlines()
        log.warning("compiler for %s ended with %s: %s", label, what, text[-1] if text else "no output")
        return CodeObjectError(f"{label}: the compiler ended with {what}", FaultReason.COMPILE_FAILED)

    @staticmethod
    def _stderr_tail(fd: int, size: int = 4096) -> bytes:
        try:
            return read_file(fd, max(0, os.fstat(fd).st_size - size))
        except OSError:
            return b""

    def _finish(self, j: _Job, outcome: Outcome) -> None:
        self._running.pop(j.key, None)
        if isinstance(outcome, CodeObjectError) and outcome.reason is FaultReason.COMPILE_TIMEOUT and j.killed:
            self.counters["timeouts"] += 1
        self._cleanup(j)
        j.done(outcome)

    def _kill(self, j: _Job) -> None:
        proc = j.proc
        if proc is None:
            return
        j.killed = True
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(5)  # SIGKILL: the kernel ends it at once; this only reaps it
        except subprocess.TimeoutExpired:
            log.error("compiler process %d for %s did not die", proc.pid, j.label)

    @staticmethod
    def _cleanup(j: _Job) -> None:
        while j.files:
            os.close(j.files.pop())

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Kill every child and forget every job (their ``done`` is not called)."""
        self._closed = True
        self.counters["cancelled"] += len(self._waiting) + len(self._running)
        self._waiting.clear()
        for j in list(self._running.values()):
            self._kill(j)
            self._cleanup(j)
        self._running.clear()

    def info(self) -> dict[str, int]:
        return {**self.counters, "running": len(self._running), "waiting": len(self._waiting)}
