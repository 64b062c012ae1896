"""UDP netlinks, the event loop and demand loading, with nodes in this process.

Daemons are turned by hand (``pump``) in the test's thread; a plain UDP socket plays a
neighbour (``FakePeer``) to send malformed datagrams and to speak the system protocol.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from nethelpers import (
    FakePeer,
    big_code,
    chunks_of,
    daemon_from,
    free_udp_ports,
    line_configs,
    pump,
    remove_tree,
    requests_from,
    short_dir,
)

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE, Capsule
from pan_runtime.errors import LinkError
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.net.demand import (
    CHUNK,
    CHUNK_FIELDS,
    SYS_HEADER,
    encode_request,
)
from pan_runtime.plugin.nullrt import null_code

PORT = 7
TRUST_GUARDED = '[trust]\nrules = { "network.guarded" = "any" }\n'


@pytest.fixture
def tmpdir_short():
    d = short_dir()
    yield d
    remove_tree(d)


def forward_body(dest: NodeAddress, payload: bytes, port: int = PORT) -> bytes:
    return dest.raw + struct.pack(">HH", port, 0) + payload


def test_three_nodes_forward_and_fetch_code_from_the_previous_hop(tmpdir_short):
    ports = free_udp_ports(3)
    cfgs = line_configs(tmpdir_short, ports)
    ds = [daemon_from(c) for c in cfgs]
    try:
        sender, middle, receiver = ds
        pm = reference_code("restricted_py", "portmapper")
        receiver.node.install(pm)
        receiver.node.use_portmapper(pm)
        app = Application(receiver.node)
        app.bind(PORT)
        fwd = null_code("forward")
        src = Application(sender.node)
        src.install(fwd)
        for i in range(5):
            src.send(fwd, forward_body(receiver.node.address, b"hello %d" % i))
        assert pump(ds, lambda: app.pending == 5), (middle.statistics(), receiver.statistics())
        assert [d.data[20:] for d in app.deliveries()] == [b"hello %d" % i for i in range(5)]
        # both downstream nodes fetched the code: middle from the sender, receiver from the middle
        assert middle.demand.counters["fetched"] == 1 and receiver.demand.counters["fetched"] == 1
        assert sender.demand.counters["chunks_served"] >= 1 and middle.demand.counters["chunks_served"] >= 1
        assert middle.node.cache.peek(fwd.name).origin == "network"
        links = middle.statistics()["links"]["neighbors"]
        out = links[str(receiver.node.address)]
        assert out["sent"] >= 5 and out["mtu"] == 9216
        assert out["largest_sent"] >= HEADER_SIZE + 20 + len(b"hello 4")  # capsules and code chunks
        assert middle.node.pool.available == middle.node.pool.count
    finally:
        for d in ds:
            d.close()
    assert not any(p.exists() for p in tmpdir_short.glob("*.sock")), "sockets left behind"


def test_ipv6_netlinks(tmpdir_short):
    a_port, b_port = free_udp_ports(2, "::1")
    (tmpdir_short / "a.toml").write_text(
        f'[node]\nlisten = ["[::1]:{a_port}"]\n[[neighbors]]\naddress = "[::1]:{b_port}"\nendpoint = "[::1]:{b_port}"\n'
    )
    (tmpdir_short / "b.toml").write_text(
        f'[node]\nlisten = ["[::1]:{b_port}"]\n[[neighbors]]\naddress = "[::1]:{a_port}"\nendpoint = "[::1]:{a_port}"\n'
    )
    a, b = daemon_from(tmpdir_short / "a.toml"), daemon_from(tmpdir_short / "b.toml")
    try:
        pm = reference_code("restricted_py", "portmapper")
        b.node.install(pm)
        b.node.use_portmapper(pm)
        app = Application(b.node)
        app.bind(PORT)
        fwd = null_code("forward")
        Application(a.node).install(fwd)
        Application(a.node).send(fwd, forward_body(b.node.address, b"six"))
        assert pump([a, b], lambda: app.pending == 1)
        assert app.receive().data.endswith(b"six")
        assert b.transport.info()["listen"] == [f"[::1]:{b_port}"]
    finally:
        a.close()
        b.close()


@pytest.fixture
def node_and_peer(tmpdir_short):
    """A node whose only neighbour is a FakePeer (small buffers, fast demand timing)."""
    node_port, peer_port = free_udp_ports(2)
    peer = FakePeer(peer_port)
    cfg = tmpdir_short / "n.toml"
    cfg.write_text(
        f'[node]\nlisten = ["127.0.0.1:{node_port}"]\n'
        f'[[neighbors]]\naddress = "127.0.0.1:{peer_port}"\nmtu = 2048\n'
        "[limits]\npool_buffers = 128\npool_buffer_size = 2048\n"
        "[demand]\npark_per_code = 4\npark_total = 32\nmax_fetches = 8\ndeadline_ms = 300\nretry_ms = 20\n"
        "request_rate = 100\nchunk_size = 512\n" + TRUST_GUARDED
    )
    d = daemon_from(cfg)
    yield d, peer, node_port
    d.close()
    peer.close()


def drops(d) -> dict:
    return d.node.stats.drops


def test_datagrams_from_unknown_peers_are_dropped_and_counted(node_and_peer):
    d, peer, port = node_and_peer
    stranger = FakePeer(free_udp_ports(1)[0])
    try:
        for _ in range(3):
            stranger.send(b"x" * 100, port)
        assert pump([d], lambda: drops(d)["unknown_peer"] == 3)
        assert d.transport.unknown_peers == 3
    finally:
        stranger.close()
    # the node is still up: a known peer's capsule is taken (parked while its code is asked for)
    peer.send(capsule_bytes(null_code("drop"), b"", d.node.address), port)
    assert pump([d], lambda: d.demand.counters["parked"] == 1)
    assert len(requests_from(peer)) == 1


def test_truncated_random_and_oversized_datagrams(node_and_peer):
    d, peer, port = node_and_peer
    rng = __import__("random").Random(7)
    peer.send(b"\x01\x00", port)  # shorter than a capsule header
    for _ in range(20):
        peer.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), port)
    peer.send(b"\x01" * 5000, port)  # larger than the node's 2048-byte buffers
    assert pump([d], lambda: sum(drops(d).values()) >= 22)
    assert drops(d)["malformed:truncated"] >= 1
    assert drops(d)["datagram_truncated"] == 1
    assert sum(v for k, v in drops(d).items() if k.startswith("malformed")) == 21
    assert d.node.pool.available == d.node.pool.count


def test_a_capsule_larger_than_the_link_mtu_is_refused_with_a_reason(node_and_peer):
    d, peer, port = node_and_peer
    fwd = null_code("forward")
    app = Application(d.node)
    app.install(fwd)
    app.send(fwd, forward_body(peer.address, b"y" * 3000))
    app.send(fwd, forward_body(peer.address, b"y" * 100))
    pump([d], lambda: not d.node.queue)
    stats = d.node.cache.peek(fwd.name).stats
    assert stats.drops["too_big"] == 1 and stats.forwarded == 1
    events = [e for e in d.node.events if getattr(e, "reason", "") == "too_big"]
    assert "link MTU 2048" in events[0].detail
    assert d.statistics()["links"]["neighbors"][str(peer.address)]["largest_capsule"] == 2048
    assert len(peer.recv_all()) == 1


def test_a_udp_port_in_use_is_a_clear_error(tmpdir_short):
    (port,) = free_udp_ports(1)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", port))
    try:
        cfg = tmpdir_short / "n.toml"
        cfg.write_text(f'[node]\nlisten = ["127.0.0.1:{port}"]\napp_socket = "n.sock"\n')
        with pytest.raises(LinkError, match=f"UDP 127.0.0.1:{port} is already in use"):
            daemon_from(cfg)
        assert not (tmpdir_short / "n.sock").exists()
    finally:
        blocker.close()


# ---------------------------------------------------------------------- demand loading by hand
def test_chunked_fetch_asks_again_only_for_missing_chunks(node_and_peer):
    d, peer, port = node_and_peer
    code = big_code()
    pco = code.to_pco()
    peer.send(capsule_bytes(code, b"go", peer.address), port)
    reqs: list = []
    assert pump([d], lambda: bool(reqs.extend(requests_from(peer)) or reqs))
    name, idx, size = reqs[0]
    assert name == code.name and idx == [] and size == 512
    chunks = chunks_of(pco, code.name, peer.address, d.node.address, size)
    assert len(chunks) > 8
    missing = {1, 4, len(chunks) - 1}
    for i, c in enumerate(chunks):
        if i not in missing:
            peer.send(c, port)
    reqs.clear()
    assert pump([d], lambda: bool(reqs.extend(requests_from(peer)) or reqs), timeout=3)
    assert sorted(reqs[0][1]) == sorted(missing)
    for i in missing:
        peer.send(chunks[i], port)
    assert pump([d], lambda: d.node.stats.drops.get("code_drop", 0) == 0 and code.name in d.node.cache)
    pump([d], lambda: not d.node.queue, timeout=1)
    entry = d.node.cache.peek(code.name)
    assert entry.stats.done == 1  # the parked capsule ran
    assert d.demand.counters["fetched"] == 1 and d.demand.parked_total == 0


def test_code_whose_hash_does_not_match_is_discarded_and_counted(node_and_peer):
    d, peer, port = node_and_peer
    code = big_code(1)
    impostor = big_code(2)
    peer.send(capsule_bytes(code, b"go", peer.address), port)
    reqs: list = []
    assert pump([d], lambda: bool(reqs.extend(requests_from(peer)) or reqs))
    size = reqs[0][2]
    for c in chunks_of(impostor.to_pco(), code.name, peer.address, d.node.address, size):
        peer.send(c, port)
    assert pump([d], lambda: d.demand.counters["hash_mismatch"] == 1)
    assert code.name not in d.node.cache and impostor.name not in d.node.cache
    assert d.node.stats.drops["code_hash_mismatch"] == 1
    # asked again, the right answer is accepted
    for c in chunks_of(code.to_pco(), code.name, peer.address, d.node.address, size):
        peer.send(c, port)
    assert pump([d], lambda: code.name in d.node.cache)


def test_a_flood_of_unknown_code_stays_bounded(node_and_peer):
    d, peer, port = node_and_peer
    cfg = d.demand.cfg
    for i in range(400):
        name = os.urandom(32)
        peer.send(capsule_bytes(name, b"%d" % i, peer.address), port)
        if i % 50 == 0:
            d.run_once(0)
    t0 = time.monotonic()
    peak = 0

    def settled() -> bool:
        nonlocal peak
        peak = max(peak, d.demand.parked_total)
        assert len(d.demand.fetches) <= cfg.max_fetches
        return d.node.stats.received >= 400 and not d.demand.fetches

    assert pump([d], settled, timeout=5)
    elapsed = time.monotonic() - t0
    assert peak <= cfg.park_total
    sent = d.demand.counters["requests_sent"]
    # a bounded request rate: the burst plus rate x elapsed time
    assert sent <= cfg.request_rate / 4 + 1 + cfg.request_rate * (elapsed + 0.5), sent
    assert len(requests_from(peer)) == sent
    dropped = d.node.stats.drops
    assert dropped["fetch_limit"] > 0 and dropped["fetch_timeout"] > 0
    assert d.node.pool.available == d.node.pool.count
    assert d.demand.parked_total == 0


def test_unsigned_code_from_the_network_is_refused_by_rule(tmpdir_short):
    node_port, peer_port = free_udp_ports(2)
    peer = FakePeer(peer_port)
    cfg = tmpdir_short / "n.toml"
    cfg.write_text(f'[node]\nlisten = ["127.0.0.1:{node_port}"]\n[[neighbors]]\naddress = "127.0.0.1:{peer_port}"\n')
    d = daemon_from(cfg)
    try:
        code = big_code(1)  # restricted_py: guarded, so signed by default
        peer.send(capsule_bytes(code, b"go", peer.address), node_port)
        reqs: list = []
        assert pump([d], lambda: bool(reqs.extend(requests_from(peer)) or reqs))
        for c in chunks_of(code.to_pco(), code.name, peer.address, d.node.address, reqs[0][2]):
            peer.send(c, node_port)
        assert pump([d], lambda: d.node.stats.drops["trust:network.guarded"] == 1)
        assert code.name not in d.node.cache
    finally:
        d.close()
        peer.close()


def test_serving_code_is_rate_limited(tmpdir_short):
    node_port, peer_port = free_udp_ports(2)
    peer = FakePeer(peer_port)
    cfg = tmpdir_short / "n.toml"
    cfg.write_text(
        f'[node]\nlisten = ["127.0.0.1:{node_port}"]\n[[neighbors]]\naddress = "127.0.0.1:{peer_port}"\n'
        "[demand]\nserve_rate = 20\n"
    )
    d = daemon_from(cfg)
    try:
        code = big_code(4)
        d.node.install(code)
        for _ in range(40):
            peer.send(encode_request(code.name, peer.address, d.node.address, 1024, []), node_port)
        pump([d], lambda: d.node.stats.received == 40 and not d.node.queue)
        got = [Capsule.parse_bytes(x) for x in peer.recv_all()]
        assert all(c.is_system and c.body.tobytes()[0] == CHUNK for c in got)
        assert 0 < len(got) <= 20 / 4 + 1 + 2  # the bucket's burst (plus what refilled meanwhile)
        assert d.demand.counters["serve_rate_limited"] > 0
        index, count, total = CHUNK_FIELDS.unpack_from(got[0].body.tobytes(), SYS_HEADER.size)
        assert total == len(code.to_pco()) and index == 0
        for c in got:
            c.release()
    finally:
        d.close()
        peer.close()
