"""The node's dispatch and outcomes through its public API, driven by the null runtime and a
test-only Python runtime (the queue, code table, services, statistics, cache, soft state, routing
and links have test modules of their own)."""

import struct

import pyfunc_runtime as pf
import pytest

from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import RuntimeFault
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.net.network import ManualClock, Network
from pan_runtime.node import pni
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt, pf])
PORT = 7


def body_to(node, port=PORT, extra=b"x" * 30):
    return node.address.raw + struct.pack(">HH", port, 0) + extra


# a portmapper in the test runtime: bind from applications, lookup for the node
def pm_accept(host, env):
    port = host.seg_get_u16(1, 0)
    if host.env_origin_kind() != 1:
        return pni.VERDICT_DROP
    tok = host.env_origin_link()
    host.state_put(b"port" + port.to_bytes(2, "big"), tok.to_bytes(8, "big"), 0)
    return pni.VERDICT_DONE


def pm_lookup(host, a0, a1):
    buf = bytearray(8)
    n = host.state_get(b"port" + a0.to_bytes(2, "big"), memoryview(buf))
    return int.from_bytes(buf, "big") if n == 8 else pni.NOT_FOUND


pf.FUNCS.update({"pm": pm_accept, "pm.lookup": pm_lookup})
PM = pf.code("pm", exports=["lookup"])
FWD = nullrt.null_code("forward")


@pytest.fixture
def net():
    n = Network.line(3, plugins=PLUGINS)
    for node in n.nodes:
        node.install(PM, pin=True)
        node.use_portmapper(PM)
    n.install(FWD)
    yield n
    for node in n.nodes:
        assert not node.queue
    pools = [node.pool for node in n.nodes]
    n.close()
    assert all(p._closed for p in pools)


def test_forward_across_three_nodes_and_deliver_through_portmapper(net):
    a, b, c = net.nodes
    sink = Application(c)
    sink.bind(PORT)
    src = Application(a)
    for i in range(50):
        src.send(FWD, body_to(c, extra=bytes([i]) * 10))
    net.run()
    got = sink.deliveries()
    assert [d.data[20] for d in got] == list(range(50))
    assert all(d.port == PORT and d.code == FWD.name for d in got)
    mid = b.cache.peek(FWD.name).stats
    assert mid.capsules_in == 50 and mid.forwarded == 50
    assert c.cache.peek(FWD.name).stats.delivered == 50
    for n in net.nodes:
        assert n.pool.available == n.pool.count


def test_unbound_port_is_a_counted_drop(net):
    a, _, c = net.nodes
    Application(a).send(FWD, body_to(c, port=99))
    net.run()
    assert c.cache.peek(FWD.name).stats.drops["no_port"] == 1


def test_hop_limit_stops_loops():
    net = Network.line(3, plugins=PLUGINS)
    net.install(FWD)
    a, b, c = net.nodes
    src = Application(a)
    src.send(FWD, body_to(c), hop_limit=1)
    net.run()
    assert c.stats.drops["hop_limit"] == 1
    net.close()


def test_missing_code_and_malformed_capsules_are_counted():
    net = Network.line(2, plugins=PLUGINS)
    a, b = net.nodes
    app = Application(a)
    app.send(b"\x09" * 32, b"whatever")
    a.inject(b"\x05" + bytes(60), app.link)
    a.inject(b"", app.link)
    net.run()
    assert a.stats.drops == {"no_code": 1, "malformed:version": 1, "malformed:truncated": 1}
    net.close()


def test_faulting_code_is_counted_then_quarantined_and_others_go_on():
    def boom(host, env):
        raise RuntimeFault("kaboom", "code_error")

    pf.FUNCS["boom"] = boom
    BOOM = pf.code("boom")
    clock = ManualClock()
    net = Network.line(2, plugins=PLUGINS, clock=clock)
    net.install(BOOM)
    net.install(FWD)
    a, b = net.nodes
    app = Application(a)
    for _ in range(8):
        app.send(BOOM, b"x" * 20)
    for _ in range(3):
        app.send(FWD, body_to(b, port=1))
    net.run()
    st = a.cache.peek(BOOM.name).stats
    assert st.errors == 5 and st.drops["code_error"] == 5 and st.drops["quarantined"] == 3
    assert a.statistics()["quarantined"] == [BOOM.hex_name]
    assert b.cache.peek(FWD.name).stats.capsules_in == 3
    # after the back-off the code is tried again
    clock.advance(2_000_000_000)
    app.send(BOOM, b"x")
    net.run()
    assert st.errors == 6
    net.close()


def test_runtime_bug_does_not_stop_the_node():
    pf.FUNCS["bug"] = lambda host, env: 1 // 0
    BUG = pf.code("bug")
    with Node(1, plugins=PLUGINS) as n:
        n.install(BUG)
        app = Application(n)
        app.send(BUG, b"x")
        n.process()
        assert n.cache.peek(BUG.name).stats.drops["runtime_error"] == 1


def test_bad_pni_arguments_return_statuses_and_touch_nothing_else():
    seen = {}

    def probe(host, env):
        seen["bad_handle"] = host.seg_length(99)
        seen["oob"] = host.seg_read(1, env.length - 2, memoryview(bytearray(4)))
        seen["neg"] = host.seg_alloc(-1)
        seen["addr"] = host.send_toward(b"short", 1)
        seen["level"] = host.log(3, b"x")
        seen["release_body"] = host.seg_release(1)
        seen["set"] = host.seg_set_u8(1, 0, 300)
        seen["dep"] = host.dep_call(0, b"lookup", 0, 0)
        return pni.VERDICT_DONE

    pf.FUNCS["probe"] = probe
    P = pf.code("probe")
    with Node(1, plugins=PLUGINS) as n:
        n.install(P)
        Application(n).send(P, b"abcdef")
        n.process()
    assert seen == {
        "bad_handle": pni.BAD_HANDLE,
        "oob": pni.OUT_OF_RANGE,
        "neg": pni.BAD_ARGUMENT,
        "addr": pni.OUT_OF_RANGE,
        "level": pni.BAD_ARGUMENT,
        "release_body": pni.BAD_HANDLE,
        "set": pni.BAD_ARGUMENT,
        "dep": pni.NOT_FOUND,
    }


def test_batches_group_queued_capsules_of_one_code_object():
    calls = []

    class Batching(pf._Loaded):
        def accept_batch(self, envs):
            calls.append(len(envs))
            return super().accept_batch(envs)

    pf.FUNCS["b"] = lambda host, env: pni.VERDICT_DONE
    B = pf.code("b")
    with Node(1, plugins=PLUGINS, config=NodeConfig(batch=16)) as n:
        entry = n.install(B)
        entry.loaded.__class__ = Batching
        app = Application(n)
        for _ in range(40):
            app.send(B, b"")
        n.process()
        assert calls == [16, 16, 8]
        assert entry.stats.done == 40


@pytest.mark.parametrize(("batch", "limit", "calls"), [(1, 5, []), (4, 5, [4]), (4, 6, [4, 2]), (4, None, [4, 4, 2])])
def test_process_takes_at_most_limit_capsules_batched_or_not(batch, limit, calls):
    seen = []

    class Batching(pf._Loaded):
        def accept_batch(self, envs):
            seen.append(len(envs))
            return super().accept_batch(envs)

    pf.FUNCS["b"] = lambda host, env: pni.VERDICT_DONE
    B = pf.code("b")
    with Node(1, plugins=PLUGINS, config=NodeConfig(batch=batch)) as n:
        entry = n.install(B)
        entry.loaded.__class__ = Batching
        app = Application(n)
        for _ in range(10):
            app.send(B, b"")
        taken = n.process(limit)
        assert taken == (limit or 10) and len(n.queue) == 10 - taken and entry.stats.done == taken
        assert seen == calls
        n.process()


def test_wire_capsule_helper():
    home = NodeAddress.from_int(1)
    wire = capsule_bytes(FWD, b"body", home)
    assert wire[4:36] == FWD.name and wire[36:52] == home.raw and wire.endswith(b"body")


def test_a_signed_copy_of_installed_code_replaces_the_unsigned_one():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pan_runtime.data.codeobj import CodeObject, Signature
    from pan_runtime.errors import SignatureError

    k1, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with Node("10.0.0.1:7", plugins=PLUGINS) as node:
        node.install(FWD)
        entry = node.cache.peek(FWD.name)
        one = FWD.signed(k1)
        node.install(one)
        assert entry.code is one  # neighbours fetching it from here now get the signature
        node.install(FWD)
        assert entry.code is one  # never fewer signers
        both = one.signed(k2)
        node.install(both)
        assert entry.code is both and len(entry.code.verified_signers()) == 2
        forged = CodeObject(both.manifest, both.payload, (*both.signatures, Signature(bytes(32), bytes(64))))
        with pytest.raises(SignatureError):
            node.install(forged)
        assert entry.code is both
