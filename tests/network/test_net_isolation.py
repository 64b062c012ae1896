"""Process isolation on real nodes: three ``pan node`` processes on loopback UDP run native
code in worker processes (``[runtimes.native] isolation = "process"``), so unsigned native code
from the network is taken under the default trust rules (``network.process = any``), pings
through it are answered, and ``pan stats`` shows the workers. A worker dies with its node."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from nethelpers import NodeProcesses, free_udp_ports, line_configs, pan, remove_tree, short_dir
from worker_procs import workers_of

from pan_runtime.isolation.mechanism import process_unavailable

pytestmark = pytest.mark.skipif(process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}")

EXTRA = '[runtimes.native]\nisolation = "process"\n[limits]\nworker_spares = 0\n'


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _confined(pid: int) -> bool:
    """The process runs under its seccomp filter."""
    with open(f"/proc/{pid}/status") as f:
        return "Seccomp:\t2\n" in f.read()


def test_unsigned_native_code_runs_contained_and_pings_are_answered():
    d = short_dir()
    procs = NodeProcesses(line_configs(d, free_udp_ports(3), EXTRA), d)
    try:
        procs.wait_ready(120.0)
        socks = [str(d / f"{n}.sock") for n in ("sender", "middle", "receiver")]
        cfgs = [json.loads(pan("stats", s, "--json").stdout)["node"] for s in socks]
        p = pan("ping", socks[0], "--to", cfgs[2], "--runtime", "native", "-c", "3", "-W", "120", "--json")
        assert p.returncode == 0, p.stdout + p.stderr + procs.output()
        doc = json.loads(p.stdout)
        assert doc["received"] == 3 and not doc["code"]["signed"]
        st = pan("stats", socks[1], "--json")
        workers = json.loads(st.stdout)["workers"]["native"]
        assert workers["workers"] == 1 and workers["restarts"] == 0, workers
        text = pan("stats", socks[1]).stdout
        assert "workers: native: 1 up, 0 spare, 0 restarts, 0 kills, 1 standby, 0 warm restarts" in text, text
        # the worker and its code object's warm standby each hold only their channel: the
        # memfd and two eventfds, and /dev/null
        middle = procs.procs[1].pid
        workers = workers_of(middle)
        assert len(workers) == 2, workers
        for worker in workers:
            for _ in range(3000):  # a hang guard: the standby may still be linking its code
                if _confined(worker):
                    break
                time.sleep(0.01)
            fds = {os.readlink(f"/proc/{worker}/fd/{fd}") for fd in os.listdir(f"/proc/{worker}/fd")}
            assert fds <= {"/dev/null", "anon_inode:[eventfd]"} | {f for f in fds if f.startswith("/memfd:pan-worker")}, fds
            assert any(f.startswith("/memfd:pan-worker") for f in fds)
        # they die with their node, even one killed outright
        procs.procs[1].send_signal(signal.SIGKILL)
        procs.procs[1].wait(30)
        for worker in workers:
            for _ in range(3000):  # a hang guard, not a deadline
                if not _alive(worker):
                    break
                time.sleep(0.01)
            else:
                pytest.fail(f"worker {worker} outlived its node")
    finally:
        procs.stop()
        remove_tree(d)
