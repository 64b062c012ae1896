"""Demand loading (``pan_runtime.net.demand``) counts a system capsule it cannot route apart from
its own requests and replies it cannot send: ``system_no_route`` is traffic it was asked to
route, ``system_no_route_own`` its own."""

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import FLAG_SYSTEM, encode_header
from pan_runtime.net.demand import DemandLoader, encode_chunk
from pan_runtime.node.node import Node
from pan_runtime.plugin.plugins import default_plugins

NOWHERE = NodeAddress.parse("10.9.9.9:9")
ELSEWHERE = NodeAddress.parse("10.8.8.8:8")


def test_routed_and_own_system_capsules_without_a_route_are_counted_apart():
    with Node("127.0.0.1:7001", plugins=default_plugins()) as n:
        loader = DemandLoader(n)
        # a capsule whose code is missing: the node asks its home, to which no route leads
        missing = encode_header(b"\x42" * 32, NOWHERE) + b"body"
        n.receive_buffers([memoryview(missing)], None)
        # a code chunk passing through toward a node no route leads to
        chunk = encode_chunk(b"\x43" * 32, NOWHERE, ELSEWHERE, 0, 1, 4, b"code")
        assert chunk[1] & FLAG_SYSTEM
        n.receive_buffers([memoryview(chunk)], NOWHERE)
        n.process()
        drops = n.stats.drops
        assert drops["system_no_route_own"] == 1
        assert drops["system_no_route"] == 1
        loader.close()  # the parked capsule goes back to the pool
