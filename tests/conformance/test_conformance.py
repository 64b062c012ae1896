"""One conformance suite, every runtime: the same scenarios and the same expected results.

Reference protocols come from ``protocols/``; the other cases from ``cases/<case>/`` (one
source per language and an ``expected.toml``). A case that needs a sandbox does not run
under a runtime with isolation ``none`` (``native``): a fault in unsandboxed code takes the
process down, which is why the trust policy guards that runtime instead.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.application import Application
from pan_runtime.net.network import ManualClock, Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.plugin.runtime import Isolation
from pan_runtime.protocol_headers import FloodHdr, PingHdr
from pan_runtime.testing import BUILTIN_RUNTIMES, build_case

CASES = Path(__file__).parent / "cases"
PLUGINS = default_plugins()
PORT = 7
SANDBOX_EXEMPT = {"native": "isolation none: a hostile loop or trap in native code is not containable in-process"}


def expected(case: str) -> dict:
    return tomllib.loads((CASES / case / "expected.toml").read_text())


@pytest.fixture(params=BUILTIN_RUNTIMES)
def runtime(request):
    return request.param


def runtimes_for(case: str) -> list:
    exp = expected(case)
    out = []
    for r in BUILTIN_RUNTIMES:
        if exp.get("needs_sandbox") and r in SANDBOX_EXEMPT:
            continue
        out.append(r)
    return out


def ref(runtime, protocol):
    return reference_code(runtime, protocol, PLUGINS)


def line(runtime, n=3, **cfg):
    net = Network.line(n, plugins=PLUGINS, config=NodeConfig(**cfg) if cfg else None)
    pm = ref(runtime, "portmapper")
    net.install(pm, pin=True)
    for node in net.nodes:
        node.use_portmapper(pm)
    return net


def fwd_body(dest, port=PORT, payload=b""):
    return dest.raw + port.to_bytes(2, "big") + b"\0\0" + payload


def test_sandbox_exemptions_only_cover_unsandboxed_runtimes():
    for name in SANDBOX_EXEMPT:
        assert PLUGINS.runtimes.get(name).isolation is Isolation.NONE


# ---------------------------------------------------------------- reference protocols
def test_forward_delivers_through_the_portmapper(runtime):
    with line(runtime) as net:
        a, b, c = net.nodes
        code = ref(runtime, "forward")
        net.install(code)
        sink = Application(c)
        sink.bind(PORT)
        src = Application(a)
        for i in range(20):
            src.send(code, fwd_body(c.address, payload=bytes([i]) * 100))
        net.run()
        got = sink.deliveries()
        assert [d.data[20] for d in got] == list(range(20))
        assert len(got[0].data) == 120
        assert b.cache.peek(code.name).stats.forwarded == 20
        for n in net.nodes:
            assert n.pool.whole


def test_ping_round_trip_marks_the_receiver(runtime):
    with line(runtime) as net:
        a, b, c = net.nodes
        code = ref(runtime, "ping")
        net.install(code)
        app = Application(a)
        app.bind(PORT)
        for seq in range(5):
            hdr = PingHdr(dest=c.address.raw, port=PORT, phase=0, seq=seq)
            app.send(code, hdr.pack() + bytes(64))
        net.run()
        back = [PingHdr.unpack(d.data) for d in app.deliveries()]
        assert [h.seq for h in back] == list(range(5))
        for h in back:
            assert h.phase == 1 and h.src == c.address.raw and h.dest == a.address.raw
            assert 0 < h.sent_ns <= h.bounced_ns
        assert c.cache.peek(code.name).state.get(b"pinged") == (5).to_bytes(8, "big")
        short = Application(a)
        short.send(code, b"tiny")
        net.run()
        assert a.cache.peek(code.name).stats.drops["code_drop"] == 1


def test_flood_counts_and_reports(runtime):
    with line(runtime) as net:
        a, b, c = net.nodes
        code = ref(runtime, "flood")
        net.install(code)
        app = Application(a)
        app.bind(PORT)
        start = FloodHdr(dest=c.address.raw, port=PORT, kind=0, flow=3, report_every=10)
        app.send(code, start.pack())
        data = FloodHdr(dest=c.address.raw, port=PORT, kind=1, flow=3, report_every=10)
        for i in range(25):
            data.seq = i
            app.send(code, data.pack() + bytes(32))
        net.run()
        reports = [FloodHdr.unpack(d.data) for d in app.deliveries()]
        assert [r.count for r in reports] == [10, 20]
        r = reports[-1]
        assert r.kind == 2 and r.flow == 3 and r.src == c.address.raw and r.dest == a.address.raw
        assert r.bytes == 20 * (FloodHdr.SIZE + 32)
        assert 0 <= r.elapsed_ns < 60 * 10**9  # a real duration, not garbage from the header
        assert c.cache.peek(code.name).stats.done == 26
        # what the code sent through the PNI is reported per call and summed per code object
        assert c.cache.peek(code.name).stats.sent_bytes == 2 * FloodHdr.SIZE
        if runtime == "restricted_py":
            assert c.cache.peek(code.name).stats.steps > 0
        assert b.cache.peek(code.name).stats.forwarded == 26 + 2


def test_portmapper_binds_only_for_applications_and_unbinds(runtime):
    with line(runtime, n=2) as net:
        a, b = net.nodes
        code = ref(runtime, "forward")
        net.install(code)
        sink = Application(b)
        sink.bind(PORT)
        src = Application(a)
        src.send(code, fwd_body(b.address))
        net.run()
        assert sink.pending == 1
        sink.unbind(PORT)
        src.send(code, fwd_body(b.address))
        net.run()
        assert b.cache.peek(code.name).stats.drops["no_port"] == 1
        # a bind that arrives over the network (not from an application) is refused
        pm = b.portmapper
        src.send(pm, b"\x00\x07\x00\x00")  # runs at a (application origin) and binds there, not at b
        net.run()
        assert a.cache.peek(pm).stats.done >= 1


# ---------------------------------------------------------------- cases
@pytest.mark.parametrize("runtime", runtimes_for("softstate"))
def test_soft_state_is_bounded_and_expires(runtime):
    exp = expected("softstate")
    code = build_case(CASES / "softstate", runtime, PLUGINS)
    clock = ManualClock()
    with Node(1, plugins=PLUGINS, clock=clock, config=NodeConfig(state_entries=exp["state_entries"])) as n:
        entry = n.install(code)
        app = Application(n)
        outcomes = []
        for step in exp["steps"]:
            op, key = step[0], step[1]
            if len(step) > 3 and step[3] == "advance":
                clock.advance(exp["advance_ms"] * 1_000_000)
            before = (entry.stats.done, entry.stats.drops["code_drop"])
            app.send(code, bytes([op, 0, 0, 0]) + key.to_bytes(4, "big"))
            n.process()
            after = (entry.stats.done, entry.stats.drops["code_drop"])
            outcomes.append("done" if after[0] > before[0] else "drop" if after[1] > before[1] else "other")
        assert outcomes == [s[2] for s in exp["steps"]]
        assert entry.state.evictions >= 2


@pytest.mark.parametrize("runtime", runtimes_for("dep"))
def test_dependency_calls_reach_only_exports(runtime):
    exp = expected("dep")
    lib = build_case(CASES / "dep", runtime, PLUGINS, stem="lib", exports=tuple(exp["lib_exports"]))
    user = build_case(CASES / "dep", runtime, PLUGINS, deps=(lib,))
    with Node(1, plugins=PLUGINS) as n:
        n.install(lib)
        entry = n.install(user)
        app = Application(n)
        for _ in range(exp["capsules"]):
            app.send(user, b"x")
        n.process()
        assert entry.stats.done == exp["done"], entry.stats.as_dict()


def _node_still_forwards(n: Node) -> None:
    fwd = nullrt.null_code("forward")
    n.install(fwd)
    app = Application(n)
    app.send(fwd, fwd_body(n.address, port=4242))
    n.process()
    assert n.cache.peek(fwd.name).stats.drops["no_port"] == 1  # ran to the delivery step


@pytest.mark.parametrize("runtime", runtimes_for("spin"))
def test_endless_accept_is_stopped_by_the_budget(runtime):
    exp = expected("spin")
    code = build_case(CASES / "spin", runtime, PLUGINS)
    plugins = PLUGINS
    cfg = NodeConfig(budget=Budget(time_ms=100, steps=50_000, fuel=5_000_000), breaker_threshold=100)
    with Node(1, plugins=plugins, config=cfg) as n:
        entry = n.install(code)
        app = Application(n)
        for _ in range(exp["capsules"]):
            app.send(code, b"x" * 8)
        n.process()
        assert entry.stats.drops[exp["reason"]] == exp["capsules"], entry.stats.as_dict()
        _node_still_forwards(n)


@pytest.mark.parametrize("runtime", runtimes_for("raise"))
def test_exception_in_accept_is_a_counted_error(runtime):
    exp = expected("raise")
    code = build_case(CASES / "raise", runtime, PLUGINS)
    with Node(1, plugins=PLUGINS) as n:
        entry = n.install(code)
        app = Application(n)
        for _ in range(exp["capsules"]):
            app.send(code, b"x")
        n.process()
        assert entry.stats.errors == exp["capsules"], entry.stats.as_dict()
        assert entry.stats.dropped == exp["capsules"]
        _node_still_forwards(n)


@pytest.mark.parametrize("runtime", runtimes_for("badargs"))
def test_bad_pni_arguments_are_statuses_inside_the_code(runtime):
    exp = expected("badargs")
    code = build_case(CASES / "badargs", runtime, PLUGINS)
    with Node(1, plugins=PLUGINS) as n:
        entry = n.install(code)
        app = Application(n)
        for _ in range(exp["capsules"]):
            app.send(code, b"0123456789")
        n.process()
        assert entry.stats.done == exp["done"], entry.stats.as_dict()
        assert n.pool.available == n.pool.count
