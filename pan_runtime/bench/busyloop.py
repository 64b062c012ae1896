"""A busy loop on one CPU: the control for workers that poll (``--busy-worker-cpu``).

On a two-vCPU virtual machine a busy second vCPU changes the first one's costs: a plain busy
loop on CPU 1 alone raised the in-process ``native`` middle's added latency on CPU 0 from a
median of 14 µs to 23 µs (ping on ``udp`` at 1500 B; the other runtimes' did not move). Process cells whose workers poll keep that
CPU busy; with this control the in-process cells run beside a loop on the same CPU, so the
two mechanisms are compared on the same machine and the difference is the crossing's.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from pan_runtime.errors import PanError
from pan_runtime.net.lifetime import child_env

from .syscalls import cpu_seconds

__all__ = ["BusyLoop", "busy_cpu"]

#: the loop: tied to the harness's life, on its CPU, spinning until stopped
_LOOP = ("import os, sys\n"
         "from pan_runtime.net.lifetime import die_with_parent\n"
         "die_with_parent()\n"
         "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
         "print('ready', flush=True)\n"
         "while True:\n"
         "    pass\n")
#: how long the loop may take to end once told to
_STOP_S = 10.0


@dataclass
class BusyLoop:
    """A loop that ran: its process, its CPU, and the CPU time it took (seconds, once it ended)."""

    pid: int
    cpu: int
    cpu_s: float = 0.0


@contextlib.contextmanager
def busy_cpu(cpu: int | None) -> Iterator[BusyLoop | None]:
    """Keep ``cpu`` busy with a child process while the block runs (None and nothing started
    when ``cpu`` is None); the loop's CPU time is read as it ends. Raises ``PanError`` when the
    loop cannot start on ``cpu`` or does not end."""
    if cpu is None:
        yield None
        return
    loop: BusyLoop | None = None
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(cpu)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    try:
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":  # on its CPU, or it ended: a closed pipe
            proc.wait()
            raise PanError(f"the busy loop on CPU {cpu} did not start (exit {proc.returncode}): "
                           f"{proc.stderr.read().decode(errors='replace')[-300:] if proc.stderr else ''}")
        loop = BusyLoop(proc.pid, cpu)
        yield loop
    finally:
        if proc.returncode is None:
            if loop is not None:
                loop.cpu_s = cpu_seconds(proc.pid) or 0.0
            proc.terminate()
        try:
            _, err = proc.communicate(timeout=_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise PanError(f"the busy loop on CPU {cpu} did not end within {_STOP_S:.0f} s of SIGTERM; killed") from None
    if proc.returncode not in (0, -15):
        raise PanError(f"the busy loop on CPU {cpu} failed (exit {proc.returncode}): {err.decode(errors='replace')[-300:]}")
