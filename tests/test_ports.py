"""Application ports (``pan_runtime.node.ports``): a port belongs to the link that bound it, for
as long as that link lives, whatever the portmapper's soft state forgets; every runtime's
reference portmapper."""

from __future__ import annotations

import struct

import pytest

from pan_runtime.cli.protocols import reference_code
from pan_runtime.errors import BudgetExceeded, CodeObjectError, LimitError, OwnershipError
from pan_runtime.net.application import Application
from pan_runtime.net.network import ManualClock
from pan_runtime.node.events import CapsuleDropped
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.testing import BUILTIN_RUNTIMES

PLUGINS = default_plugins()
PORT = 7


@pytest.fixture(params=BUILTIN_RUNTIMES)
def runtime(request):
    return request.param


def node_with(runtime: str, clock=None, **cfg) -> tuple[Node, object, object]:
    """A node with ``runtime``'s reference portmapper and forward code installed."""
    n = Node(1, plugins=PLUGINS, clock=clock or ManualClock(), config=NodeConfig(**cfg))
    pm, fwd = reference_code(runtime, "portmapper", PLUGINS), reference_code(runtime, "forward", PLUGINS)
    n.install(pm)
    n.use_portmapper(pm)
    n.install(fwd)
    return n, pm, fwd


def to_self(node: Node, port: int = PORT, tag: bytes = b"") -> bytes:
    """A forward body that delivers at ``node`` itself, to ``port``."""
    return node.address.raw + port.to_bytes(2, "big") + b"\0\0" + tag


def test_a_port_belongs_to_the_link_that_bound_it_until_it_closes(runtime):
    n, pm, fwd = node_with(runtime)
    with n:
        a, b = Application(n, "a"), Application(n, "b")
        a.bind(PORT)
        with pytest.raises(OwnershipError, match="belongs to another application"):
            b.bind(PORT)
        with pytest.raises(OwnershipError):
            b.unbind(PORT)
        # a portmapper capsule injected by hand is the same request, and refused the same way
        with pytest.raises(OwnershipError):
            b.send(pm, struct.pack(">HBB", PORT, 1, 0))  # portmap_req: unbind
        b.send(fwd, to_self(n, tag=b"one"))
        n.process()
        assert [d.data[-3:] for d in a.deliveries()] == [b"one"] and b.pending == 0
        assert n.ports.info()["refused_owner"] == 3
        a.close()  # the port goes with its link
        assert n.ports.owner(PORT) is None
        b.bind(PORT)
        b.send(fwd, to_self(n, tag=b"two"))
        n.process()
        assert [d.data[-3:] for d in b.deliveries()] == [b"two"]


def test_a_binding_lasts_as_long_as_its_link_not_the_soft_state_ttl(runtime):
    clock = ManualClock()
    n, _pm, fwd = node_with(runtime, clock, state_ttl_ms=1000)
    with n:
        sink, src = Application(n, "sink"), Application(n, "src")
        sink.bind(PORT)
        for i in range(3):
            clock.advance(30 * 1_000_000_000)  # 30 s: the portmapper's record expired long ago
            src.send(fwd, to_self(n, tag=bytes([i])))
            n.process()
        assert [d.data[-1] for d in sink.deliveries()] == [0, 1, 2]
        assert n.ports.info()["rebound"] == 3
        assert not n.cache.peek(fwd.name).stats.drops


def test_another_links_binds_cannot_evict_a_port(runtime):
    # the portmapper keeps 8 records: a link binding 8 ports of its own pushes out the first
    # link's record, which the node restores at the next delivery
    n, _pm, fwd = node_with(runtime, state_entries=8, app_ports=8)
    with n:
        victim, greedy = Application(n, "victim"), Application(n, "greedy")
        victim.bind(PORT)
        for p in range(100, 108):
            greedy.bind(p)
        with pytest.raises(LimitError, match="limits.app_ports"):
            greedy.bind(200)
        greedy.send(fwd, to_self(n, tag=b"mine"))
        n.process()
        assert [d.data[-4:] for d in victim.deliveries()] == [b"mine"]
        assert n.ports.info()["rebound"] == 1 and n.ports.info()["refused_limit"] == 1


def test_a_faulted_lookup_is_counted_on_the_portmapper_before_the_delivery_it_loses(runtime):
    """A lookup the portmapper's budget stops (a loaded machine) is its fault, counted with its
    reason like any other: a delivery lost to it is never a drop without a counted cause."""
    n, pm, fwd = node_with(runtime)
    with n:
        sink, src = Application(n, "sink"), Application(n, "src")
        sink.bind(PORT)
        loaded = n.cache.peek(pm.name).loaded
        real = loaded.call_export
        stops: list[bool] = []  # per lookup: stopped or run

        def lookup(name: str, a0: int, a1: int) -> int:
            if stops.pop(0):
                loaded.needs_reset = True  # as a runtime says after a stop
                raise BudgetExceeded("stopped for its budget")
            return real(name, a0, a1)

        loaded.call_export = lookup
        events: list[object] = []
        n.on_event = events.append
        stops[:] = [True, False]  # stopped once: the node binds the port again and looks again
        src.send(fwd, to_self(n, tag=b"1"))
        n.process()
        stops[:] = [True, True]  # stopped again after the new binding: the delivery is lost
        src.send(fwd, to_self(n, tag=b"2"))
        n.process()
        assert stops == [] and [d.data[-1:] for d in sink.deliveries()] == [b"1"]
        assert n.ports.info()["rebound"] == 2
        stats = n.cache.peek(pm.name).stats
        assert stats.errors == 3 and stats.drops == {"budget": 3}
        assert not loaded.needs_reset  # reset after each stop, before it ran again
        assert n.cache.peek(fwd.name).stats.drops == {"portmap_lost": 1}
        drops = [(e.code, e.reason) for e in events if isinstance(e, CapsuleDropped)]
        assert drops == [(pm.hex_name, "budget")] * 3 + [(fwd.hex_name, "portmap_lost")]


def test_root_takes_a_port_only_when_it_says_force():
    n, _pm, fwd = node_with("restricted_py")
    with n:
        owner = n.attach("owner", uid=1000, pid=4242)
        user = n.attach("user", uid=1001, pid=4243)
        root = n.attach("root", uid=0, pid=4244)
        n.bind_port(owner, PORT)
        with pytest.raises(OwnershipError):
            n.bind_port(user, PORT, force=True)  # force means nothing from a non-root peer
        with pytest.raises(OwnershipError, match="without force"):
            n.bind_port(root, PORT)  # root too must ask for it
        n.bind_port(root, PORT, force=True)
        assert n.ports.owner(PORT) is root and n.ports.held(owner) == frozenset()
        n.inject(_capsule(fwd, n, to_self(n, tag=b"r")), user)
        n.process()
        assert [d.data[-1:] for d in root.inbox] == [b"r"] and not owner.inbox
        assert n.ports.info()["taken"] == 1


def _capsule(code, node, body: bytes) -> bytes:
    from pan_runtime.net.application import capsule_bytes

    return capsule_bytes(code, body, node.address)


def test_the_portmapper_other_links_ports_go_through_is_not_replaced_or_uninstalled():
    n, pm, fwd = node_with("restricted_py")
    other = reference_code("wasm", "portmapper", PLUGINS)
    with n:
        n.install(other)
        owner = n.attach("owner", uid=1000)
        user = n.attach("user", uid=1001)
        root = n.attach("root", uid=0)
        n.bind_port(owner, PORT)
        with pytest.raises(OwnershipError, match="carries ports of 1 other"):
            n.use_portmapper(other, by=user)
        with pytest.raises(OwnershipError):
            n.uninstall(pm, by=user)
        assert n.portmapper == pm.name
        n.use_portmapper(other, by=owner)  # only its own ports go through it: its choice
        assert n.portmapper == other.name and not n.cache.peek(pm.name).pinned
        n.use_portmapper(pm, by=root, force=True)
        # the owner's binding carries over to each new portmapper
        n.inject(_capsule(fwd, n, to_self(n, tag=b"k")), user)
        n.process()
        assert [d.data[-1:] for d in owner.inbox] == [b"k"]


def test_a_port_request_without_a_portmapper_or_out_of_range_is_refused():
    with Node(1, plugins=PLUGINS) as n:
        app = Application(n)
        with pytest.raises(CodeObjectError, match="no portmapper"):
            app.bind(PORT)
    n, _pm, _fwd = node_with("restricted_py")
    with n:
        with pytest.raises(Exception, match="outside 0..65535"):
            Application(n).bind(70000)
