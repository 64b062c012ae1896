"""The ``cforw`` forwarder relays datagrams between its two ends and nothing else."""

from __future__ import annotations

import socket
import subprocess
import sys

from bench_helpers import ROOT


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def test_forwarder_relays_both_ways():
    a, b, probe = _sock(), _sock(), _sock()
    port = probe.getsockname()[1]
    probe.close()
    ep = lambda s: f"127.0.0.1:{s.getsockname()[1]}"  # noqa: E731
    p = subprocess.Popen([sys.executable, "-m", "pan_runtime.bench.forwarder", f"127.0.0.1:{port}", ep(a), ep(b)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        a.sendto(b"x" * 1472, ("127.0.0.1", port))
        data, src = b.recvfrom(65536)
        assert data == b"x" * 1472 and src == ("127.0.0.1", port)
        b.sendto(b"back", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"back"
    finally:
        p.terminate()
        assert p.wait(10) == 0
        p.stdout.close()
        a.close()
        b.close()


def test_forwarder_usage():
    r = subprocess.run([sys.executable, "-m", "pan_runtime.bench.forwarder"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "usage" in r.stderr
