"""Processes pan starts die with their starter, even one killed outright (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pan_runtime.net.lifetime import PARENT_ENV, child_env, die_with_parent

#: a safety net against a hang, not a performance limit
LIMIT_S = 300.0

# a starter that runs CHILD with child_env, prints the child's pid, then waits to be killed
STARTER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pan_runtime.net.lifetime import child_env
    child = subprocess.Popen(sys.argv[1:], env=child_env(), stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    print(child.pid, line.strip(), flush=True)
    time.sleep(3600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _orphaned_child_dies(child: list[str], ready: str) -> None:
    with subprocess.Popen([sys.executable, "-c", STARTER, *child], stdout=subprocess.PIPE, text=True) as starter:
        try:
            assert starter.stdout is not None
            pid_text, _, said = starter.stdout.readline().partition(" ")
            pid = int(pid_text)
            assert ready in said, said
            assert _alive(pid)
        finally:
            starter.kill()  # SIGKILL: the starter gets no chance to clean up
            starter.wait()
    deadline = time.monotonic() + LIMIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the child outlived its starter"


def test_a_child_that_asks_dies_with_its_starter():
    code = "from pan_runtime.net.lifetime import die_with_parent; import time; die_with_parent(); print('tied', flush=True); time.sleep(3600)"
    _orphaned_child_dies([sys.executable, "-c", code], "tied")


def test_pan_node_dies_with_its_starter(tmp_path: Path):
    cfg = tmp_path / "n.toml"
    cfg.write_text('[node]\nname = "orphan"\nlisten = ["127.0.0.1:0"]\naddress = "127.0.0.1:7999"\n')
    _orphaned_child_dies([sys.executable, "-m", "pan_runtime.cli", "node", str(cfg)], "ready")


def test_without_the_variable_nothing_changes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(PARENT_ENV, raising=False)
    assert die_with_parent() is False


def test_child_env_names_this_process():
    env = child_env({"A": "1"})
    assert env == {"A": "1", PARENT_ENV: str(os.getpid())}
