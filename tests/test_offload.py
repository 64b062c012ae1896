"""Asynchronous dispatch to worker processes (``pan_runtime.node.offload``): the node hands a
batch to a code object's worker and goes on serving everything else.

For every runtime in process isolation: while code object A's worker is stuck in a call (a
loop that only the budget, set to seconds, ends), capsules of code object B on the same node
are forwarded and arrive at their application; A's capsule, still out when the node closes,
is counted then. A worker killed with capsules out costs each of them as a counted fault.
Outcomes and counts only: the budget is a long hang guard, not a deadline asserted.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from embedded_node import embedded_node, forward_home, turn_until
from node_lines import node_line
from worker_procs import kill_and_wait, workers_of

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import ConfigError, FaultReason
from pan_runtime.isolation.mechanism import process_unavailable
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.node.trust import CodeOrigin
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import FloodHdr, PingHdr

SOURCES = Path(__file__).parent / "isolation_sources"
SPIN = {"native": "spin.c", "wasm": "spin.c", "restricted_py": "spin.py", "jvm": "Spin.java"}
RUNTIMES = sorted(SPIN)
PORT = 9
#: long enough that B's capsules are through long before A's call ends, on any load
BUDGET = Budget(time_ms=8000, steps=10**12, fuel=10**13)

pytestmark = pytest.mark.skipif(process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}")


def _spin(runtime: str) -> CodeObject:
    return _build(runtime, SPIN[runtime], f"spin-{runtime}")


def _build(runtime: str, source: str, name: str) -> CodeObject:
    src = SOURCES / source
    return default_plugins().builders.find(runtime, src.suffix).build(BuildRequest([src], runtime, [], [], name))


def _line(runtime: str, portmapper: bool = True, **limits: int) -> Network:
    """n1 - n2, both running ``runtime`` in process isolation, the native portmapper on each."""
    # no spare and no standby: the workers running are the code objects' own
    config = NodeConfig(isolation={runtime: "process"}, budget=BUDGET, breaker_threshold=1000, worker_spares=0,
                        **{"worker_standbys": 0, **limits})
    return node_line(config, config, portmapper=portmapper)


def _down_once(drops: dict[str, int]) -> bool:
    """A's one capsule, out in its worker when the node closed, counted ``worker_down`` and
    nothing else. Its budget would end it too, but that is seconds of the suite's time for an
    end other tests check (``test_supervisor``, ``test_fastpath_worker``)."""
    return {r: v for r, v in drops.items() if v} == {FaultReason.WORKER_DOWN.value: 1}


def _turn(net: Network) -> None:
    """One turn of a driver that never waits for a worker: due link events, queued capsules,
    then what the nodes' background work has finished."""
    net.scheduler.due(net.clock())
    for node in net.nodes:
        node.process()
        for poll in node.background:
            poll()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_runaway_code_object_does_not_hold_up_another(runtime: str):
    spin = _spin(runtime)
    fwd = reference_code(runtime, "forward")
    with _line(runtime) as net:
        n1, n2 = net.nodes
        net.install(spin, [n1])
        net.install(fwd)
        a = n1.cache.peek(spin.name)
        assert a is not None
        sink = Application(n2)
        sink.bind(PORT)
        app = Application(n1)
        app.send(spin, bytes(32))
        count = 5
        body = n2.address.raw + PORT.to_bytes(2, "big") + bytes(14)
        for _ in range(count):
            app.send(fwd, body)
        got = []
        guard = time.monotonic() + 120  # a hang guard, not a deadline
        while len(got) < count and time.monotonic() < guard:
            _turn(net)
            got += sink.deliveries()
            time.sleep(0.001)
        assert len(got) == count, (n1.offload.statistics(), a.stats.as_dict())
        # B's capsules are through, and A's call has not ended: its capsule is not counted yet
        assert a.stats.capsules_in == 1 and a.stats.done == 0 and sum(a.stats.drops.values()) == 0, a.stats.as_dict()
        assert all(bytes(d.data) == body for d in got)
    # closing the node with A's call still running counts it: nothing accepted is lost
    assert _down_once(a.stats.drops), a.stats.as_dict()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pni_calls_of_batches_out_are_served_while_another_worker_is_stuck(runtime: str):
    """Pings (whose code sends and delivers through the node from its worker) are answered while
    A's worker spins; with one capsule per batch, batches reach the ping worker while one of
    its capsules waits for the node's reply to a call, and run after it, in order."""
    spin = _spin(runtime)
    ping = reference_code(runtime, "ping")
    with _line(runtime, batch=1) as net:
        n1, n2 = net.nodes
        net.install(spin, [n1])
        net.install(ping)
        a = n1.cache.peek(spin.name)
        assert a is not None
        app = Application(n1)
        app.bind(PORT)
        app.send(spin, bytes(32))
        count = 10
        for seq in range(count):
            app.send(ping, PingHdr(dest=n2.address.raw, port=PORT, phase=0, seq=seq).pack() + bytes(16))
        answers = []
        guard = time.monotonic() + 120  # a hang guard, not a deadline
        while len(answers) < count and time.monotonic() < guard:
            _turn(net)
            answers += [PingHdr.unpack(d.data) for d in app.deliveries()]
            time.sleep(0.001)
        assert sorted(h.seq for h in answers if h.phase == 1) == list(range(count))
        assert sum(a.stats.drops.values()) == 0 and a.stats.done == 0, a.stats.as_dict()  # A's call goes on
    assert _down_once(a.stats.drops), a.stats.as_dict()


def test_batches_out_leave_room_in_the_ring_for_the_replies_to_calls():
    """More large flood capsules out than the ring to the worker holds, each of which calls the
    node (soft state) from the worker: the node keeps a quarter of the ring free, so every
    reply fits and the worker is never taken for broken."""
    flood = reference_code("native", "flood")
    with _line("native", portmapper=False, batch=1) as net:
        n1 = net.nodes[0]
        net.install(flood, [n1])
        entry = n1.cache.peek(flood.name)
        assert entry is not None
        app = Application(n1)
        count, size = 150, 7000  # over 1 MiB: more than the worker's ring holds
        for seq in range(count):
            hdr = FloodHdr(dest=n1.address.raw, port=PORT, kind=1, flags=0, src=n1.address.raw, flow=1, seq=seq,
                           count=0, report_every=0, bytes=0, elapsed_ns=0)
            app.send(flood, hdr.pack() + bytes(size))
        net.run(timeout_s=120)
        assert entry.stats.done == count, entry.stats.as_dict()
        assert n1.runtime("native").statistics()["worker_deaths"] == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_worker_killed_with_capsules_out_counts_each(runtime: str):
    spin = _spin(runtime)
    with _line(runtime, portmapper=False, batch=1) as net:
        n1 = net.nodes[0]
        net.install(spin, [n1])
        a = n1.cache.peek(spin.name)
        assert a is not None
        app = Application(n1)
        for _ in range(3):
            app.send(spin, bytes(32))
        _turn(net)  # handed over: the node does not wait for them
        assert a.stats.capsules_in == 3 and sum(a.stats.drops.values()) == 0, a.stats.as_dict()
        workers = workers_of(os.getpid())
        assert len(workers) == 1, workers  # A's worker, the only one (no spares, no standby)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        guard = time.monotonic() + 60  # a hang guard
        while sum(a.stats.drops.values()) < 3 and time.monotonic() < guard:
            _turn(net)
            time.sleep(0.002)
        drops = {r: v for r, v in a.stats.drops.items() if v}
        # the batch it was running: the kill's reason; those behind it: worker_down
        assert drops.get(FaultReason.KILLED_MEMORY.value, 0) == 1, drops
        assert drops.get(FaultReason.WORKER_DOWN.value, 0) == 2, drops
        assert a.stats.errors == 3
        assert n1.runtime(runtime).statistics()["worker_deaths"] == 1


def test_capsules_past_the_node_queue_bound_are_dropped_with_a_reason():
    spin = _spin("native")
    with _line("native", portmapper=False, batch=1, worker_inflight=1, worker_queue=2) as net:
        n1 = net.nodes[0]
        net.install(spin, [n1])
        a = n1.cache.peek(spin.name)
        assert a is not None
        app = Application(n1)
        for _ in range(5):
            app.send(spin, bytes(32))
        _turn(net)
        # one out in its worker, two waiting in the node, two dropped
        assert a.stats.drops[FaultReason.WORKER_BUSY.value] == 2, a.stats.as_dict()
        assert n1.offload.statistics()["waiting"] == 2 and n1.offload.statistics()["inflight"] == 1
    # closing the node counts what is out and what waits: none is lost
    assert a.stats.capsules_in == 5 and sum(a.stats.drops.values()) == 5, a.stats.as_dict()
    assert a.stats.drops[FaultReason.WORKER_DOWN.value] == 3


@pytest.mark.parametrize(("key", "value"), [("worker_inflight", 0), ("worker_queue", -1), ("worker_nice", 20), ("worker_demote_ms", -1)])
def test_the_limits_are_validated(key: str, value: int):
    with pytest.raises(ConfigError):
        NodeConfig(**{key: value})


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_worker_killed_between_batches_comes_back_from_its_warm_standby(runtime: str):
    """Asynchronous dispatch and warm standbys together: the worker of a forwarding code object
    is SIGKILLed while idle; the node counts the capsule that finds it gone, takes the code
    object's standby, and forwards every later capsule."""
    fwd = reference_code(runtime, "forward")
    with _line(runtime, worker_standbys=2) as net:  # native: the portmapper has a worker too
        n1, n2 = net.nodes
        net.install(fwd)
        entry = n1.cache.peek(fwd.name)
        assert entry is not None
        sink = Application(n2)
        sink.bind(PORT)
        app = Application(n1)
        body = n2.address.raw + PORT.to_bytes(2, "big") + bytes(14)

        def send_until_delivered(count: int) -> list:
            got: list = []
            dropped = sum(entry.stats.drops.values())  # what earlier calls' capsules cost
            for _ in range(count):
                app.send(fwd, body)
            guard = time.monotonic() + 120  # a hang guard, not a deadline
            while len(got) + sum(entry.stats.drops.values()) - dropped < count and time.monotonic() < guard:
                _turn(net)
                got += sink.deliveries()
                time.sleep(0.001)
            return got

        assert len(send_until_delivered(3)) == 3
        pid = entry.loaded.pid  # type: ignore[attr-defined]
        kill_and_wait(pid)
        first = send_until_delivered(1)  # finds the worker gone: counted, never lost silently
        assert len(first) + entry.stats.errors == 1, entry.stats.as_dict()
        assert len(send_until_delivered(5)) == 5, entry.stats.as_dict()
        stats = n1.runtime(runtime).statistics()
        assert stats["worker_warm_restarts"] == 1 and stats["worker_deaths"] == 1, stats


def test_capsules_held_for_a_stuck_worker_cannot_take_the_receive_pool():
    """A code object whose worker is stuck gets capsules past what the pool holds: the node
    keeps at most half the pool beyond its reserve for it (the rest dropped ``worker_busy``),
    so capsules of other code objects still find buffers and are forwarded."""
    spin = _spin("native")
    fwd = reference_code("wasm", "forward")  # in the node's process: only native runs in workers here
    with _line("native", pool_buffers=64, worker_queue=4096) as net:
        n1, n2 = net.nodes
        net.install(spin, [n1])
        net.install(fwd)
        a = n1.cache.peek(spin.name)
        assert a is not None
        sink = Application(n2)
        sink.bind(PORT)
        app = Application(n1)
        for _ in range(100):  # more than the whole pool
            app.send(spin, bytes(32))
            _turn(net)
        share = (64 - n1.config.pool_reserve) // 2
        assert a.stats.drops[FaultReason.WORKER_BUSY.value] >= 100 - share, a.stats.as_dict()
        assert n1.pool.available >= n1.config.pool_reserve
        body = n2.address.raw + PORT.to_bytes(2, "big") + bytes(14)
        got: list = []
        for _ in range(20):
            app.send(fwd, body)
        guard = time.monotonic() + 120  # a hang guard, not a deadline
        while len(got) < 20 and time.monotonic() < guard:
            _turn(net)
            got += sink.deliveries()
        assert len(got) == 20  # while the spin's worker is still stuck
        assert a.stats.done == 0


def _forwarding(runtime: str):
    """An embedded node with ``runtime``'s reference forward in a worker (two standbys: native's
    portmapper has a worker too) that has forwarded 3 capsules to an application bound to
    ``PORT``: (daemon, the code, its cache entry, the application). The caller closes it."""
    fwd = reference_code(runtime, "forward")
    daemon = embedded_node(runtime, "worker_standbys = 2\n")
    try:
        entry = daemon.node.install(fwd, origin=CodeOrigin.LOCAL)
        app = Application(daemon.node)
        app.bind(PORT)
        assert forward_home(daemon, app, fwd, PORT, 3, entry) == 3
    except BaseException:
        daemon.close()
        raise
    return daemon, fwd, entry, app


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_idle_worker_that_dies_is_restarted_before_a_capsule_finds_it(runtime: str):
    """Under the node's event loop every worker's pidfd is watched, busy or not: the idle
    worker of a forwarding code object is SIGKILLed, and the node counts its end and starts it
    again (from its warm standby) with no capsule there; a standby killed is replaced too. The
    next capsules are all forwarded: none finds a dead worker."""
    daemon, fwd, entry, app = _forwarding(runtime)
    try:
        wc = entry.loaded
        stats = daemon.node.runtime(runtime).statistics
        old = wc.pid  # type: ignore[attr-defined]
        os.kill(old, signal.SIGKILL)
        assert turn_until(daemon, lambda: stats()["worker_idle_deaths"] == 1 and wc.pid not in (None, old)), stats()  # type: ignore[attr-defined]
        assert stats()["worker_warm_restarts"] == 1 and stats()["worker_deaths"] == 1, stats()
        # its standby (started again after the restart took the old one) dies: replaced
        assert turn_until(daemon, lambda: wc.standby is not None), stats()  # type: ignore[attr-defined]
        standby = wc.standby.proc.proc.pid  # type: ignore[attr-defined]
        os.kill(standby, signal.SIGKILL)
        assert turn_until(daemon, lambda: stats()["standby_deaths"] == 1 and wc.standby is not None), stats()  # type: ignore[attr-defined]
        assert wc.standby.proc.proc.pid != standby  # type: ignore[attr-defined]
        assert forward_home(daemon, app, fwd, PORT, 5, entry) == 5, entry.stats.as_dict()
        assert entry.stats.errors == 0 and sum(entry.stats.drops.values()) == 0, entry.stats.as_dict()
        assert stats()["worker_deaths"] == 1, stats()
    finally:
        daemon.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_idle_worker_seen_dead_through_its_eventfd_is_restarted_too(runtime: str):
    """The node may find an idle worker's end through its eventfd first (a wake-up it wrote
    just before it died), not its pidfd: it is counted and started again all the same, with no
    capsule there, and the next capsules are all forwarded."""
    daemon, fwd, entry, app = _forwarding(runtime)
    try:
        wc = entry.loaded
        stats = daemon.node.runtime(runtime).statistics
        old = wc.pid  # type: ignore[attr-defined]
        os.eventfd_write(wc.proc.ch.wake_up, 1)  # type: ignore[attr-defined]
        kill_and_wait(old)
        assert turn_until(daemon, lambda: stats()["worker_idle_deaths"] == 1 and wc.pid not in (None, old)), stats()  # type: ignore[attr-defined]
        assert forward_home(daemon, app, fwd, PORT, 5, entry) == 5, entry.stats.as_dict()
        assert entry.stats.errors == 0 and sum(entry.stats.drops.values()) == 0, entry.stats.as_dict()
    finally:
        daemon.close()


def test_a_restart_does_not_wait_on_the_node_thread_for_a_standby_still_starting():
    """jvm, whose standby takes longest to make its runtime: its worker is SIGKILLed right
    after the code object is installed, while the standby is still starting. Under the event
    loop the node does not wait for the standby on its thread: a capsule sent meanwhile is
    counted (``worker_down``) and the loop turns on; once the standby has started, the node
    restarts from it and forwards every later capsule."""
    fwd = reference_code("jvm", "forward")
    daemon = embedded_node("jvm", "worker_standbys = 1\n")
    try:
        node = daemon.node
        entry = node.install(fwd, origin=CodeOrigin.LOCAL)
        wc = entry.loaded
        stats = node.runtime("jvm").statistics
        app = Application(node)
        app.bind(PORT)
        body = node.address.raw + PORT.to_bytes(2, "big") + bytes(14)
        assert wc.standby is not None and not wc.standby.ready()  # type: ignore[attr-defined]
        os.kill(wc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        assert turn_until(daemon, lambda: stats()["worker_idle_deaths"] == 1), stats()
        app.send(fwd, body)
        daemon.run_once(0)
        # the capsule found the worker down and was counted; the node did not take the standby
        assert entry.stats.drops.get(FaultReason.WORKER_DOWN.value, 0) == 1, entry.stats.as_dict()
        assert stats()["worker_warm_restarts"] == 0, stats()
        assert turn_until(daemon, lambda: stats()["worker_warm_restarts"] == 1 and wc.pid is not None), stats()  # type: ignore[attr-defined]
        assert forward_home(daemon, app, fwd, PORT, 3) == 3, entry.stats.as_dict()
        assert entry.stats.drops.get(FaultReason.WORKER_DOWN.value, 0) == 1 and entry.stats.errors == 1, entry.stats.as_dict()
    finally:
        daemon.close()


@pytest.mark.parametrize("driver", ["asynchronous", "bare"])
def test_a_worker_that_calls_the_node_without_pause_still_ends_at_its_budget(monkeypatch, driver: str):
    """A native code object whose ``accept`` calls the node in a loop, its worker's next call
    read as soon as it is written (as a worker on a CPU of its own can make it): the node
    never finds the ring empty, and must still end the call at the batch's budget, counted
    ``killed_budget``, both in the collect of asynchronous dispatch and in the wait of a bare
    ``Node``. Before, the budget was looked at only when the ring was empty: the node served
    calls until its replies had filled the ring to the worker (which the batch out holds),
    then took the worker for a protocol breaker (``crash``). Native only: the other runtimes
    stop their own code at its budget in the worker."""
    from pan_runtime.isolation.ring import Ring
    from pan_runtime.isolation.supervisor import WorkerCode
    from pan_runtime.node.node import Node
    from pan_runtime.node.trust import CodeOrigin

    served = [0]
    answer, get = WorkerCode._answer, Ring.get
    guard = time.monotonic() + 60  # a hang guard: past it the node was serving calls for ever

    def counted(self, vals):
        served[0] += 1
        return answer(self, vals)

    def eager(self):
        rec = get(self)
        wait = time.monotonic() + 0.05
        while rec is None and served[0] and time.monotonic() < wait:  # the worker's next call
            rec = get(self)
        assert time.monotonic() < guard, f"the node served {served[0]} calls past the budget"
        return rec

    monkeypatch.setattr(WorkerCode, "_answer", counted)
    monkeypatch.setattr(Ring, "get", eager)
    code = _build("native", "callspin.c", "callspin")
    budget = Budget(time_ms=300, steps=10**12, fuel=10**13)
    config = NodeConfig(isolation={"native": "process"}, budget=budget, breaker_threshold=1000, worker_spares=0,
                        worker_standbys=0)
    if driver == "bare":
        with Node(1, config=config) as node:
            entry = node.install(code, origin=CodeOrigin.LOCAL)
            Application(node).send(code, bytes(32))
            node.process()  # waits for the worker: its call ends at the budget
            drops = dict(entry.stats.drops)
    else:
        with node_line(config, config, portmapper=False) as net:
            n1 = net.nodes[0]
            net.install(code, [n1])
            a = n1.cache.peek(code.name)
            assert a is not None
            Application(n1).send(code, bytes(32))
            while not sum(a.stats.drops.values()):
                _turn(net)
            drops = dict(a.stats.drops)
    assert {r: v for r, v in drops.items() if v} == {FaultReason.KILLED_BUDGET.value: 1}, drops
    assert served[0] > 1  # it was served call after call, then ended
