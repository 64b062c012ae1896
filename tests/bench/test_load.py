"""The share of the machine other work used while a cell ran (``pan_runtime.bench.load``):
CPU time of the whole machine, less the run's own processes."""

from __future__ import annotations

import subprocess
import sys
import time

from pan_runtime.bench.load import OthersShare, loadavg

#: a process that keeps one CPU busy for a while (it ends by itself; the test also ends it)
BURN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def test_a_busy_process_counts_as_other_work_unless_it_is_the_runs_own():
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        mine, others = OthersShare(lambda: [burner.pid]), OthersShare()
        mine.start()
        others.start()
        time.sleep(1.5)
        with_it, without_it = others.stop(), mine.stop()
    finally:
        burner.kill()
        burner.wait()
    assert with_it is not None and without_it is not None
    assert 0.0 <= without_it < with_it <= 1.0  # the burner's CPU time is the difference
    assert len(loadavg() or []) == 3
