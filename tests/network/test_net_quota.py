"""Code that hoards receive buffers, against a real UDP node (``pan_runtime.node.quota``).

A neighbour sends a node ten times its pool size of capsules whose code (the ``hoard``
conformance case, built for each runtime) keeps every body in soft state, then capsules
asking it to send copies to its own node. Soft state keeps copies, not receive buffers, and
queued copies count against the code object's quota: the pool is whole afterwards, the
hoarding code got ``NO_SPACE`` (counted as refused), and a ping of other code gets through.
"""

from __future__ import annotations

import struct
import tomllib
from pathlib import Path

import pytest
from nethelpers import daemon_from, free_udp_ports, pump, remove_tree, short_dir
from test_net_udp import FakePeer

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.daemon import prometheus_text
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import PingHdr
from pan_runtime.resources import cases_dir
from pan_runtime.testing import BUILTIN_RUNTIMES, build_case

CASE = cases_dir() / "hoard"
EXPECTED = tomllib.loads((CASE / "expected.toml").read_text())
PLUGINS = default_plugins()
PORT = 7


@pytest.fixture
def tmpdir_short():
    d = short_dir()
    yield d
    remove_tree(d)


def _node(tmpdir: Path, peer: FakePeer, fast: bool):
    port = free_udp_ports(1)[0]
    conf = tmpdir / "middle.toml"
    conf.write_text(
        "\n".join(
            [
                "[node]",
                'name = "middle"',
                f'listen = ["127.0.0.1:{port}"]',
                "[[neighbors]]",
                f'address = "{peer.address}"',
                "[limits]",
                f"pool_buffers = {EXPECTED['pool_buffers']}",
                f"pool_reserve = {EXPECTED['pool_reserve']}",
                f"code_buffers = {EXPECTED['code_buffers']}",
                f"fast_path = {'true' if fast else 'false'}",
                # a budget no load reaches: a capsule stopped for time on a busy machine would
                # never be done, and this test is about buffers, not time
                "budget_time_ms = 10000",
                "[demand]",
                "park_total = 8",
                "park_per_code = 8",
            ]
        )
        + "\n"
    )
    return daemon_from(conf), port


@pytest.mark.parametrize(
    ("runtime", "fast"),
    [(r, True) for r in BUILTIN_RUNTIMES] + [("restricted_py", False)],
    ids=[f"{r}-fast" for r in BUILTIN_RUNTIMES] + ["restricted_py-python"],
)
def test_hoarding_code_neither_empties_the_pool_nor_stops_a_ping(tmpdir_short, runtime, fast):
    peer = FakePeer(free_udp_ports(1)[0])
    d, port = _node(tmpdir_short, peer, fast)
    try:
        node = d.node
        hoard = build_case(CASE, runtime, PLUGINS)
        ping = reference_code(runtime, "ping", PLUGINS)
        entry = node.install(hoard)  # local installs: trusted, native included
        node.install(ping)
        pool = node.pool
        assert pool.count == EXPECTED["pool_buffers"]
        kept = EXPECTED["rounds"] * pool.count
        sent = 0
        while sent < kept:  # in bursts the socket buffer holds, each one read before the next
            for seq in range(sent, min(kept, sent + 32)):
                peer.send(capsule_bytes(hoard, struct.pack(">IB", seq, 0) + b"kept body", peer.address), port)
                sent += 1
            assert pump([d], lambda n=sent: d.statistics()["received"] == n), d.statistics()
        assert pump([d], lambda: entry.stats.done == kept), d.statistics()
        assert len(entry.state) == kept and entry.state.get(b"h" + struct.pack(">I", 7)).tobytes()[5:] == b"kept body"
        assert pool.available == pool.count and node.stats.drops["pool_exhausted"] == 0

        senders, copies = EXPECTED["senders"], EXPECTED["copies"]
        for seq in range(senders):  # each asks for more copies than its quota lets wait at once
            peer.send(capsule_bytes(hoard, struct.pack(">IB", kept + seq, copies), peer.address), port)
        assert pump([d], lambda: entry.stats.drops["status:NO_SPACE"] == senders), d.statistics()
        stats = d.statistics()
        assert stats["refused"] == {"code_buffers": senders}
        assert stats["code"][hoard.hex_name]["refused"] == {"code_buffers": senders}
        assert f'pan_refused_total{{reason="code_buffers"}} {senders}' in prometheus_text(stats)
        assert f"refused to code: code_buffers={senders}" in format_stats(stats)
        assert pump([d], lambda: pool.available == pool.count and not node.queue)
        assert entry.buffers.held == 0 and entry.stats.done == kept + senders * EXPECTED["code_buffers"]

        # other code still gets buffers: a ping from the neighbour comes back bounced
        hdr = PingHdr(dest=node.address.raw, port=PORT, phase=0, src=peer.address.raw, seq=77)
        peer.send(capsule_bytes(ping, hdr.pack() + bytes(32), peer.address), port)
        got: list[bytes] = []
        assert pump([d], lambda: bool(got.extend(peer.recv_all()) or got)), d.statistics()
        back = PingHdr.unpack(got[0][-(PingHdr.SIZE + 32) :])
        assert (back.phase, back.seq, back.dest, back.src) == (1, 77, peer.address.raw, node.address.raw)
        assert pool.available == pool.count and node.stats.drops["pool_exhausted"] == 0
    finally:
        d.close()
        peer.close()
