"""Counting the system calls a process makes over an interval, and the CPU time it spends.

Sampling ``/proc/PID/syscall`` misses most calls, so the count comes from the kernel's own
tracepoint through ``perf stat -e raw_syscalls:sys_enter -p PID`` where perf works here,
else from ``strace -c -f -p PID`` (which slows the process it traces: its count is right,
the rate at which it was taken is not). Either attaches to every thread of the process.
Neither outlives its count: perf counts for a fixed time, and strace ends with the process it
traces (which dies with the harness). CPU time is the process's ``utime + stime`` from ``/proc/PID/stat`` (all its threads, in
clock ticks of ``SC_CLK_TCK``). A middle in process isolation does its code's work in worker
processes: ``with_children`` lists them (``children``), and the counts and times cover the
process and those children.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["SyscallCount", "children", "counter_method", "cpu_seconds"]

#: how long perf or strace may take to start or stop: a guard against a hang, not a measure
_GUARD_S = 60.0
_methods: dict[str, str | None] = {}


def cpu_seconds(pid: int) -> float | None:
    """CPU time ``pid`` has used (user + system, every thread), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ns(pid: int) -> int | None:
    """Nanoseconds ``pid`` has run on a CPU, every thread (``/proc/PID/task/*/schedstat``;
    finer than ``cpu_seconds``' clock ticks), or None when it is gone."""
    total, read = 0, 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            read += 1
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total if read else None  # none readable: a kernel without schedstat


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (a node's workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if fields and fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def with_children(pid: int) -> list[int]:
    """``pid`` and its children."""
    return [pid, *children(pid)]


def counter_method() -> str | None:
    """``perf`` or ``strace``: how system calls are counted here (None: neither works)."""
    if "m" not in _methods:
        method = None
        if shutil.which("perf"):
            r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,", "--", "true"],
                               capture_output=True, text=True, timeout=_GUARD_S)
            if r.returncode == 0 and "raw_syscalls:sys_enter" in r.stderr:
                method = "perf"
        if method is None and shutil.which("strace"):
            method = "strace"
        _methods["m"] = method
    return _methods["m"]


class SyscallCount:
    """System calls of ``pid`` between ``start()`` and ``stop()`` (None from ``stop`` when the
    count failed). ``seconds`` bounds the interval for perf, which counts for a fixed time."""

    def __init__(self, pid: int | list[int], seconds: float, method: str):
        self.pids = pid if isinstance(pid, list) else [pid]
        self.seconds = seconds
        self.method = method
        self._proc: subprocess.Popen[str] | None = None
        self._out: Path | None = None

    def start(self) -> None:
        if self.method == "perf":
            argv = ["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,", "-p", ",".join(map(str, self.pids)), "--",
                    "sleep", f"{self.seconds:.3f}"]
        else:
            fd, name = tempfile.mkstemp(prefix="pan-strace-")
            os.close(fd)
            self._out = Path(name)
            argv = ["strace", "-c", "-f", "-q", *(a for p in self.pids for a in ("-p", str(p))), "-o", name]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)
        time.sleep(0.3)  # attached before the traffic starts

    def stop(self) -> int | None:
        p = self._proc
        if p is None:
            return None
        try:
            if self.method == "strace":
                p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=self.seconds + _GUARD_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            return None
        finally:
            self._proc = None
        if self.method == "perf":
            return _perf_count(err)
        assert self._out is not None
        try:
            return _strace_count(self._out.read_text())
        except OSError:
            return None
        finally:
            self._out.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop a count still running (a trial that failed)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()
        self._proc = None
        if self._out is not None:
            self._out.unlink(missing_ok=True)


def _perf_count(text: str) -> int | None:
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] == "raw_syscalls:sys_enter" and fields[0].strip().isdigit():
            return int(fields[0])
    return None


def _strace_count(text: str) -> int | None:
    """The ``calls`` column of the ``total`` line of ``strace -c``."""
    col = None
    for line in text.splitlines():
        words = line.split()
        if "calls" in words and "syscall" in words:
            col = words.index("calls") - 1  # "% time" is two words in the header, one number below
        elif words and words[-1] == "total" and col is not None and len(words) > col and words[col].isdigit():
            return int(words[col])
    return None
