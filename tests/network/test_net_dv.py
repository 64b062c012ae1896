"""Routing as mobile code: protocols/dv.py spreads by demand loading and fills every table;
the dv code of every runtime withdraws routes that are not re-advertised and reconverges."""

from __future__ import annotations

from pathlib import Path

import pytest

from pan_runtime.lab.dvcode import DV_RUNTIMES, dv_code
from pan_runtime.net.application import Application
from pan_runtime.net.demand import DemandLoader
from pan_runtime.net.network import Network
from pan_runtime.node.trust import TrustPolicy
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins

DV = Path(__file__).resolve().parents[2] / "protocols" / "dv.py"


def build_dv():
    builder = default_plugins().builders.find("restricted_py", ".py")
    return builder.build(BuildRequest([DV], "restricted_py", [], [], "dv"))


def test_distance_vector_fills_every_routing_table():
    trust = TrustPolicy.from_config({"network.guarded": "any"})
    net = Network(trust=trust)
    with net:
        nodes = [net.add_node() for _ in range(5)]
        # a line n1-n2-n3-n4 plus n5 hanging off n3; only neighbour routes to start with
        for a, b in ((0, 1), (1, 2), (2, 3), (2, 4)):
            net.connect(nodes[a], nodes[b])
        loaders = [DemandLoader(n) for n in nodes]
        assert nodes[0].routes.lookup(nodes[3].address) is None
        dv = build_dv()
        Application(nodes[0]).install(dv)
        Application(nodes[0]).send(dv, b"\x00\x00\x00\x00")
        net.run(timeout_s=20)
        for i, n in enumerate(nodes):
            assert dv.name in n.cache, f"n{i + 1} never got the dv code"
            for j, other in enumerate(nodes):
                if i != j:
                    assert n.routes.lookup(other.address) is not None, f"n{i + 1} has no route to n{j + 1}"
        r = nodes[0].routes.lookup(nodes[3].address)
        assert r.next_hop == nodes[1].address and r.metric == 3 and not r.static
        r = nodes[3].routes.lookup(nodes[4].address)
        assert r.next_hop == nodes[2].address and r.metric == 2
        assert sum(ld.counters["fetched"] for ld in loaders) == 4
        # static routes win over learned ones
        assert nodes[1].routes.lookup(nodes[0].address).static


def dv_table(node, code) -> dict[bytes, tuple[bytes, int]]:
    """The dv code's own table on ``node``: destination -> (next hop, metric), reachable only."""
    raw = node.services.soft_state(code).get(b"table")
    raw = raw.tobytes() if hasattr(raw, "tobytes") else bytes(raw or b"")
    rows = (raw[o : o + 40] for o in range(0, len(raw), 40))
    return {r[:16]: (r[16:32], int.from_bytes(r[32:34], "big")) for r in rows if int.from_bytes(r[32:34], "big") < 16}


@pytest.mark.parametrize("runtime", DV_RUNTIMES)
def test_dv_withdraws_a_route_not_readvertised_and_reconverges_when_the_link_returns(runtime: str):
    """A ring of five, every node ticked once per period: after the link n1-n2 goes silent, the
    routes over it expire within EXPIRE + 1 ticks and the ring routes the long way round; when
    the link carries advertisements again, one tick restores the short routes. The same for
    the C (native, wasm), Java and Python sources of the protocol."""
    trust = TrustPolicy.from_config({"network.none": "any", "network.guarded": "any"})
    with Network(trust=trust) as net:
        nodes = [net.add_node() for _ in range(5)]
        for a, b in ((0, 1), (1, 2), (2, 3), (3, 4), (4, 0)):
            net.connect(nodes[a], nodes[b])
        dv = dv_code(runtime)
        net.install(dv, pin=True)
        apps = [Application(n) for n in nodes]

        def tick() -> None:
            for app in apps:
                app.send(dv, b"\x00\x00\x00\x00")
            net.run(timeout_s=120)

        addr = [n.address.raw for n in nodes]
        tick()
        assert dv_table(nodes[0], dv) == {addr[1]: (addr[1], 1), addr[2]: (addr[1], 2), addr[3]: (addr[4], 2), addr[4]: (addr[4], 1)}
        # the learned routes are the node's too (its neighbours keep their static routes)
        assert nodes[0].routes.lookup(nodes[2].address).next_hop == nodes[1].address
        down = [ln for ln in net.links if {ln.src, ln.dst} == {nodes[0], nodes[1]}]
        for ln in down:
            ln.loss = 1.0
        ticks = 0
        while dv_table(nodes[0], dv).get(addr[1]) != (addr[4], 4):
            assert ticks <= 4, dv_table(nodes[0], dv)  # EXPIRE (3) ticks unconfirmed, withdrawn on the next
            tick()
            ticks += 1
        assert ticks == 4
        assert dv_table(nodes[0], dv) == {addr[1]: (addr[4], 4), addr[2]: (addr[4], 3), addr[3]: (addr[4], 2), addr[4]: (addr[4], 1)}
        assert dv_table(nodes[1], dv)[addr[0]] == (addr[2], 4)
        assert nodes[0].routes.lookup(nodes[2].address).next_hop == nodes[4].address
        for ln in down:
            ln.loss = 0.0
        tick()
        assert dv_table(nodes[0], dv) == {addr[1]: (addr[1], 1), addr[2]: (addr[1], 2), addr[3]: (addr[4], 2), addr[4]: (addr[4], 1)}
        assert dv_table(nodes[1], dv)[addr[0]] == (addr[0], 1)
