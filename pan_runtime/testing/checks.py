"""The conformance checks: every scenario a runtime must pass, the same for every runtime.

Three kinds, each a function of (runtime, plugins, reference) that returns normally when the
runtime conforms, raises ``Failure`` naming what differs, or ``Skipped`` with the reason:

* **protocols**: the runtime's reference protocols (``forward``, ``ping``, ``flood``,
  ``portmapper``) on a three-node in-process line;
* **cases**: pan's shipped cases (``pan_runtime.resources.cases_dir``; ``expected.toml`` says
  what must happen), built from the runtime's source of each;
* **differential**: the same randomised inputs (valid, odd and truncated bodies, a manual
  clock) through the runtime's protocols and the reference runtime's: every delivered byte,
  timestamps included, and every counter must be equal.

A case that needs containment (``needs_sandbox``: an endless loop, an exception) is skipped,
with the reason, for a runtime whose isolation is ``none``: a fault in unsandboxed code takes
the process down, which is why the trust policy guards such runtimes instead. The budget
case runs with the runtime's declared limits (``Runtime.limits``) set low. The checks run in
a worker process under a time limit (``pan_runtime.testing.kit``), so none can hang a run.
"""

from __future__ import annotations

import contextlib
import random
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.isolation.mechanism import Mechanism
from pan_runtime.net.application import Application
from pan_runtime.net.network import ManualClock, Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import Plugins
from pan_runtime.plugin.runtime import Isolation
from pan_runtime.protocol_headers import FloodHdr, PingHdr
from pan_runtime.resources import cases_dir
from pan_runtime.testing.conformance import build_case

__all__ = ["Check", "CHECKS", "Failure", "Skipped", "check_ids", "expected"]

PORT = 7
#: what the budget case sets each declared limit to (the others keep the node's default)
LOW_LIMITS = {"time_ms": 100, "steps": 50_000, "fuel": 5_000_000}
#: limits that stop an endless loop
STOPPING = ("time_ms", "steps", "fuel")


class Failure(AssertionError):
    """The runtime does not behave as the check requires; the message says how."""


class Skipped(Exception):
    """The check does not apply to this runtime; the message says why."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise Failure(message)


def expect_equal(got: object, want: object, what: str) -> None:
    if got != want:
        raise Failure(f"{what}: expected {want!r}, got {got!r}")


def expected(case: str) -> dict[str, Any]:
    """A shipped case's ``expected.toml``."""
    return tomllib.loads((cases_dir() / case / "expected.toml").read_text())


@dataclass(frozen=True)
class Check:
    id: str
    kind: str  # "protocol", "case" or "differential"
    description: str
    run: Callable[[str, Plugins, str], None]


# ------------------------------------------------------------------------------- helpers
def _needs_containment(runtime: str, plugins: Plugins, case: str) -> None:
    cls = plugins.runtimes.get(runtime)
    contained = NodeConfig().mechanism(runtime) is Mechanism.PROCESS  # PAN_ISOLATION: the kit's --isolation
    if expected(case).get("needs_sandbox") and cls.isolation is Isolation.NONE and not contained:
        raise Skipped("isolation none: a hostile loop or a fault in unsandboxed code cannot be contained in-process "
                      "(the trust policy guards such runtimes instead)")


def _ref(runtime: str, protocol: str, plugins: Plugins) -> CodeObject:
    return reference_code(runtime, protocol, plugins)


#: the time budget of the protocol checks' nodes: far above what any of their capsules needs,
#: so a stall of a loaded machine (a JVM worker compiling, a second suite beside) is not taken
#: for a runaway; budgets have cases of their own
PROTOCOL_BUDGET = Budget(time_ms=2_000)


def _config(**limits: Any) -> NodeConfig:
    """The checks' node configuration: ``limits`` and no warm standby workers (a standby per
    code object boots a second engine, a JVM for jvm, for restarts no check needs; a restart
    takes a spare instead, the path a node without standbys takes)."""
    return NodeConfig(worker_standbys=0, **limits)


def _line(runtime: str, plugins: Plugins, n: int = 3) -> Network:
    net = Network.line(n, plugins=plugins, config=_config(budget=PROTOCOL_BUDGET))
    pm = _ref(runtime, "portmapper", plugins)
    net.install(pm, pin=True)
    for node in net.nodes:
        node.use_portmapper(pm)
    return net


def _fwd_body(dest: Any, port: int = PORT, payload: bytes = b"") -> bytes:
    return bytes(dest.raw) + port.to_bytes(2, "big") + b"\0\0" + payload


def _stats(node: Node, code: CodeObject) -> Any:
    entry = node.cache.peek(code.name)
    expect(entry is not None, f"{node.name} does not hold {code.short_name}")
    return entry.stats  # type: ignore[union-attr]


def _node_still_forwards(n: Node) -> None:
    fwd = nullrt.null_code("forward")
    n.install(fwd)
    app = Application(n)
    app.send(fwd, _fwd_body(n.address, port=4242))
    n.process()
    expect_equal(n.cache.peek(fwd.name).stats.drops["no_port"], 1,  # type: ignore[union-attr]
                 "a capsule of other code after the faults reached its delivery step")


# ----------------------------------------------------------------------- reference protocols
def check_forward(runtime: str, plugins: Plugins, reference: str) -> None:
    with _line(runtime, plugins) as net:
        a, b, c = net.nodes
        code = _ref(runtime, "forward", plugins)
        net.install(code)
        sink = Application(c)
        sink.bind(PORT)
        src = Application(a)
        for i in range(20):
            src.send(code, _fwd_body(c.address, payload=bytes([i]) * 100))
        net.run()
        got = sink.deliveries()
        expect_equal([d.data[20] for d in got], list(range(20)), "payload bytes delivered, in order")
        expect_equal(len(got[0].data), 120, "length of a delivered body")
        expect_equal(_stats(b, code).forwarded, 20, "capsules the middle node forwarded")
        for n in net.nodes:
            expect(n.pool.whole, f"{n.name}: every receive buffer is back in the pool")


def check_ping(runtime: str, plugins: Plugins, reference: str) -> None:
    with _line(runtime, plugins) as net:
        a, b, c = net.nodes
        code = _ref(runtime, "ping", plugins)
        net.install(code)
        app = Application(a)
        app.bind(PORT)
        for seq in range(5):
            hdr = PingHdr(dest=c.address.raw, port=PORT, phase=0, seq=seq)
            app.send(code, hdr.pack() + bytes(64))
        net.run()
        back = [PingHdr.unpack(d.data) for d in app.deliveries()]
        expect_equal([h.seq for h in back], list(range(5)), "sequence numbers of the answers")
        for h in back:
            expect(h.phase == 1 and h.src == c.address.raw and h.dest == a.address.raw,
                   f"an answer is marked phase 1, from the receiver, to the sender (got phase {h.phase})")
            expect(0 < h.sent_ns <= h.bounced_ns, f"timestamps are stamped in order (sent {h.sent_ns}, bounced {h.bounced_ns})")
        expect_equal(c.cache.peek(code.name).state.get(b"pinged"), (5).to_bytes(8, "big"),  # type: ignore[union-attr]
                     "the receiver's soft-state counter b'pinged'")
        short = Application(a)
        short.send(code, b"tiny")
        net.run()
        expect_equal(_stats(a, code).drops["code_drop"], 1, "a body shorter than the header is dropped by the code")


def check_flood(runtime: str, plugins: Plugins, reference: str) -> None:
    with _line(runtime, plugins) as net:
        a, b, c = net.nodes
        code = _ref(runtime, "flood", plugins)
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
        expect_equal([r.count for r in reports], [10, 20], "counts in the receiver's reports")
        r = reports[-1]
        expect(r.kind == 2 and r.flow == 3 and r.src == c.address.raw and r.dest == a.address.raw,
               f"a report is kind 2 of flow 3, from the receiver to the sender (got kind {r.kind}, flow {r.flow})")
        expect_equal(r.bytes, 20 * (FloodHdr.SIZE + 32), "bytes counted in the last report")
        expect(0 <= r.elapsed_ns < 60 * 10**9, f"elapsed time is a real duration, got {r.elapsed_ns} ns")
        stats = _stats(c, code)
        expect_equal(stats.done, 26, "capsules the receiver's code consumed")
        expect_equal(stats.sent_bytes, 2 * FloodHdr.SIZE, "bytes the receiver's code sent through the PNI")
        if "steps" in plugins.runtimes.get(runtime).limits:
            expect(stats.steps > 0, "a runtime that limits steps reports the steps it counted")
        expect_equal(_stats(b, code).forwarded, 26 + 2, "capsules the middle node forwarded")


def check_portmapper(runtime: str, plugins: Plugins, reference: str) -> None:
    with _line(runtime, plugins, n=2) as net:
        a, b = net.nodes
        code = _ref(runtime, "forward", plugins)
        net.install(code)
        sink = Application(b)
        sink.bind(PORT)
        src = Application(a)
        src.send(code, _fwd_body(b.address))
        net.run()
        expect_equal(sink.pending, 1, "deliveries to a bound port")
        sink.unbind(PORT)
        src.send(code, _fwd_body(b.address))
        net.run()
        expect_equal(_stats(b, code).drops["no_port"], 1, "capsules for an unbound port dropped as no_port")
        pm = b.portmapper
        src.send(pm, b"\x00\x07\x00\x00")  # runs at a (application origin) and binds there, not at b
        net.run()
        expect(a.cache.peek(pm).stats.done >= 1, "a portmapper capsule from an application is consumed")  # type: ignore[union-attr]


# --------------------------------------------------------------------------------- cases
def check_softstate(runtime: str, plugins: Plugins, reference: str) -> None:
    exp = expected("softstate")
    code = build_case("softstate", runtime, plugins)
    clock = ManualClock()
    with Node(1, plugins=plugins, clock=clock, config=_config(state_entries=exp["state_entries"])) as n:
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
        expect_equal(outcomes, [s[2] for s in exp["steps"]], "verdicts of the put/get steps")
        expect(entry.state.evictions >= 2, f"the bounded state evicted at least 2 entries, got {entry.state.evictions}")


def check_dep(runtime: str, plugins: Plugins, reference: str) -> None:
    exp = expected("dep")
    lib = build_case("dep", runtime, plugins, stem="lib", exports=tuple(exp["lib_exports"]))
    user = build_case("dep", runtime, plugins, deps=(lib,))
    with Node(1, plugins=plugins, config=_config(budget=PROTOCOL_BUDGET)) as n:  # not about budgets (see _sent)
        n.install(lib)
        entry = n.install(user)
        app = Application(n)
        for _ in range(exp["capsules"]):
            app.send(user, b"x")
        n.process()
        expect_equal(entry.stats.done, exp["done"], f"capsules done (stats {entry.stats.as_dict()})")


def check_spin(runtime: str, plugins: Plugins, reference: str) -> None:
    _needs_containment(runtime, plugins, "spin")
    declared = plugins.runtimes.get(runtime).limits
    exp = expected("spin")
    reasons = [exp["reason"]]
    if NodeConfig().mechanism(runtime) is Mechanism.PROCESS:
        # in a worker the node enforces time_ms from outside: it kills the worker past it,
        # unless the runtime's own budget stopped the code first
        declared, reasons = declared | {"time_ms"}, [exp["reason"], "killed_budget"]
    if not declared & set(STOPPING):
        raise Failure(f"runtime {runtime} contains code (isolation {plugins.runtimes.get(runtime).isolation.value}) "
                      f"but declares no limit that stops a run (Runtime.limits has none of {', '.join(STOPPING)}): "
                      "an endless accept would hang the node")
    code = build_case("spin", runtime, plugins)
    budget = Budget(**{k: v for k, v in LOW_LIMITS.items() if k in declared})
    with _sent(code, plugins, b"x" * 8, exp["capsules"], _config(budget=budget, breaker_threshold=100)) as (n, entry):
        expect_equal(sum(entry.stats.drops[r] for r in reasons), exp["capsules"],
                     f"capsules dropped for {' or '.join(reasons)} with limits {sorted(declared)} (stats {entry.stats.as_dict()})")
        _node_still_forwards(n)


@contextlib.contextmanager
def _sent(code: CodeObject, plugins: Plugins, body: bytes, count: int, config: NodeConfig | None = None) -> Iterator[tuple[Node, Any]]:
    """A node with ``code`` installed that has processed ``count`` capsules of ``body`` from
    an application: yields the node and the code's cache entry. Unless ``config`` says
    otherwise, its budget is ``PROTOCOL_BUDGET``: a case that is not about budgets must not
    fail because a loaded machine ran a capsule past the default (a jvm badargs capsule took
    113 ms, past the default 50, beside a second suite)."""
    with Node(1, plugins=plugins, config=config or _config(budget=PROTOCOL_BUDGET)) as n:
        entry = n.install(code)
        app = Application(n)
        for _ in range(count):
            app.send(code, body)
        n.process()
        yield n, entry


def check_raise(runtime: str, plugins: Plugins, reference: str) -> None:
    _needs_containment(runtime, plugins, "raise")
    exp = expected("raise")
    code = build_case("raise", runtime, plugins)
    with _sent(code, plugins, b"x", exp["capsules"]) as (n, entry):
        expect_equal(entry.stats.errors, exp["capsules"], f"errors counted (stats {entry.stats.as_dict()})")
        expect_equal(entry.stats.dropped, exp["capsules"], "capsules dropped")
        _node_still_forwards(n)


def check_badargs(runtime: str, plugins: Plugins, reference: str) -> None:
    exp = expected("badargs")
    code = build_case("badargs", runtime, plugins)
    with _sent(code, plugins, b"0123456789", exp["capsules"]) as (n, entry):
        expect_equal(entry.stats.done, exp["done"], f"capsules done (stats {entry.stats.as_dict()})")
        expect_equal(n.pool.available, n.pool.count, "receive buffers back in the pool")


# --------------------------------------------------------------------------- differential
def _scenario(runtime: str, protocol: str, seed: int, plugins: Plugins) -> tuple[list[tuple[int, bytes]], list[dict[str, Any]]]:
    """Deliveries and counters of one randomised run of ``protocol`` with ``runtime``'s code."""
    rng = random.Random(seed)
    clock = ManualClock()
    # a time budget no run comes near: a stall of a shared machine must not look like a
    # difference between runtimes (budgets have their own case)
    config = _config(budget=Budget(time_ms=10_000))
    with Network.line(3, plugins=plugins, clock=clock, config=config) as net:
        a, b, c = net.nodes
        pm = _ref(runtime, "portmapper", plugins)
        code = _ref(runtime, protocol, plugins)
        net.install(pm)
        net.install(code)
        for n in net.nodes:
            n.use_portmapper(pm)
        at_a, at_c = Application(a), Application(c)
        at_a.bind(PORT)
        at_c.bind(PORT)
        net.run()
        for i in range(40):
            clock.advance(rng.randrange(1, 50_000))
            pad = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
            if protocol == "forward":
                body = c.address.raw + PORT.to_bytes(2, "big") + b"\0\0" + pad
            elif protocol == "ping":
                body = PingHdr(dest=c.address.raw, port=PORT, phase=rng.choice([0, 0, 0, 1, 7]), seq=i).pack() + pad
            elif protocol == "flood":
                body = FloodHdr(dest=c.address.raw, port=PORT, kind=rng.choice([0, 1, 1, 1, 2, 9]), flow=rng.randrange(3),
                                seq=i, report_every=rng.choice([0, 1, 3])).pack() + pad
            else:
                body = rng.randrange(6).to_bytes(2, "big") + bytes([rng.choice([0, 1, 5]), 0]) + pad
            if rng.random() < 0.1:
                body = body[: rng.randrange(len(body) + 1)]  # truncated bodies too
            at_a.send(code, body)
            net.run()
        deliveries = [(d.port, bytes(d.data)) for app in (at_a, at_c) for d in app.deliveries()]
        stats = []
        for n in net.nodes:
            for e in n.cache:
                d = e.stats.as_dict()
                # time, and steps or fuel where a runtime counts them, are the runtime's own
                for k in ("time_us_total", "time_us_mean", "time_us_max", "steps", "fuel"):
                    d.pop(k, None)
                stats.append({"node": n.name, "protocol": e.code.manifest.meta.get("label", "").split("-")[0], **d})
        return deliveries, sorted(stats, key=lambda s: (s["node"], s["protocol"]))


def _first_difference(mine: list[Any], theirs: list[Any]) -> str:
    for i, (x, y) in enumerate(zip(mine, theirs, strict=False)):
        if x != y:
            return f"item {i}: {x!r} where the reference has {y!r}"
    return f"{len(mine)} items where the reference has {len(theirs)}"


def differential(protocol: str) -> Callable[[str, Plugins, str], None]:
    def run(runtime: str, plugins: Plugins, reference: str) -> None:
        if runtime == reference:
            raise Skipped(f"{runtime} is the reference runtime")
        why = plugins.runtimes.get(reference).available() if reference in plugins.runtimes else "not installed"
        if why:
            raise Skipped(f"the reference runtime {reference} cannot run here: {why}")
        for seed in (1, 2):
            theirs = _scenario(reference, protocol, seed, plugins)
            mine = _scenario(runtime, protocol, seed, plugins)
            if mine[0] != theirs[0]:
                raise Failure(f"seed {seed}: deliveries differ from {reference}'s: {_first_difference(mine[0], theirs[0])}")
            if mine[1] != theirs[1]:
                raise Failure(f"seed {seed}: counters differ from {reference}'s: {_first_difference(mine[1], theirs[1])}")
            expect(theirs[0] or protocol == "portmapper", f"seed {seed}: the scenario delivered nothing; it tests too little")

    return run


def _case_description(case: str) -> str:
    return str(expected(case).get("description", case))


CHECKS: dict[str, Check] = {
    c.id: c
    for c in [
        Check("forward", "protocol", "forward delivers through the portmapper, in order", check_forward),
        Check("ping", "protocol", "ping round trip marks the receiver and counts in soft state", check_ping),
        Check("flood", "protocol", "flood counts, reports back and sends what it reports", check_flood),
        Check("portmapper", "protocol", "the portmapper binds only for applications and unbinds", check_portmapper),
        Check("softstate", "case", _case_description("softstate"), check_softstate),
        Check("dep", "case", _case_description("dep"), check_dep),
        Check("spin", "case", _case_description("spin"), check_spin),
        Check("raise", "case", _case_description("raise"), check_raise),
        Check("badargs", "case", _case_description("badargs"), check_badargs),
        *(
            Check(f"differential-{p}", "differential", f"{p}: the same deliveries and counters as the reference runtime",
                  differential(p))
            for p in ("forward", "ping", "flood", "portmapper")
        ),
    ]
}


def check_ids() -> list[str]:
    return list(CHECKS)
