"""The services a node offers its PNI host (``pan_runtime.node.services``): the one
route-to-link lookup, sends, deliveries through tokens, routes and MTUs."""

import pyfunc_runtime as pf

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node import pni
from pan_runtime.node.links import NetLink
from pan_runtime.node.node import Node
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt, pf])
FAR = NodeAddress.from_int(99)
HOP = NodeAddress.from_int(2)


class Wire(NetLink):
    """A link that keeps what it is given (or loses it)."""

    def __init__(self, mtu: int = 1500, up: bool = True):
        self.mtu, self.up, self.sent = mtu, up, []

    def send(self, buffers, next_hop):
        self.sent.append((b"".join(bytes(b) for b in buffers), next_hop))
        return self.up


def test_next_hop_tells_no_route_from_no_link_from_a_link():
    with Node(1, plugins=PLUGINS) as n:
        s = n.services
        assert s.next_hop(FAR.raw) is None
        n.add_route(FAR, HOP)
        assert s.next_hop(FAR.raw) == (HOP, None)
        wire = Wire()
        n.add_neighbor(HOP, wire)
        assert s.next_hop(FAR.raw) == (HOP, wire)
        assert s.mtu_toward(FAR) == 1500 - HEADER_SIZE
        assert s.mtu_toward(NodeAddress.from_int(98)) == pni.NO_ROUTE
        assert s.neighbor_addresses() == [HOP] and s.route_lookup(FAR) == (HOP, 1)


def test_route_set_needs_a_neighbour_and_never_routes_the_node_itself():
    pf.FUNCS["r"] = lambda host, env: pni.VERDICT_DONE
    R = pf.code("r")
    with Node(1, plugins=PLUGINS) as n:
        s = n.services
        assert s.route_set(R, FAR, HOP, 1) == pni.NOT_FOUND
        n.add_neighbor(HOP, Wire())
        assert s.route_set(R, n.address, HOP, 1) == pni.DENIED
        assert s.route_set(R, FAR, HOP, 4) == pni.OK and n.routes.lookup(FAR).learned_by == R.name


def test_sends_answer_with_statuses_and_count_what_left():
    seen = {}

    def sender(host, env):
        body = host.seg_alloc(64)
        seen["no_route"] = host.send_toward(FAR.raw, body)
        seen["not_neighbor"] = host.send_neighbor(FAR.raw, body)
        seen["too_big"] = host.send_neighbor(HOP.raw, host.seg_alloc(2000))
        seen["toward"] = host.send_toward(HOP.raw, body)
        seen["neighbor"] = host.send_neighbor(HOP.raw, body)
        return pni.VERDICT_DONE

    pf.FUNCS["sender"] = sender
    SENDER = pf.code("sender")
    with Node(1, plugins=PLUGINS) as n:
        wire = Wire(mtu=1500)
        n.add_neighbor(HOP, wire)
        n.install(SENDER)
        Application(n).send(SENDER, b"")
        n.process()
        assert seen == {"no_route": pni.NO_ROUTE, "not_neighbor": pni.NOT_FOUND, "too_big": pni.TOO_BIG, "toward": pni.OK, "neighbor": pni.OK}
        assert [hop for _, hop in wire.sent] == [HOP, HOP] and n.stats.sent == 2
        assert n.cache.peek(SENDER.name).stats.sent == 2


def test_sends_and_delivery_through_the_host_with_tokens_only_the_code_can_use():
    """A code object that stores a link in soft state and later delivers to it."""

    def relay(host, env):
        if host.env_origin_kind() == 1:
            tok = host.env_origin_link()
            assert host.state_put(b"owner", tok.to_bytes(8, "big"), 0) == pni.OK
            h = host.seg_alloc(4)
            host.seg_write(h, 0, b"ping")
            dest = bytearray(16)
            host.neighbor_address(0, memoryview(dest))
            return host.send_toward(dest, h) or pni.VERDICT_DONE
        buf = bytearray(8)
        if host.state_get(b"owner", memoryview(buf)) == 8:
            return host.deliver(int.from_bytes(buf, "big"), 5, 1) or pni.VERDICT_DONE
        return pni.VERDICT_DROP

    def echo(host, env):
        prev = bytearray(16)
        assert host.env_prev_hop(memoryview(prev)) == pni.OK
        return host.send_toward(prev, 1) or pni.VERDICT_DONE

    # the same code object must run on both nodes; branch on the node address
    def both(host, env):
        me = bytearray(16)
        host.node_address(memoryview(me))
        return (relay if me[-1] == 1 else echo)(host, env)

    pf.FUNCS["both"] = both
    BOTH = pf.code("both")
    net = Network.line(2, plugins=PLUGINS)
    net.install(BOTH)
    a, _ = net.nodes
    app = Application(a)
    app.send(BOTH, b"")
    net.run()
    d = app.receive()
    assert d is not None and d.port == 5 and d.data == b"ping"
    assert a.cache.peek(BOTH.name).stats.delivered == 1
    # a forged token delivers nothing
    pf.FUNCS["forge"] = lambda host, env: host.deliver(12345, 5, 1)
    FORGE = pf.code("forge")
    a.install(FORGE)
    app.send(FORGE, b"")
    net.run()
    assert app.receive() is None
    assert a.cache.peek(FORGE.name).stats.drops["status:DENIED"] == 1
    # tokens die with their link and with their code object
    tokens = a.services._link_tokens
    assert any(key[0] == BOTH.name for key in tokens)
    a.uninstall(BOTH)
    assert not any(key[0] == BOTH.name for key in tokens)
    app.close()
    assert a.services.resolve_token(BOTH.name, 12345) is None
    net.close()


def test_a_dependencys_fault_is_counted_against_it_and_the_caller_sees_not_found():
    def bad(host, a0, a1):
        from pan_runtime.errors import FaultReason, RuntimeFault

        raise RuntimeFault("lib broke", FaultReason.CODE_ERROR)

    pf.FUNCS.update({"flib": lambda host, env: 0, "flib.f": bad})
    LIB = pf.code("flib", exports=["f"])
    pf.FUNCS["caller"] = lambda host, env: pni.VERDICT_DONE if host.dep_call(0, b"f", 0, 0) == pni.NOT_FOUND else 0
    CALLER = pf.code("caller", deps=[LIB])
    with Node(1, plugins=PLUGINS) as n:
        n.install(LIB)
        n.install(CALLER)
        Application(n).send(CALLER, b"")
        n.process()
        assert n.cache.peek(CALLER.name).stats.done == 1
        lib = n.cache.peek(LIB.name).stats
        assert lib.errors == 1 and lib.drops["code_error"] == 1
