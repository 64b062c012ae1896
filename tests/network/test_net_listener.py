"""Accepting at the descriptor limit (``pan_runtime.net.listener``): a node process whose file
descriptors run out pauses its application socket instead of spinning on it, counts and logs
each pause once, and serves the waiting connections when descriptors come back."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time

from nethelpers import free_udp_ports, remove_tree, short_dir

from pan_runtime.net.applink import FRAME, HELLO
from pan_runtime.net.client import Client
from pan_runtime.net.lifetime import child_env


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_accept_pauses_at_the_descriptor_limit_and_resumes():
    d = short_dir()
    (port,) = free_udp_ports(1)
    cfg = d / "n.toml"
    cfg.write_text(f'[node]\nname = "tight"\nlisten = ["127.0.0.1:{port}"]\napp_socket = "n.sock"\n')
    sock_path = str(d / "n.sock")
    log = open(d / "node.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pan_runtime.net.daemon", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=child_env(dict(os.environ))
    )
    held: list[socket.socket] = []
    try:
        assert wait_for(lambda: os.path.exists(sock_path)), (d / "node.log").read_text()
        with Client.connect(sock_path) as c:  # the node is serving
            c.ping_node()
        # leave the node two spare descriptors, then queue ten connections on its socket
        used = len(os.listdir(f"/proc/{proc.pid}/fd"))
        _soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (used + 2, hard))
        for _ in range(10):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            held.append(s)
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(2.0)  # out of descriptors for a while (nothing is timed: the counts below are)
        cpu = cpu_seconds(proc.pid) - cpu0
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (4096, hard))
        # every waiting connection is served once descriptors are back
        for s in held:
            s.settimeout(30)
            head = s.recv(FRAME.size, socket.MSG_WAITALL)
            assert FRAME.unpack(head)[1] == HELLO
        for s in held:
            s.close()
        held.clear()
        with Client.connect(sock_path) as c:
            apps = c.stats()["apps"]
        text = (d / "node.log").read_text()
        pauses = apps.get("accept_pauses")
        logged = text.count("not accepting for")
        print(f"pauses {pauses}, failed accepts {apps.get('accept_failed')}, cpu {cpu:.3f} s in 2 s, log {len(text)} bytes")
        assert pauses >= 1
        assert logged == pauses  # once per pause, not once per attempt
        assert apps["accept_failed"] == pauses  # one failed accept per pause: no spinning
        assert apps["accepted"] >= 12 and not apps["accept_paused"]
    finally:
        for s in held:
            s.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        remove_tree(d)
