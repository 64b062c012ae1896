"""Helpers shared by the ``pan bench`` tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, tmp: Path, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    """``pan bench ARGS`` in a fresh interpreter, with TMPDIR inside the test's directory."""
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "pan_runtime.cli.main", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def bench_namespaces() -> list[str]:
    from pan_runtime.bench.testbed import NS_PREFIX

    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(NS_PREFIX)]
