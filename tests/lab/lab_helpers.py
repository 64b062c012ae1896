"""What the lab tests on network namespaces and on Mininet share: running ``pan`` and
``pan lab up`` as real processes, and telling a live process from a gone one."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAN = [sys.executable, "-m", "pan_runtime.cli.main"]
#: hang guard: many nodes start at once on a shared 2-core machine
GUARD = 300.0


def start(cmd: list[str], env: dict[str, str], name: str) -> subprocess.Popen[str]:
    """Start ``pan lab up`` and return once it says lab ``name`` is up."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert p.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
            line = p.stdout.readline()
            if not line:
                break
            if line.startswith(f"lab {name} up:"):
                return p
    p.kill()
    raise AssertionError(f"pan lab up did not come up: {p.communicate(timeout=60)[1][-2000:]}")


def pan(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PAN, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=GUARD)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
