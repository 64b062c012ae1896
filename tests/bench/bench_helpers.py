"""Helpers shared by the ``pan bench`` tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class BenchRun(subprocess.CompletedProcess[str]):
    """A finished ``pan bench`` run and the pid it ran as (its namespaces carry the pid)."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str, pid: int):
        super().__init__(args, returncode, stdout, stderr)
        self.pid = pid


#: a safety net against a hung run, not a performance limit: a busy machine may be slow
RUN_LIMIT_S = 600.0


def run_bench(*args: str, tmp: Path, timeout: float = RUN_LIMIT_S) -> BenchRun:
    """``pan bench ARGS`` in a fresh interpreter, with TMPDIR inside the test's directory."""
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pan_runtime.cli.main", "bench", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) as p:
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
