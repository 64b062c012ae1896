"""Application links over UNIX sockets and the client library, against a node in a thread."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest
from nethelpers import daemon_from, free_udp_ports, remove_tree, running, short_dir

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.errors import CodeObjectError, LimitError, LinkError, OwnershipError, PanError
from pan_runtime.net.applink import FRAME, INJECT, frame
from pan_runtime.net.client import Client
from pan_runtime.protocol_headers import PingHdr

PORT = 7


@pytest.fixture
def node(request):
    d = short_dir()
    (port,) = free_udp_ports(1)
    cfg = d / "n.toml"
    limits = getattr(request, "param", "")  # extra [limits] lines
    cfg.write_text(f'[node]\nname = "solo"\nlisten = ["127.0.0.1:{port}"]\napp_socket = "n.sock"\n[limits]\n{limits}\n')
    daemon = daemon_from(cfg, metrics_port=0)
    try:
        with running(daemon):
            yield daemon
    finally:
        daemon.close()
        assert not (d / "n.sock").exists(), "the socket file outlived the node"
        remove_tree(d)


@pytest.fixture
def codes():
    return reference_code("restricted_py", "portmapper"), reference_code("restricted_py", "ping")


def ping_self(c: Client, ping, seq: int, pad: int = 0) -> None:
    c.send(ping, PingHdr(dest=c.address.raw, port=PORT, phase=0, seq=seq).pack() + bytes(pad))


def test_install_bind_inject_and_receive(node, codes):
    pm, ping = codes
    with Client.connect(node.config.app_socket) as c:
        assert c.address == node.node.address and c.node_name == "solo"
        assert c.install(pm, pin=True) == pm.name
        c.use_portmapper(pm)
        c.install(ping)
        c.bind(PORT)
        for seq in range(3):
            ping_self(c, ping, seq)
        got = [c.receive(timeout=5) for _ in range(3)]
        assert [PingHdr.unpack(d.data).seq for d in got] == [0, 1, 2]
        assert all(d.port == PORT and d.code == ping.name for d in got)
        assert c.receive(timeout=0.05) is None
        listed = {x["name"]: x for x in c.list_code()}
        assert listed[pm.hex_name]["pinned"] and listed[ping.hex_name]["origin"] == "local"
        st = c.stats()
        assert st["injected"] == 3 and st["delivered"] == 3 and st["apps"]["connected"] == 1
        assert "demand" in st and "links" in st
        assert "solo" in format_stats(st)
        assert c.ping_node() > 0
        c.uninstall(ping)
        assert ping.hex_name not in {x["name"] for x in c.list_code()}


def test_node_errors_come_back_as_exceptions(node, codes):
    with Client.connect(node.config.app_socket) as c:
        with pytest.raises(PanError, match="not a code object"):
            c._request(2, b"\x00garbage")  # an INSTALL whose bytes are not a .pco
        with pytest.raises(CodeObjectError, match="not installed"):
            c.uninstall(b"\x01" * 32)
        with pytest.raises(CodeObjectError, match="portmapper must be installed"):
            c.use_portmapper(b"\x02" * 32)
        with pytest.raises(CodeObjectError, match="no portmapper"):
            c.bind(PORT)


def test_deliveries_reach_only_the_binding_connection(node, codes):
    pm, ping = codes
    with Client.connect(node.config.app_socket) as a, Client.connect(node.config.app_socket) as b:
        a.install(pm)
        a.use_portmapper(pm)
        a.install(ping)
        a.bind(PORT)
        ping_self(b, ping, 9)  # b injects, but the port belongs to a
        assert PingHdr.unpack(a.receive(timeout=5).data).seq == 9
        assert b.receive(timeout=0.1) is None


def test_an_application_that_disconnects_mid_delivery(node, codes):
    pm, ping = codes
    path = node.config.app_socket
    with Client.connect(path) as c:
        c.install(pm)
        c.use_portmapper(pm)
        c.install(ping)
    flaky = Client.connect(path)
    flaky.use_portmapper(pm)
    flaky.bind(PORT)
    for seq in range(300):
        ping_self(flaky, ping, seq, pad=4000)  # ~1.2 MB of deliveries nobody reads
    flaky.sock.shutdown(socket.SHUT_RDWR)
    flaky.close()
    with Client.connect(path) as c:
        deadline = time.monotonic() + 5
        while c.stats()["apps"]["connected"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        st = c.stats()
        assert st["apps"]["connected"] == 1  # only this one: the flaky link is gone
        # the port died with the connection: later capsules for it are counted drops
        before = st["code"][ping.hex_name]["drops"].get("dead_link", 0) + st["code"][ping.hex_name]["drops"].get("no_port", 0)
        c.use_portmapper(pm)
        ping_self(c, ping, 1000)
        c.ping_node()
        st = c.stats()
        after = st["code"][ping.hex_name]["drops"].get("dead_link", 0) + st["code"][ping.hex_name]["drops"].get("no_port", 0)
        assert after == before + 1
        assert c.receive(timeout=0.05) is None


def test_an_oversized_frame_closes_only_that_connection(node):
    path = node.config.app_socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(FRAME.pack(1 << 30, INJECT, 0))
    s.settimeout(5)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data  # the greeting came, then the node hung up
    with Client.connect(path) as c:
        assert c.stats()["apps"]["bad_frames"] == 1


def test_truncated_frames_and_garbage_do_not_hurt_the_node(node):
    path = node.config.app_socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(FRAME.pack(5 + 100, INJECT, 0) + b"abc")  # a frame cut short, then the app leaves
    s.close()
    with Client.connect(path) as c:
        c.send_raw(b"\x07" * 60)  # not a capsule
        c.ping_node()
        assert c.stats()["drops"]["malformed:version"] == 1


def test_metrics_over_http(node):
    url = f"http://127.0.0.1:{node.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE pan_received_total counter" in text
    assert "pan_uptime_seconds" in text
    assert 'pan_fast_path_capsules_total{path="finished_in_c"} 0' in text


def test_a_live_socket_is_not_stolen_and_a_stale_one_is_replaced(node, tmp_path):
    from pan_runtime.net.applink import AppServer
    from pan_runtime.net.udp import EventLoop

    loop = EventLoop()
    try:
        with pytest.raises(LinkError, match="in use by a running node"):
            AppServer(node.node, node.config.app_socket, loop)
        stale = short_dir()
        p = stale / "old.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(p))
        s.close()  # the file stays, nobody listens
        server = AppServer(node.node, p, loop)
        server.close()
        assert not p.exists()
        remove_tree(stale)
    finally:
        loop.close()


def test_client_without_a_node():
    with pytest.raises(LinkError, match="cannot connect"):
        Client("/tmp/pan-no-such-node.sock")
    t0 = time.monotonic()
    with pytest.raises(LinkError):
        Client.connect("/tmp/pan-no-such-node.sock", timeout=0.2)
    assert time.monotonic() - t0 < 60  # it gives up (a hang guard: how soon depends on the machine's load)


def test_frame_layout_is_as_documented():
    assert FRAME.size == 9
    assert FRAME.pack(5, INJECT, 7) == struct.pack(">IBI", 5, 5, 7)


def test_a_socket_path_too_long_for_af_unix_is_a_clear_error(tmp_path):
    from pan_runtime.errors import LinkError
    from pan_runtime.net.applink import AppServer
    from pan_runtime.net.udp import EventLoop
    from pan_runtime.node.node import Node

    long_path = tmp_path / ("x" * 120) / "a.sock"
    with Node(1) as node:
        loop = EventLoop()
        try:
            with pytest.raises(LinkError, match="limited to 107"):
                AppServer(node, str(long_path), loop)
        finally:
            loop.close()


# ---------------------------------------------------------------- ownership of ports and pins
def wait_alone(c: Client) -> None:
    """Until the node has seen every other connection close."""
    deadline = time.monotonic() + 10
    while c.stats()["apps"]["connected"] != 1 and time.monotonic() < deadline:
        time.sleep(0.02)

def setup_ping(c: Client, pm, ping) -> None:
    c.install(pm, pin=True)
    c.use_portmapper(pm)
    c.install(ping, pin=True)
    c.bind(PORT)


@pytest.mark.parametrize("node", ["app_ports = 3"], indirect=True)
def test_another_connection_cannot_take_unbind_or_uninstall_what_one_owns(node, codes):
    pm, ping = codes
    path = node.config.app_socket
    with Client.connect(path) as a, Client.connect(path) as b:
        setup_ping(a, pm, ping)
        with pytest.raises(OwnershipError, match="belongs to another application"):
            b.bind(PORT)
        with pytest.raises(OwnershipError):
            b.unbind(PORT)
        with pytest.raises(OwnershipError, match="pinned by 1 other application"):
            b.uninstall(ping)
        with pytest.raises(OwnershipError, match="carries ports of 1 other"):
            b.use_portmapper(reference_code("wasm", "portmapper"))
        # the raw capsule is the same request; with no reply to carry the refusal, it is counted
        b.send(pm, struct.pack(">HBB", PORT, 1, 0))
        b.ping_node()
        assert b.stats()["drops"]["port_refused"] == 1
        for p in (100, 101, 102):
            b.bind(p)
        with pytest.raises(LimitError, match="limits.app_ports"):
            b.bind(103)
        ping_self(b, ping, 5)
        assert PingHdr.unpack(a.receive(timeout=5).data).seq == 5  # still a's
        assert b.receive(timeout=0.1) is None
        st = b.stats()["ports"]
        assert st["bound"] == 4 and st["refused_owner"] == 3 and st["refused_limit"] == 1
    with Client.connect(path) as c:
        wait_alone(c)
        assert c.stats()["ports"]["bound"] == 0  # the ports went with their connections
        c.uninstall(ping)  # and the pins: anyone may uninstall it now
        c.bind(PORT)


def test_an_error_frame_carries_a_status_the_client_raises_as_its_type(node, codes):
    from pan_runtime.net.applink import Status

    pm, _ping = codes
    path = node.config.app_socket
    with Client.connect(path) as a, Client.connect(path) as b:
        a.install(pm)
        a.use_portmapper(pm)
        a.bind(PORT)
        b._request(7, b"")  # a ping, to be sure the link works
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(path)
        raw.settimeout(10)
        raw.recv(1 << 16)  # HELLO
        raw.sendall(frame(9, 42, struct.pack(">HB", PORT, 0)))  # BIND a's port
        head = raw.recv(FRAME.size, socket.MSG_WAITALL)
        length, kind, req = FRAME.unpack(head)
        body = raw.recv(length - 5, socket.MSG_WAITALL)
        raw.close()
        assert (kind, req, body[0]) == (65, 42, Status.NOT_OWNER)
        assert b"belongs to another application" in body[1:]


@pytest.mark.parametrize("node", ["state_ttl_ms = 50"], indirect=True)
def test_a_binding_lasts_as_long_as_its_connection(node, codes):
    pm, ping = codes
    with Client.connect(node.config.app_socket) as c:
        setup_ping(c, pm, ping)
        for seq in range(3):
            time.sleep(0.2)  # four times the portmapper's soft-state TTL: its record is gone
            ping_self(c, ping, seq)
            assert PingHdr.unpack(c.receive(timeout=10).data).seq == seq
        assert c.stats()["ports"]["rebound"] == 3


NOBODY = 65534
PEER = """
import json, os, sys
from pan_runtime.errors import OwnershipError
from pan_runtime.net.client import Client

os.setgid(%(uid)d)
os.setuid(%(uid)d)  # before connecting: the node reads the peer's credentials at connect
out = {}
with Client(sys.argv[1]) as c:
    tries = {
        "bind": lambda: c.bind(7),
        "bind_force": lambda: c.bind(7, force=True),
        "unbind_force": lambda: c.unbind(7, force=True),
        "uninstall_force": lambda: c.uninstall(bytes.fromhex(sys.argv[2]), force=True),
        "own_port": lambda: c.bind(8),
    }
    for what, fn in tries.items():
        try:
            fn()
            out[what] = "ok"
        except OwnershipError:
            out[what] = "not_owner"
    out["stats"] = c.stats()["ports"]
print(json.dumps(out))
"""


def test_only_a_root_peer_may_force_and_the_node_knows_peers_by_their_credentials(node, codes):
    pm, ping = codes
    path = node.config.app_socket
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, 0o777)  # let another user connect
    with Client.connect(path) as owner:
        setup_ping(owner, pm, ping)
        r = subprocess.run(
            [sys.executable, "-c", PEER % {"uid": NOBODY}, path, ping.hex_name], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert {k: v for k, v in got.items() if k != "stats"} == {
            "bind": "not_owner",
            "bind_force": "not_owner",
            "unbind_force": "not_owner",
            "uninstall_force": "not_owner",
            "own_port": "ok",
        }
        assert got["stats"]["taken"] == 0
        links = {c.uid for c in node.apps.connections}
        assert links == {0}  # the other user's connection closed; this one is root's
        with Client.connect(path) as root:  # this test runs as root: force is honoured
            with pytest.raises(OwnershipError, match="without force"):
                root.bind(PORT)
            root.bind(PORT, force=True)
            ping_self(root, ping, 77)
            assert PingHdr.unpack(root.receive(timeout=5).data).seq == 77
            assert owner.receive(timeout=0.1) is None
            root.uninstall(ping, force=True)
            assert root.stats()["ports"]["taken"] == 1


# ---------------------------------------------------------------- bounded input
@pytest.mark.parametrize("node", ["app_max_frame = 65536\napp_in_bytes = 262144"], indirect=True)
def test_partial_frames_are_capped_across_connections(node):
    path = node.config.app_socket
    socks = []
    try:
        for _ in range(8):  # each holds 50 kB of a 60 kB frame: 400 kB wanted, 256 KiB allowed
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(FRAME.pack(5 + 60_000, INJECT, 0) + bytes(50_000))
            socks.append(s)
        with Client.connect(path) as c:
            deadline = time.monotonic() + 10
            while c.stats()["apps"]["closed"].get("input_limit", 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            apps = c.stats()["apps"]
        assert apps["closed"]["input_limit"] == 3  # five fit; the three that would pass the cap are closed
        assert 5 * (FRAME.size + 50_000) <= apps["input_bytes"] <= 262144
        closed = 0
        for s in socks:
            s.settimeout(10)
            s.recv(1 << 16)  # the greeting
            s.settimeout(0.2)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
        assert closed == 3
    finally:
        for s in socks:
            s.close()
    with Client.connect(path) as c:
        deadline = time.monotonic() + 10
        while c.stats()["apps"]["input_bytes"] > FRAME.size and time.monotonic() < deadline:
            time.sleep(0.02)
        # given back when their connections went: what is left is the STATS request being answered
        assert c.stats()["apps"]["input_bytes"] == FRAME.size


@pytest.mark.parametrize("node", ["app_connections = 2"], indirect=True)
def test_connections_past_the_limit_are_closed_and_counted(node):
    path = node.config.app_socket
    with Client.connect(path) as a, Client.connect(path):
        with pytest.raises(LinkError):
            Client(path)
        assert a.stats()["apps"]["closed"]["connections_full"] == 1
    with Client.connect(path) as c:  # room again
        assert c.stats()["apps"]["connected"] == 1


# ---------------------------------------------------------------- soft state (STATE)
@pytest.mark.parametrize("node", ["app_out_bytes = 4096"], indirect=True)
def test_state_requests_are_checked_and_bounded(node, codes):
    from pan_runtime.net.applink import STATE

    pm, _ = codes
    with Client.connect(node.config.app_socket) as c:
        c.install(pm, pin=True)
        entry = node.node.cache.peek(pm.name)
        for i in range(100):
            entry.state.put(b"k%03d" % i, bytes([i]) * 40)
        with pytest.raises(LinkError, match="STATE takes a 32-byte code object name"):
            c._request(STATE, b"x" * 31)
        with pytest.raises(CodeObjectError, match="is not installed"):
            c.soft_state(b"\x01" * 32)
        whole = c.soft_state(pm, max_entries=1000, max_bytes=1 << 30)
        # bytes of keys and values are capped at a quarter of limits.app_out_bytes (1024 here)
        assert whole["truncated"] and whole["count"] == 100
        assert sum(len(e["key"]) + len(e["value"]) for e in whole["entries"]) <= 1024
        assert [e["key"] for e in whole["entries"]] == [b"k%03d" % i for i in range(len(whole["entries"]))]
        few = c.soft_state(pm, max_entries=3)
        assert len(few["entries"]) == 3 and few["truncated"]
        assert few["entries"][1]["value"] == b"\x01" * 40 and few["entries"][1]["ttl_ms"] > 0
        assert entry.state.get(b"k000") is not None  # looking changed nothing
