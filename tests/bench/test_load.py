"""The share of the machine other work used while a cell ran (``pan_runtime.bench.load``):
CPU time of the whole machine, less the run's own processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pan_runtime.bench.load import OthersShare, loadavg
from pan_runtime.bench.syscalls import children

#: a process that keeps one CPU busy for a while (it ends by itself; the test also ends it)
BURN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def _shares(pid: int) -> tuple[float | None, float | None]:
    """Other work's share over 1.5 s counted without ``pid`` as the run's, then with it."""
    mine, others = OthersShare(lambda: [pid]), OthersShare()
    mine.start()
    others.start()
    time.sleep(1.5)
    return others.stop(), mine.stop()


def test_a_busy_process_counts_as_other_work_unless_it_is_the_runs_own():
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        with_it, without_it = _shares(burner.pid)
    finally:
        burner.kill()
        burner.wait()
    assert with_it is not None and without_it is not None
    assert 0.0 <= without_it < with_it <= 1.0  # the burner's CPU time is the difference
    assert len(loadavg() or []) == 3


def test_the_children_of_the_runs_processes_are_the_runs_own():
    # a middle's workers are its children: one polling a CPU of its own is the run's work
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN!r}])"])
    try:
        end = time.monotonic() + 30
        while not children(parent.pid) and time.monotonic() < end:
            time.sleep(0.05)
        assert children(parent.pid)
        with_it, without_it = _shares(parent.pid)
    finally:
        for c in children(parent.pid):
            os.kill(c, signal.SIGKILL)
        parent.kill()
        parent.wait()
    assert with_it is not None and without_it is not None
    assert 0.0 <= without_it and without_it + 0.05 < with_it <= 1.0  # the burning child's CPU time is the difference
