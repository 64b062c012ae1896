"""The routing table (``pan_runtime.node.routing``): static routes win, dynamic ones are
bounded, every change bumps the generation."""

from pan_runtime.data.address import NodeAddress
from pan_runtime.node.routing import RoutingTable

A, B, C, D = (NodeAddress.from_int(i) for i in (1, 2, 3, 4))


def test_static_routes_are_found_by_address_and_by_wire_bytes():
    rt = RoutingTable()
    rt.add_static(C, B, 3)
    assert rt.lookup(C).next_hop == B and rt.lookup(C).metric == 3
    assert rt.lookup_raw(C.raw) is rt.lookup(C)
    assert rt.lookup(D) is None and rt.lookup_raw(D.raw) is None


def test_default_route_answers_for_unknown_destinations():
    rt = RoutingTable()
    rt.default = B
    assert rt.lookup(D).next_hop == B and rt.lookup_raw(D.raw).next_hop == B


def test_dynamic_routes_never_override_static_ones_and_are_bounded():
    rt = RoutingTable(max_dynamic=1)
    rt.add_static(C, B)
    assert not rt.set_dynamic(C, A, 1)
    assert rt.set_dynamic(D, A, 2, b"code")
    assert not rt.set_dynamic(B, A, 1)  # a second dynamic route: over the bound
    assert rt.lookup(D).learned_by == b"code" and len(rt) == 2


def test_changes_bump_the_generation_and_refreshes_do_not():
    rt = RoutingTable()
    g = rt.generation
    rt.set_dynamic(D, A, 2)
    assert rt.generation == g + 1
    rt.set_dynamic(D, A, 2)
    assert rt.generation == g + 1
    rt.remove(D)
    assert rt.lookup(D) is None and rt.generation == g + 2
