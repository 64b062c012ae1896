"""Routing as mobile code: protocols/dv.py spreads by demand loading and fills every table."""

from __future__ import annotations

from pathlib import Path

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
