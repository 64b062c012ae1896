"""Application links over UNIX sockets and the client library, against a node in a thread."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request

import pytest
from nethelpers import daemon_from, free_udp_ports, remove_tree, running, short_dir

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.errors import CodeObjectError, LinkError, PanError
from pan_runtime.net.applink import FRAME, INJECT
from pan_runtime.net.client import Client
from pan_runtime.protocol_headers import PingHdr

PORT = 7


@pytest.fixture
def node():
    d = short_dir()
    (port,) = free_udp_ports(1)
    cfg = d / "n.toml"
    cfg.write_text(f'[node]\nname = "solo"\nlisten = ["127.0.0.1:{port}"]\napp_socket = "n.sock"\n')
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
        assert st["injected"] >= 4 and st["delivered"] == 3 and st["apps"]["connected"] == 1
        assert "demand" in st and "links" in st
        assert "solo" in format_stats(st)
        assert c.ping_node() < 1.0
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
    assert time.monotonic() - t0 < 2


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
