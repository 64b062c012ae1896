"""An idle ``pan node`` sleeps: with code of every runtime installed (so the wasm epoch ticker
and the jvm watchdog are running), the node process uses almost no CPU while nothing arrives.

Measured as the process's own CPU time (utime + stime of all its threads, from
/proc/PID/stat) over a few seconds of idleness: CPU time, not elapsed time, so a loaded
machine does not make it fail (a loaded machine only delays wake-ups)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nethelpers import NodeProcesses, free_udp_ports, remove_tree, short_dir

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.client import Client
from pan_runtime.plugin.plugins import default_plugins

RUNTIMES = ("native", "wasm", "jvm", "restricted_py")
#: seconds of idleness measured
WINDOW = 5.0
#: CPU seconds the node may use in WINDOW: 1.5 % of one CPU. An idle node with every
#: runtime's code measures about 0.2 %; before the wasm epoch ticker and the jvm watchdog
#: parked it used 3.5-6.5 % (each woke ~470 times a second).
LIMIT = 0.015 * WINDOW


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def node_dir() -> Iterator[Path]:
    d = short_dir()
    yield d
    remove_tree(d)


def test_an_idle_node_with_every_runtimes_code_sleeps(node_dir: Path) -> None:
    plugins = default_plugins()
    missing = set(RUNTIMES) - set(plugins.available_runtimes())
    assert not missing, f"every runtime must be available for this test: {missing} are not"
    (port,) = free_udp_ports(1)
    cfg = node_dir / "idle.toml"
    cfg.write_text(f'[node]\nname = "idle"\nlisten = ["127.0.0.1:{port}"]\napp_socket = "idle.sock"\n')
    codes = [reference_code(rt, "forward", plugins) for rt in RUNTIMES]
    procs = NodeProcesses([cfg], node_dir)
    try:
        procs.wait_ready()
        pid = procs.procs[0].pid
        with Client.connect(node_dir / "idle.sock") as client:
            for code in codes:
                client.install(code)
                client.send(code, bytes(32))  # each runtime runs code once: its ticker/watchdog start
            deadline = time.monotonic() + 60  # a hang guard only
            while {c["runtime"] for c in client.stats()["code"].values() if c["capsules_in"]} != set(RUNTIMES):
                assert time.monotonic() < deadline, client.stats()
                time.sleep(0.05)
            time.sleep(1.0)  # the ticker and the watchdog park after a few idle ticks
            start = cpu_seconds(pid)
            time.sleep(WINDOW)
            used = cpu_seconds(pid) - start
        assert procs.procs[0].poll() is None, procs.output()
    finally:
        procs.stop()
    assert used < LIMIT, f"an idle node used {used:.3f} s of CPU in {WINDOW} s (limit {LIMIT:.3f} s)"
