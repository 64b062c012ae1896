"""Error reports travel back to the sender, between real ``pan node`` processes over UDP.

Three nodes in a line (sender - middle - receiver) with the default trust policy: unsigned
native code from the network is refused, so ``pan ping --runtime native`` is dropped at the
middle, and the middle says so to the sender; an address nobody routes is reported as "no
route" by the node that had none. A fourth set-up, one node and a plain UDP socket as its
neighbour, checks that no report is ever sent about an error report, and the node-wide rate
limit. The processes are stopped and their sockets removed even when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from nethelpers import PAN, FakePeer, NodeProcesses, free_udp_ports, line_configs, remove_tree, short_dir

from pan_runtime.cli.protocols import ping_body, reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule, encode_header
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.errreport import ErrorReport, decode_report, encode_report
from pan_runtime.data.wire import SYS_ERROR_REPORT
from pan_runtime.net.application import Application
from pan_runtime.net.client import Client
from pan_runtime.net.config import ErrorReportConfig
from pan_runtime.net.lifetime import child_env
from pan_runtime.net.reports import ErrorReporter
from pan_runtime.node.node import Node
from pan_runtime.protocol_headers import ForwardHdr, PingHdr

#: an address no node routes (the sender routes it to the middle, which has no route for it)
NOWHERE = NodeAddress.parse("10.99.0.1:4000")
ELSEWHERE = NodeAddress.parse("10.99.0.2:4000")
PER_DEST_BURST = 3
PER_DEST_RATE = 1.0


class LineBed:
    def __init__(self) -> None:
        self.dir = short_dir()
        self.ports = free_udp_ports(3)
        extra = f"[errors]\nper_dest_burst = {PER_DEST_BURST}\nper_dest_rate = {PER_DEST_RATE}\n"
        self.configs = line_configs(self.dir, self.ports, extra)
        with open(self.configs[0], "a") as f:  # the sender sends NOWHERE on to the middle
            f.write(f'[[routes]]\ndest = "{NOWHERE}"\nvia = "127.0.0.1:{self.ports[1]}"\n')
        self.addresses = [NodeAddress.from_endpoint("127.0.0.1", p) for p in self.ports]
        self.sockets = [str(self.dir / f"{n}.sock") for n in ("sender", "middle", "receiver")]
        self.procs = NodeProcesses(self.configs, self.dir)
        self.procs.wait_ready()

    def stats(self, i: int) -> dict:
        with Client(self.sockets[i]) as c:
            return c.stats()

    def pan(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PAN, *args], capture_output=True, text=True, timeout=timeout, env=child_env(dict(os.environ)))


@pytest.fixture(scope="module")
def bed():
    b = LineBed()
    try:
        yield b
    finally:
        codes = b.procs.stop()
        left = [s for s in b.sockets if os.path.exists(s)]
        remove_tree(b.dir)
        assert codes == [0, 0, 0], f"node exit codes {codes}"
        assert not left, f"sockets left behind: {left}"


def test_ping_native_names_the_refusing_node_the_rule_and_the_fix(bed):
    # the wait is only a hang guard: the report, not the timeout, ends it
    r = bed.pan("ping", bed.sockets[0], "--to", str(bed.addresses[2]), "--runtime", "native", "-c", "1", "--timeout", "60", "--no-progress")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert f"From {bed.addresses[1]}: seq=0 trust refused the code (rule network.none)" in out, out + bed.procs.output()
    assert "no reply" not in out
    assert "is unsigned" in out and "pan sign" in out and "--runtime wasm" in out
    assert bed.stats(1)["error_reports"]["sent"] >= 1
    st = bed.stats(0)["error_reports"]
    assert st["received"] >= 1 and st["delivered"] >= 1


def test_ping_to_an_unroutable_address_says_no_route_from_the_node_that_had_none(bed):
    mid = bed.addresses[1]
    r = bed.pan("ping", bed.sockets[0], "--to", str(NOWHERE), "--runtime", "wasm", "-c", "2", "--timeout", "60", "--no-progress")
    assert f"From {mid}: seq=0 no route: no route to {NOWHERE}" in r.stdout, r.stdout + r.stderr + bed.procs.output()
    assert f"From {mid}: seq=1 no route" in r.stdout
    # the sender itself has no route to ELSEWHERE: it says so, no datagram needed
    r = bed.pan("ping", bed.sockets[0], "--to", str(ELSEWHERE), "--runtime", "wasm", "-c", "1", "--timeout", "60", "--no-progress")
    assert f"From {bed.addresses[0]}: seq=0 no route: no route to {ELSEWHERE}" in r.stdout, r.stdout + r.stderr


def test_a_report_crosses_a_middle_node_on_its_way_home(bed):
    code = reference_code("wasm", "ping")
    with Client(bed.sockets[0]) as c:
        c.install(code)
        # one hop left after the middle: the receiver drops it, two hops from its home
        c.send(code, ping_body(bed.addresses[2].raw, 7, 42, 64), hop_limit=1)
        r = c.receive(60, reports=True)
    assert isinstance(r, ErrorReport), bed.procs.output()
    assert (r.reporter, r.reason, r.code) == (bed.addresses[2], "hop_limit", code.name)
    assert PingHdr.unpack(r.quote[: PingHdr.SIZE]).seq == 42
    assert bed.stats(1)["error_reports"]["relayed"] >= 1


def test_flood_whose_probe_is_refused_prints_the_report(bed):
    time.sleep(PER_DEST_BURST / PER_DEST_RATE)  # the middle's reports to the sender: tokens again
    r = bed.pan("flood", bed.sockets[0], "--to", str(bed.addresses[2]), "--runtime", "native", "-n", "50", "--timeout", "60", "--no-progress")
    assert r.returncode != 0
    err = r.stderr
    assert "the probe capsule was dropped on the way" in err, r.stdout + err + bed.procs.output()
    assert f"From {bed.addresses[1]}: trust refused the code (rule network.none)" in err
    assert "--runtime wasm" in err


def test_flood_of_refused_capsules_gets_rate_limited_reports(bed):
    code = reference_code("native", "forward")  # unsigned: the middle refuses it
    body = ForwardHdr(dest=bed.addresses[2].raw, port=9, flags=0).pack() + bytes(64)
    before = bed.stats(1)["error_reports"]
    with Client(bed.sockets[0]) as c:
        c.install(code)
        t0 = time.monotonic()
        for _ in range(300):
            c.send(code, body)
        # wait until the middle has dropped all 300 (parked ones at the refusal) and said what it could
        end = time.monotonic() + 120
        while True:
            mid = bed.stats(1)
            seen = mid["code"].get(code.hex_name, {}).get("capsules_in", 0)
            drops = sum(v for k, v in mid["drops"].items() if k in ("park_full", "no_code_recent", "trust:network.none", "fetch_limit"))
            if drops >= 300 or time.monotonic() > end:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        assert drops >= 300 and seen == 0, f"{mid['drops']}\n{bed.procs.output()}"
        after = mid["error_reports"]
        sent = after["sent"] - before["sent"]
        limited = after["rate_limited"] - before["rate_limited"]
        assert 1 <= sent <= PER_DEST_BURST + PER_DEST_RATE * elapsed + 1, (sent, elapsed)
        assert sent + limited >= 300
        time.sleep(0.5)
        reports = c.errors()
        assert 1 <= len(reports) <= sent
        assert all(r.reporter == bed.addresses[1] and r.code == code.name for r in reports)
        assert {r.reason for r in reports} <= {"park_full", "no_code_recent", "trust:network.none", "fetch_limit"}


# ---------------------------------------------------------------------- one node and a raw neighbour
class SoloBed:
    """One ``pan node`` whose only neighbour is a plain UDP socket (``FakePeer``)."""

    def __init__(self, errors: str) -> None:
        self.dir = short_dir()
        self.port, peer_port = free_udp_ports(2)
        self.peer = FakePeer(peer_port)
        self.address = NodeAddress.from_endpoint("127.0.0.1", self.port)
        cfg = self.dir / "solo.toml"
        cfg.write_text(
            f'[node]\nname = "solo"\nlisten = ["127.0.0.1:{self.port}"]\napp_socket = "solo.sock"\n'
            f'[[neighbors]]\naddress = "{self.peer.address}"\n[errors]\n{errors}\n'
        )
        self.socket = str(self.dir / "solo.sock")
        self.procs = NodeProcesses([cfg], self.dir)
        self.procs.wait_ready()

    def stats(self) -> dict:
        with Client(self.socket) as c:
            return c.stats()

    def wait_drops(self, reason: str, n: int) -> dict:
        end = time.monotonic() + 60
        while True:
            st = self.stats()
            if st["drops"].get(reason, 0) >= n or time.monotonic() > end:
                return st
            time.sleep(0.1)

    def close(self) -> None:
        try:
            codes = self.procs.stop()
        finally:
            self.peer.close()
            remove_tree(self.dir)
        assert codes == [0]


@pytest.fixture
def solo(request):
    b = SoloBed(getattr(request, "param", ""))
    try:
        yield b
    finally:
        b.close()


NAME = bytes(range(32))


def test_a_dropped_capsule_is_reported_but_a_dropped_error_report_never(solo):
    peer = solo.peer
    # an ordinary capsule out of hops: the node tells its home (the peer), quoting its body
    peer.send(encode_header(NAME, peer.address, 0) + b"hello", solo.port)
    st = solo.wait_drops("hop_limit", 1)
    end = time.monotonic() + 30
    got: list[bytes] = []
    while not got and time.monotonic() < end:
        got = peer.recv_all()
        time.sleep(0.05)
    assert len(got) == 1, solo.procs.output()
    cap = Capsule.parse_bytes(got[0])
    assert cap.is_system and cap.name == NAME and cap.home == solo.address
    report = decode_report(cap.name, cap.home, cap.body.tobytes())
    assert report.reason == "hop_limit" and report.quote == b"hello" and "hop limit" in report.detail
    assert st["error_reports"]["sent"] == 1

    # error reports the node drops: out of hops, toward a destination it has no route to,
    # malformed, and addressed to it about a capsule no application here sent
    peer.send(encode_report(NAME, peer.address, solo.address, "no_route", "x", b"", 0), solo.port)
    peer.send(encode_report(NAME, peer.address, NOWHERE, "no_route", "x", b"", 5), solo.port)
    bad = bytearray(encode_report(NAME, peer.address, solo.address, "no_route", "x", b"", 5))
    bad[-1:] = b""  # one byte short of what its lengths say
    peer.send(bytes(bad), solo.port)
    peer.send(encode_report(NAME, peer.address, solo.address, "no_route", "x", b"", 5), solo.port)
    # and one more ordinary capsule out of hops after them, so we know they were all taken
    peer.send(encode_header(NAME, peer.address, 0) + b"again", solo.port)
    st = solo.wait_drops("hop_limit", 3)
    time.sleep(0.3)
    got = peer.recv_all()
    reports = [Capsule.parse_bytes(g) for g in got]
    assert [decode_report(c.name, c.home, c.body.tobytes()).quote for c in reports] == [b"again"], solo.procs.output()
    assert st["drops"]["hop_limit"] == 3
    assert st["drops"]["system_no_route"] == 1 and st["drops"]["system_malformed"] == 1
    er = st["error_reports"]
    assert er["sent"] == 2 and er["received"] == 2 and er["malformed"] == 1 and er["unclaimed"] == 1
    assert SYS_ERROR_REPORT == reports[0].body.tobytes()[0]


@pytest.mark.parametrize("solo", ["rate = 2.0\nburst = 3\nper_dest_rate = 1000.0\nper_dest_burst = 1000"], indirect=True)
def test_the_node_wide_rate_limit_holds_under_a_flood(solo):
    peer = solo.peer
    t0 = time.monotonic()
    for i in range(200):
        peer.send(encode_header(NAME, peer.address, 0) + i.to_bytes(2, "big"), solo.port)
    st = solo.wait_drops("hop_limit", 200)
    elapsed = time.monotonic() - t0
    time.sleep(0.3)
    got = peer.recv_all()
    er = st["error_reports"]
    assert st["drops"]["hop_limit"] == 200
    assert er["sent"] + er["rate_limited"] == 200
    assert 3 <= er["sent"] <= 3 + 2.0 * elapsed + 1, (er, elapsed)
    assert len(got) == er["sent"]


# ---------------------------------------------------------------------- in process, on a set clock
def test_in_process_application_gets_its_reports_within_the_per_destination_limit():
    now = [0]
    node = Node("127.0.0.1:7001", clock=lambda: now[0])
    reporter = ErrorReporter(node, ErrorReportConfig(per_dest_rate=2.0, per_dest_burst=3))
    try:
        app, other = Application(node), Application(node)
        code = reference_code("restricted_py", "ping")
        app.install(code)
        for seq in range(10):
            app.send(code, ping_body(NOWHERE.raw, 7, seq, 64))
        node.process()
        assert app.receive() is None  # reports wait for errors() unless asked for
        got = app.errors()
        assert [PingHdr.unpack(r.quote[: PingHdr.SIZE]).seq for r in got] == [0, 1, 2]
        assert all(r.reason == "no_route" and r.reporter == node.address and str(NOWHERE) in r.detail for r in got)
        assert other.errors() == []  # only the application that sent capsules of that code
        now[0] += 1_000_000_000  # one second: two more tokens
        for seq in range(10, 15):
            app.send(code, ping_body(NOWHERE.raw, 7, seq, 64))
        node.process()
        first = app.receive(reports=True)
        assert isinstance(first, ErrorReport) and PingHdr.unpack(first.quote[: PingHdr.SIZE]).seq == 10
        assert len(app.errors()) == 1
        assert reporter.info()["rate_limited"] == 7 + 3 and reporter.info()["delivered"] == 5
    finally:
        node.close()


def test_code_that_runs_out_of_budget_is_reported_to_its_sender():
    node = Node("127.0.0.1:7001")
    ErrorReporter(node)
    try:
        app = Application(node)
        spin = CodeObject.create("restricted_py", b"def accept(pni, capsule, length):\n    while True:\n        pass\n", entry={"accept": "accept"}, meta={"label": "spin"})
        app.install(spin)
        app.send(spin, b"0123")
        node.process()
        (r,) = app.errors()
        assert (r.reason, r.code, r.quote, r.reporter) == ("budget", spin.name, b"0123", node.address)
    finally:
        node.close()
