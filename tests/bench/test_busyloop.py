"""The busy loop that keeps the polling workers' CPU occupied for the in-process cells
(``pan_runtime.bench.busyloop``): on its CPU while the block runs, gone after it."""

from __future__ import annotations

import os
import time

import pytest

from pan_runtime.bench.busyloop import busy_cpu
from pan_runtime.bench.syscalls import cpu_seconds
from pan_runtime.errors import PanError


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_loop_runs_on_its_cpu_while_the_block_runs_and_ends_with_it():
    cpu = sorted(os.sched_getaffinity(0))[-1]
    with busy_cpu(cpu) as loop:
        assert loop is not None and _alive(loop.pid) and loop.cpu == cpu
        assert os.sched_getaffinity(loop.pid) == {cpu}
        end = time.monotonic() + 60
        while (cpu_seconds(loop.pid) or 0.0) < 0.02 and time.monotonic() < end:  # it spins: its CPU time grows
            time.sleep(0.05)
    assert not _alive(loop.pid)
    assert loop.cpu_s > 0


def test_no_cpu_starts_nothing():
    with busy_cpu(None) as loop:
        assert loop is None


def test_a_loop_that_cannot_take_its_cpu_is_an_error():
    with pytest.raises(PanError, match="the busy loop on CPU 100000 did not start"):
        with busy_cpu(100000):
            pass
