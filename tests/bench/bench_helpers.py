"""Helpers shared by the ``pan bench`` tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pan_runtime.bench.results import Result
from pan_runtime.bench.runner import Outcome, derive

ROOT = Path(__file__).resolve().parents[2]


class BenchRun(subprocess.CompletedProcess[str]):
    """A finished ``pan bench`` run and the pid it ran as (its namespaces carry the pid)."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str, pid: int):
        super().__init__(args, returncode, stdout, stderr)
        self.pid = pid


#: a safety net against a hung run, not a performance limit: a busy machine may be slow
RUN_LIMIT_S = 600.0


def run_bench(*args: str, tmp: Path, timeout: float = RUN_LIMIT_S, env: dict[str, str] | None = None,
              pass_fds: tuple[int, ...] = ()) -> BenchRun:
    """``pan bench ARGS`` in a fresh interpreter, with TMPDIR inside the test's directory
    (``env``: more variables; ``pass_fds``: descriptors it inherits)."""
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT), **(env or {}))
    cmd = [sys.executable, "-m", "pan_runtime.cli.main", "bench", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                          pass_fds=pass_fds) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()  # the run cleans up on SIGTERM; its nodes die with it in any case
            out, err = p.communicate(timeout=60)
            raise AssertionError(f"pan bench {' '.join(args)} made no end in {timeout:.0f} s:\n{err[-2000:]}") from None
        return BenchRun(cmd, p.returncode, out, err, p.pid)


def bench_namespaces(pid: int | None = None) -> list[str]:
    """Network namespaces of bench runs: those of run ``pid``, or of any run (other test
    sessions on the machine may have theirs, so tests name their own run where they can)."""
    from pan_runtime.bench.testbed import NS_PREFIX

    prefix = NS_PREFIX if pid is None else f"{NS_PREFIX}{pid}-"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(prefix)]


def rows_of(cells: dict[tuple[str, str, str, str, int, str], tuple[float, float, float]]) -> list[Result]:
    out = []
    for (exp, topo, config, rt, size, metric), (med, lo, hi) in cells.items():
        for stat, v in (("median", med), ("trial_min", lo), ("trial_max", hi)):
            out.append(Result(exp, topo, config, rt, size, metric, stat, v))
    return out


def loaded_run() -> list[Result]:
    """Round trips as a loaded machine measured them: the direct link (none) had a bad trial,
    so active and cforw look faster than it, and passive is within noise of zero."""
    out = Outcome()
    out.results = rows_of({
        ("ping", "netns", "none", "jvm", 1500, "rtt_us"): (1500.0, 300.0, 2900.0),
        ("ping", "netns", "passive", "jvm", 1500, "rtt_us"): (1490.0, 290.0, 2950.0),
        ("ping", "netns", "cforw", "jvm", 1500, "rtt_us"): (400.0, 380.0, 420.0),
        ("ping", "netns", "active", "jvm", 1500, "rtt_us"): (612.0, 600.0, 650.0),
        ("ping", "netns", "none", "native", 1500, "rtt_us"): (200.0, 198.0, 202.0),
        ("ping", "netns", "passive", "native", 1500, "rtt_us"): (240.0, 238.0, 242.0),
        ("ping", "netns", "active", "native", 1500, "rtt_us"): (300.0, 296.0, 304.0),
        ("flood", "netns", "none", "native", 1500, "capsules_per_s"): (10_000.0, 9_500.0, 10_400.0),
        ("flood", "netns", "active", "native", 1500, "capsules_per_s"): (9_900.0, 9_400.0, 10_200.0),
        ("flood", "netns", "cforw", "native", 1500, "capsules_per_s"): (14_000.0, 13_800.0, 14_300.0),
    })
    out.results.append(Result("ping", "netns", "active", "native", 1500, "others_cpu", "median", 0.6))
    derive(out)
    return out.results


def capacity_run() -> list[Result]:
    """A capacity run on netns at two sizes: the baselines (runtime ``-``) and two pan middles."""
    cells = {}
    for size, scale in ((128, 1.1), (1500, 1.0)):
        for config, rt, kpps, cpu, calls in (("passive", "-", 130.0, None, None), ("cbatch", "-", 84.0, 5.8, 0.03),
                                             ("cforw", "-", 33.0, 14.0, 2.0), ("active", "native", 69.0, 7.5, 2.0),
                                             ("active", "wasm", 41.0, 12.0, 2.0)):
            cells[("capacity", "netns", config, rt, size, "capacity_kpps")] = (kpps * scale, kpps * scale * 0.9, kpps * scale * 1.05)
            cells[("capacity", "netns", config, rt, size, "mbit_per_s")] = (kpps * scale * size * 8 / 1000,) * 3
            cells[("capacity", "netns", config, rt, size, "loss_pct")] = (0.02, 0.0, 0.05)
            if cpu is not None:
                cells[("capacity", "netns", config, rt, size, "cpu_us_per_capsule")] = (cpu, cpu * 0.9, cpu * 1.1)
                cells[("capacity", "netns", config, rt, size, "syscalls_per_capsule")] = (calls, calls, calls)
    return rows_of(cells)
