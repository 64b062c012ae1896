"""The node's side of the fast path's door: the snapshot, its generation, and ``Node.hand_over``."""

from __future__ import annotations

from pan_runtime.data.capsule import encode_header
from pan_runtime.errors import RuntimeFault
from pan_runtime.net.network import Network
from pan_runtime.node import pni
from pan_runtime.node.snapshot import generation, queued, snapshot
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt])
FWD = nullrt.null_code("forward")


def _line():
    net = Network.line(3, plugins=PLUGINS)
    net.install(FWD)
    return net


def test_the_generation_moves_with_routes_neighbours_and_code():
    net = _line()
    try:
        a, b, c = net.nodes
        seen = [generation(b)]
        b.add_route(c.address, c.address, 2)
        b.add_neighbor(c.address, b.neighbors[c.address])  # the same neighbour, a link replaced
        b.routes.default = c.address
        b.uninstall(FWD)
        seen.append(generation(b))
        assert seen[1] >= seen[0] + 4
        snap = snapshot(b)
        assert snap.generation == generation(b) and snap.address == b.address.raw
        assert snap.default == c.address and dict(snap.neighbors)[c.address] is b.neighbors[c.address]
        assert (c.address.raw, c.address) in snap.routes and snap.codes == ()
        assert snap.hop_limit == b.config.hop_limit and snap.copy_on_send is False
    finally:
        net.close()


def _wire(node, body: bytes, hop: int):
    seg = node.pool.allocate(52 + len(body))
    seg.view()[:] = encode_header(FWD.name, node.address, hop) + body
    return seg


def test_hand_over_runs_finishes_or_holds_a_capsule_and_takes_one_hop():
    net = _line()
    try:
        a, b, c = net.nodes
        link = b.neighbors[a.address]
        entry = b.cache.peek(FWD.name)
        body = c.address.raw + b"\0\7\0\0" + b"x"
        sent = []
        out = b.neighbors[c.address]
        real_send = out.send
        out.send = lambda buffers, hop: sent.append(bytes(buffers[0])) or real_send(buffers, hop)  # type: ignore[method-assign]
        # finished with the verdict a fast path's run gave
        assert b.hand_over(entry, _wire(b, body, 5), link, a.address, pni.VERDICT_FORWARD, 10) is False
        # run here (no run yet)
        b.hand_over(entry, _wire(b, body, 5), link, a.address)
        # held while the code runs, finished with the run's result later
        assert b.hand_over(entry, _wire(b, body, 5), link, a.address, running=True) is False
        assert b.host.current is not b.host.unbuilt and b.host.current.capsule is not None
        b.hand_over(entry, None, link, a.address, RuntimeFault("boom"), 10)
        assert b.host.current is b.host.unbuilt  # no environment is current between runs
        assert [s[2] for s in sent] == [4, 4]  # one hop taken, once, on both sends
        assert entry.stats.capsules_in == 3 and entry.stats.forwarded == 2 and entry.stats.errors == 1
        assert b.stats.received == 3 and not queued(b)
        net.run()
        assert b.pool.whole
    finally:
        net.close()
