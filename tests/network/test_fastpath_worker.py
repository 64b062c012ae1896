"""The UDP fast path hands capsules to worker processes itself (``pan_runtime/net/_fastpath_worker.c``).

Three daemons in a line on loopback UDP run each runtime's code in process isolation. At the
middle, the capsules one receive read for the code object go down to its worker as one BATCH
written in C (one call into the node's Python per batch, none per capsule) and the worker's
forwards leave from C; order, the node's bounds and the counting of every capsule hold as
on the node's own path.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import time
import types

import pytest
from nethelpers import daemon_from, free_udp_ports, line_configs, pump, remove_tree, short_dir
from test_net_udp import forward_body

from pan_runtime.cli.protocols import reference_code
from pan_runtime.isolation.mechanism import process_unavailable
from pan_runtime.net.application import Application
from pan_runtime.net.daemon import prometheus_text
from pan_runtime.protocol_headers import PingHdr

pytestmark = pytest.mark.skipif(process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}")

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
PORT = 7
N = 40


@contextlib.contextmanager
def _line(runtime: str, protocol: str = "forward", limits: str = ""):
    """Sender, middle and receiver; ``limits``: the middle's (``[limits]`` lines)."""
    d = short_dir()
    extra = f'[runtimes.{runtime}]\nisolation = "process"\n[limits]\nworker_spares = 0\nworker_standbys = 0\n'
    cfgs = line_configs(d, free_udp_ports(3), extra)
    cfgs[1].write_text(cfgs[1].read_text() + limits)  # the file ends in its [limits] table
    ds = [daemon_from(c) for c in cfgs]
    try:
        code = reference_code(runtime, protocol)
        pm = reference_code("restricted_py", "portmapper")
        for x in ds:
            x.node.install(code)
            x.node.install(pm)
            x.node.use_portmapper(pm)
        sender, middle, receiver = ds
        app = Application(receiver.node)
        app.bind(PORT)
        yield types.SimpleNamespace(ds=ds, sender=sender, middle=middle, receiver=receiver, code=code, app=app,
                                    src=Application(sender.node))
    finally:
        for x in ds:
            x.close()
        remove_tree(d)


def _fast(d) -> dict:
    return d.transport.info()["fast_path"]


def _send(t, n: int) -> None:
    for i in range(n):
        t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", i)))


def _seqs(app) -> list[int]:
    return [struct.unpack(">I", d.data[-4:])[0] for d in app.deliveries()]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_capsules_go_to_the_worker_and_leave_from_c_in_order(runtime):
    with _line(runtime) as t:
        _send(t, N)
        assert pump(t.ds, lambda: t.app.pending == N)
        assert _seqs(t.app) == list(range(N))  # in the order they were sent
        mid = _fast(t.middle)
        s = t.middle.statistics()
        w = s["workers"][runtime]
        # every capsule went down in a batch C wrote, with one call into Python per batch C's
        # worker lane did not admit itself
        assert mid["to_worker"] == N and w["fast_capsules"] == N and 1 <= w["fast_batches"] <= N
        lane = t.middle.node.offload.statistics()["lane_admitted"]
        assert mid["crossings"] == w["fast_batches"] - lane and mid["handed_over"] == mid["slow"] == mid["python_runs"] == 0
        code = s["code"][t.code.hex_name]
        assert code["capsules_in"] == N and code["forwarded"] == N and code["errors"] == 0
        assert s["links"]["fast_path"]["to_worker"] == N
        text = prometheus_text(t.middle.statistics())
        assert f'pan_worker_fast_capsules_total{{runtime="{runtime}"}} {N}' in text
        assert 'pan_fast_path_capsules_total{path="to_worker"} ' + str(N) in text
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_code_calling_the_node_from_its_worker_still_works(runtime):
    # the receiver's ping code keeps a count in soft state: a PNI call its worker forwards
    # to the node, answered for a capsule of a batch C wrote
    with _line(runtime, "ping") as t:
        app = Application(t.sender.node)
        app.bind(PORT)
        for seq in range(N):
            app.send(t.code, PingHdr(dest=t.receiver.node.address.raw, port=PORT, seq=seq).pack() + bytes(200))
        assert pump(t.ds, lambda: app.pending == N)
        back = [PingHdr.unpack(d.data) for d in app.deliveries()]
        assert sorted(h.seq for h in back) == list(range(N)) and {h.phase for h in back} == {1}
        pinged = t.receiver.node.cache.peek(t.code.name).state.get(b"pinged")
        assert pinged is not None and int.from_bytes(pinged, "big") == N
        assert _fast(t.receiver)["to_worker"] == N and _fast(t.middle)["to_worker"] == 2 * N
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


def _worker_pid(d, code) -> int:
    pid = d.node.cache.peek(code.name).loaded.pid
    assert pid is not None
    return pid


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_worker_killed_with_capsules_out_counts_each_with_its_reason(runtime):
    # a long budget: only the kill ends the batches out
    with _line(runtime, limits="worker_grace_ms = 60000\n") as t:
        _send(t, 1)  # the worker is up and has run one
        assert pump(t.ds, lambda: t.app.pending == 1)
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            _send(t, N)
            assert pump(t.ds, lambda: _fast(t.middle)["to_worker"] == N + 1)
            assert t.middle.node.offload.statistics()["inflight"] == N
        finally:
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
        code = t.middle.node.cache.peek(t.code.name).stats
        assert pump(t.ds, lambda: code.errors == N)
        assert code.capsules_in == N + 1 and code.forwarded == 1
        # the batch the worker had: the reason its end gives; those behind it: worker_down
        assert sum(code.drops.values()) == N and set(code.drops) <= {"killed_memory", "worker_down"}, dict(code.drops)
        assert t.middle.node.offload.statistics()["inflight"] == 0
        assert t.middle.statistics()["workers"][runtime]["died_killed_memory"] == 1
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_flood_past_worker_inflight_is_dropped_as_worker_busy_and_the_pool_stays_whole(runtime):
    limits = "worker_grace_ms = 60000\nworker_inflight = 8\nworker_queue = 4\n"
    with _line(runtime, limits=limits) as t:
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            _send(t, N)
            code = t.middle.node.cache.peek(t.code.name).stats
            assert pump(t.ds, lambda: code.capsules_in == N + 1)  # those shed are counted in too
            off = t.middle.node.offload.statistics()
            # at most worker_inflight out (a first batch may be larger only when nothing is out) and worker_queue waiting
            assert off["inflight"] <= 8 and off["waiting"] <= 4 and code.drops["worker_busy"] >= N - 12, (off, dict(code.drops))
        finally:
            os.kill(pid, signal.SIGCONT)
        taken = N - code.drops["worker_busy"]
        assert pump(t.ds, lambda: t.app.pending == 1 + taken)
        got = _seqs(t.app)[1:]
        assert got == sorted(set(got)) and len(got) == taken  # what went through kept its order
        assert code.forwarded == 1 + taken and code.errors == 0
        assert _fast(t.middle)["to_worker"] >= 2  # the first receive while it was stopped went down from C
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


# -- the fast path's wait: batches handed over and verdicts collected without a loop turn -------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_batches_are_handed_over_and_their_verdicts_collected_inside_the_fast_paths_wait(runtime):
    with _line(runtime) as t:
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        before = t.middle.statistics()
        for seq in range(1, N):  # one at a time, as pings: each its own batch
            t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", seq)))
            assert pump(t.ds, lambda seq=seq: t.app.pending == seq + 1)
        s = t.middle.statistics()
        batches = s["workers"][runtime]["fast_batches"] - before["workers"][runtime]["fast_batches"]
        assert batches == N - 1
        # each handed over by admit with the wait going on, the worker's writes collected in it
        # (one whose answer comes after the node's budget or demotion look is read by that look,
        # which on a busy machine happens: not every one, but always some)
        assert s["fast_handovers_kept"] - before["fast_handovers_kept"] == batches
        assert 1 <= s["fast_verdicts_kept"] - before["fast_verdicts_kept"] <= batches
        text = prometheus_text(s)
        for step, key in (("handover", "fast_handovers_kept"), ("verdicts", "fast_verdicts_kept")):
            assert f'pan_fast_path_worker_batches_kept_total{{step="{step}"}} {s[key]}\n' in text
        # worker lanes: admitted and finished in C (a batch whose answer is late enough for the
        # node's demotion look is taken back into Python, so on a busy machine not every one)
        lane = {k: s[k] - before[k] for k in ("fast_lane_admitted", "fast_lane_finished")}
        assert 1 <= lane["fast_lane_finished"] <= lane["fast_lane_admitted"] <= batches, lane
        for step, key in (("admitted", "fast_lane_admitted"), ("finished", "fast_lane_finished")):
            assert f'pan_fast_path_worker_lane_batches_total{{step="{step}"}} {s[key]}\n' in text
        assert _seqs(t.app) == list(range(N))
        code = s["code"][t.code.hex_name]
        assert code["capsules_in"] == N and code["forwarded"] == N and code["errors"] == 0
        assert t.middle.node.offload.statistics()["inflight"] == 0
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_bad_verdicts_record_collected_in_the_wait_is_the_workers_protocol_fault_and_nothing_is_sent(runtime):
    from pan_runtime.isolation.protocol import Kind
    from pan_runtime.isolation.ring import HEADER, Ring

    with _line(runtime, limits="worker_grace_ms = 60000\n") as t:
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        wc = t.middle.node.cache.peek(t.code.name).loaded
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            _send(t, 1)
            assert pump(t.ds, lambda: _fast(t.middle)["to_worker"] == 2)
            assert t.middle.node.offload.statistics()["inflight"] == 1
            ch = wc.proc.ch
            # the worker's end of its up ring, written as a hostile worker would: a forward for
            # the capsule, in a record whose size does not match its fault-text length
            up = Ring(ch.view, HEADER + ch.ring_size, ch.ring_size)
            assert up.put(Kind.VERDICTS, _HEAD.pack(1, 0, 5, 0) + _ENTRY.pack(2, 0, 0, 0))
            ch.wake_node()
            code = t.middle.node.cache.peek(t.code.name).stats
            assert pump(t.ds, lambda: code.errors == 1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        assert dict(code.drops) == {"crash": 1} and code.forwarded == 1
        s = t.middle.statistics()
        assert s["workers"][runtime]["died_crash"] == 1
        assert t.middle.node.offload.statistics()["inflight"] == 0
        pump(t.ds, lambda: False, timeout=0.2)  # nothing more reaches the receiver
        assert t.app.pending == 1
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


# -- worker lanes: admission and verdicts in C, the node's Python only for what C leaves -------

#: a long budget and no demotion look: the node leaves a stopped worker's batches to the lane
_KEEP = "worker_grace_ms = 60000\nworker_demote_ms = 60000\n"


def _lane(d) -> dict:
    return d.node.offload.statistics()


def _lane_holds(t):
    """Send one capsule through ``t``'s middle; its worker code, whose lane holds the channel then."""
    _send(t, 1)
    assert pump(t.ds, lambda: t.app.pending == 1)
    wc = t.middle.node.cache.peek(t.code.name).loaded
    assert wc.lent is not None  # the lane holds the channel
    return wc


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lone_capsules_go_down_and_come_back_in_c_and_a_deliver_among_them_goes_to_python(runtime):
    with _line(runtime) as t:
        here = Application(t.middle.node)  # capsules for the middle itself: a deliver C leaves to the node
        here.bind(PORT)
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        before = _lane(t.middle)
        crossings = _fast(t.middle)["crossings"]
        far, near = [0], []
        for seq in range(1, N):  # one at a time, as pings
            dest = t.middle if seq % 5 == 0 else t.receiver
            t.src.send(t.code, forward_body(dest.node.address, struct.pack(">I", seq)))
            (near if dest is t.middle else far).append(seq)
            assert pump(t.ds, lambda: t.app.pending == len(far) and here.pending == len(near))
        after = _lane(t.middle)
        # C admitted and finished batches itself: fewer calls into Python than batches
        assert after["lane_admitted"] > before["lane_admitted"] and after["lane_finished"] > before["lane_finished"]
        assert _fast(t.middle)["crossings"] - crossings < N - 1
        assert _seqs(t.app) == far and _seqs(here) == near
        s = t.middle.statistics()
        code = s["code"][t.code.hex_name]
        assert code["capsules_in"] == N and code["forwarded"] == len(far) and code["delivered"] == len(near)
        assert code["errors"] == 0 and sum(code["drops"].values()) == 0
        w = s["workers"][runtime]
        assert w["fast_capsules"] == N == _fast(t.middle)["to_worker"] and w["fast_batches"] == N
        assert f'pan_worker_fast_capsules_total{{runtime="{runtime}"}} {N}' in prometheus_text(s)
        assert after["inflight"] == 0
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_batch_with_delivers_among_its_forwards_is_finished_by_its_lane(runtime):
    # capsules read in one receive, some for the middle itself: C sends the forwards from the
    # ring and hands only the delivers to the node's Python (the lane's finish), which keeps
    # the lane: every batch the lane admitted it also finished (no look comes due: it would
    # take the lane back)
    with _line(runtime, limits=_KEEP) as t:
        here = Application(t.middle.node)
        here.bind(PORT)
        _lane_holds(t)
        before = _lane(t.middle)
        crossings = _fast(t.middle)["crossings"]
        far, near = [], []
        for seq in range(1, 13):  # sent before the middle's turn: its receive reads them together
            dest = t.middle if seq % 3 == 0 else t.receiver
            t.src.send(t.code, forward_body(dest.node.address, struct.pack(">I", seq)))
            (near if dest is t.middle else far).append(seq)
        assert pump(t.ds, lambda: t.app.pending == 1 + len(far) and here.pending == len(near))
        after = _lane(t.middle)
        admitted = after["lane_admitted"] - before["lane_admitted"]
        finished = after["lane_finished"] - before["lane_finished"]
        assert admitted >= 1 and finished == admitted, (admitted, finished)
        assert 1 <= _fast(t.middle)["crossings"] - crossings <= admitted  # one finish per batch with delivers
        assert _seqs(t.app) == [0, *far] and _seqs(here) == near
        code = t.middle.statistics()["code"][t.code.hex_name]
        assert code["capsules_in"] == 13 and code["forwarded"] == 1 + len(far) and code["delivered"] == len(near)
        assert code["errors"] == 0 and sum(code["drops"].values()) == 0
        assert after["inflight"] == 0
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


#: how long the test's polling worker polls: far above the test's own gap between capsules (a
#: loop turning three nodes, slow on a loaded machine), so that only its pauses outlast it
POLL_US = 50_000


@pytest.mark.parametrize("apart", [True, False])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_worker_on_a_cpu_of_its_own_polls_and_the_node_spins_for_its_verdicts(runtime, apart):
    # limits.worker_cpus and worker_poll_us: the worker runs on its CPU and looks at its ring a
    # while after each batch, and the node's wait spins for a batch's verdicts before it sleeps
    # (neither writes the other's eventfd meanwhile). Only on CPUs the node does not run on:
    # on the node's own CPU the worker sleeps at once, as without them. Capsules that come
    # after the worker went to sleep still wake it.
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("[allowed-skip] one CPU: a worker cannot have one of its own")
    node_cpu, worker_cpu = cpus[0], cpus[1] if apart else cpus[0]
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {node_cpu})  # this thread runs the nodes
    try:
        with _line(runtime, limits=f"{_KEEP}worker_cpus = [{worker_cpu}]\nworker_poll_us = {POLL_US}\n") as t:
            _send(t, 1)
            assert pump(t.ds, lambda: t.app.pending == 1)
            wc = t.middle.node.cache.peek(t.code.name).loaded
            assert os.sched_getaffinity(wc.proc.proc.pid) == {worker_cpu}
            assert t.middle.node.config.worker_poll_ns() == (POLL_US * 1000 if apart else 0)
            before_lane = _lane(t.middle)
            seq = 0

            def one_more() -> None:  # one at a time, as pings; every tenth after the worker slept
                nonlocal seq
                seq += 1
                if seq % 10 == 0:
                    time.sleep(2 * POLL_US / 1e6)
                t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", seq)))
                assert pump(t.ds, lambda: t.app.pending == seq + 1)

            for _ in range(60):
                one_more()
            def all_seen() -> bool:
                now = _lane(t.middle)
                spun, woke, admitted = (now[k] - before_lane[k] for k in ("lane_spun", "lane_woke", "lane_admitted"))
                return bool(spun and woke and admitted > woke)

            # the node spins 50 µs for a batch's verdicts, a worker polls POLL_US after a batch and
            # every tenth capsule comes twice that after the one before: on a loaded machine (a JVM
            # worker whose CPU others share, a poller preempted) any of them may miss for a
            # while; each must still come: a spin, a batch that woke the worker, one that did not
            while apart and seq < 1000 and not all_seen():
                one_more()
            after = _lane(t.middle)
            spun = after["lane_spun"] - before_lane["lane_spun"]
            admitted = after["lane_admitted"] - before_lane["lane_admitted"]
            woke = after["lane_woke"] - before_lane["lane_woke"]
            assert admitted >= 1
            assert (spun >= 1) if apart else (spun == 0), (spun, seq, after, before_lane)
            # a worker that sleeps is woken for every batch; a polling one only after a pause
            # longer than its poll
            assert (1 <= woke < admitted) if apart else (woke == admitted), (woke, admitted, seq)
            assert _seqs(t.app) == list(range(seq + 1))
            s = t.middle.statistics()
            assert s["code"][t.code.hex_name]["forwarded"] == seq + 1 and s["dropped"] == 0
            assert f"pan_fast_path_worker_lane_spun_total {s['fast_lane_spun']}" in prometheus_text(s)
            assert f"pan_fast_path_worker_lane_wakeups_total {s['fast_lane_woke']}" in prometheus_text(s)
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_wake_up_with_nothing_out_is_read_in_c_and_the_lane_keeps_the_channel(runtime):
    # a worker that publishes its verdicts as the node's spin ends writes its eventfd although
    # the spin took them: the wait reads that wake-up itself, without the node's Python taking
    # the channel from the lane and granting it again (tens of µs on the path of the next
    # capsule)
    with _line(runtime, limits=_KEEP) as t:
        wc = _lane_holds(t)
        lent = wc.lent
        assert not wc.inflight
        fd = wc.proc.ch.wake_up
        for _ in range(3):
            os.eventfd_write(fd, 1)
            assert pump(t.ds, lambda: not select.select([fd], [], [], 0)[0])  # read by the wait
        assert wc.lent is lent  # never taken back
        _send(t, 5)
        assert pump(t.ds, lambda: t.app.pending == 6)
        assert _seqs(t.app) == [0, 0, 1, 2, 3, 4] and wc.lent is lent
        assert t.middle.statistics()["dropped"] == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_python_batch_between_lane_batches_keeps_the_order(runtime):
    with _line(runtime, limits=_KEEP) as t:
        wc = _lane_holds(t)
        admitted = _lane(t.middle)["lane_admitted"]
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        app = Application(t.middle.node)  # its capsules take the node's Python path
        try:
            t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", 1)))
            assert pump(t.ds, lambda: _fast(t.middle)["to_worker"] == 2)
            assert _lane(t.middle)["lane_admitted"] == admitted + 1  # written by C, out in the stopped worker
            for seq in (100, 101):
                app.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", seq)))
            assert pump(t.ds, lambda: wc.inflight_n == 3)  # taken back: C's batch first, the node's behind it
            assert wc.lent is None
            for seq in (2, 3):
                t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", seq)))
            assert pump(t.ds, lambda: _fast(t.middle)["to_worker"] == 4)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert pump(t.ds, lambda: t.app.pending == 6)
        assert _seqs(t.app) == [0, 1, 100, 101, 2, 3]
        code = t.middle.node.cache.peek(t.code.name).stats
        assert code.capsules_in == 6 and code.forwarded == 6 and code.errors == 0
        assert _lane(t.middle)["inflight"] == 0
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_worker_killed_with_lane_batches_out_counts_each_capsule(runtime):
    with _line(runtime, limits=_KEEP) as t:
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        admitted = _lane(t.middle)["lane_admitted"]
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            for seq in range(1, 6):  # one at a time: each its own batch, each out from C
                t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", seq)))
                assert pump(t.ds, lambda seq=seq: _fast(t.middle)["to_worker"] == seq + 1)
            assert _lane(t.middle)["lane_admitted"] == admitted + 5 and _lane(t.middle)["inflight"] == 5
        finally:
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
        code = t.middle.node.cache.peek(t.code.name).stats
        assert pump(t.ds, lambda: code.errors == 5)
        assert code.capsules_in == 6 and code.forwarded == 1
        # the batch the worker had: the reason its end gives; those behind it: worker_down
        assert dict(code.drops) == {"killed_memory": 1, "worker_down": 4}, dict(code.drops)
        assert _lane(t.middle)["inflight"] == 0
        assert t.middle.statistics()["workers"][runtime]["died_killed_memory"] == 1
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_stopped_worker_with_a_lane_batch_out_is_killed_at_its_budget(runtime):
    with _line(runtime, limits="worker_grace_ms = 100\nworker_demote_ms = 0\n") as t:
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        admitted = _lane(t.middle)["lane_admitted"]
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            t.src.send(t.code, forward_body(t.receiver.node.address, struct.pack(">I", 1)))
            code = t.middle.node.cache.peek(t.code.name).stats
            assert pump(t.ds, lambda: code.errors == 1, timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        assert _lane(t.middle)["lane_admitted"] == admitted + 1  # the batch went down from C
        assert dict(code.drops) == {"killed_budget": 1} and code.capsules_in == 2 and code.forwarded == 1
        w = t.middle.statistics()["workers"][runtime]
        assert w["kills"] == 1 and w["died_killed_budget"] == 1
        assert _lane(t.middle)["inflight"] == 0
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("bad", ["count", "long", "frame"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_hostile_verdicts_record_for_a_lane_batch_is_a_protocol_fault_and_nothing_is_sent(runtime, bad):
    from pan_runtime.isolation.protocol import Kind
    from pan_runtime.isolation.ring import HEADER, Ring

    with _line(runtime, limits=_KEEP) as t:
        _send(t, 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        wc = t.middle.node.cache.peek(t.code.name).loaded
        admitted = _lane(t.middle)["lane_admitted"]
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            _send(t, 1)
            assert pump(t.ds, lambda: _fast(t.middle)["to_worker"] == 2)
            assert _lane(t.middle)["lane_admitted"] == admitted + 1 and wc.lent is not None
            ch = wc.proc.ch
            up = Ring(ch.view, HEADER + ch.ring_size, ch.ring_size)  # the worker's end, written as a hostile one would
            if bad == "count":  # two verdicts (plain forwards) for a batch of one
                assert up.put(Kind.VERDICTS, _HEAD.pack(2, 0, 0, 0) + _ENTRY.pack(2, 0, 0, 0) * 2)
            elif bad == "long":  # a plain forward, in a record longer than its fields
                assert up.put(Kind.VERDICTS, _HEAD.pack(1, 0, 0, 0) + _ENTRY.pack(2, 0, 0, 0) + bytes(8))
            else:  # a head past the frame's end: the frame runs past what was written
                assert up.put(Kind.VERDICTS, _HEAD.pack(1, 0, 0, 0) + _ENTRY.pack(2, 0, 0, 0))
                struct.pack_into("<I", ch.view, HEADER + ch.ring_size + HEADER + (up.head - 48) % ch.ring_size, 4096)
            ch.wake_node()
            code = t.middle.node.cache.peek(t.code.name).stats
            assert pump(t.ds, lambda: code.errors == 1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        assert dict(code.drops) == {"crash": 1} and code.forwarded == 1
        assert t.middle.statistics()["workers"][runtime]["died_crash"] == 1
        assert _lane(t.middle)["inflight"] == 0
        pump(t.ds, lambda: False, timeout=0.2)  # nothing more reaches the receiver
        assert t.app.pending == 1
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_record_written_with_nothing_out_costs_only_its_worker_and_the_node_goes_on(runtime):
    # a hostile worker writes a VERDICTS record (two verdicts) and its wake-up while nothing is
    # out: the wait leaves it to the node's Python, which reads nothing while nothing is out; the
    # next capsule's batch then meets the record, which fits no batch of one: the worker's
    # protocol fault, that capsule counted (crash), nothing sent, and the code is served again
    from pan_runtime.isolation.protocol import Kind
    from pan_runtime.isolation.ring import HEADER, Ring

    with _line(runtime, limits=_KEEP) as t:
        wc = _lane_holds(t)
        assert not wc.inflight
        pid = _worker_pid(t.middle, t.code)
        os.kill(pid, signal.SIGSTOP)
        try:
            ch = wc.proc.ch
            up = Ring(ch.view, HEADER + ch.ring_size, ch.ring_size)  # the worker's end
            assert up.put(Kind.VERDICTS, _HEAD.pack(2, 0, 0, 0) + _ENTRY.pack(2, 0, 0, 0) * 2)
            ch.wake_node()
            assert pump(t.ds, lambda: not select.select([ch.wake_up], [], [], 0)[0])  # the wake-up was read
            code = t.middle.node.cache.peek(t.code.name).stats
            assert code.errors == 0 and t.app.pending == 1  # nothing was out: nothing to fault yet
            _send(t, 1)
            assert pump(t.ds, lambda: _fast(t.middle)["to_worker"] == 2)
            ch.wake_node()
            assert pump(t.ds, lambda: code.errors == 1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        assert dict(code.drops) == {"crash": 1}
        assert t.middle.statistics()["workers"][runtime]["died_crash"] == 1
        pump(t.ds, lambda: False, timeout=0.2)
        assert t.app.pending == 1  # the junk sent nothing
        _send(t, 3)  # a new worker serves the code again, in order
        assert pump(t.ds, lambda: t.app.pending == 4)
        assert _seqs(t.app) == [0, 0, 1, 2] and _worker_pid(t.middle, t.code) != pid
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)


# -- the VERDICTS reader in C, against records built here --------------------------------------

_HEAD = struct.Struct("<IIII")
_ENTRY = struct.Struct("<iIQQ")
_SELF = bytes(range(1, 17))
_DEST = bytes(range(100, 116))
_PREV = bytes(range(200, 216))


class _Reader:
    """A FastPath on a loopback socket whose one link and route lead to ``peer``."""

    def __init__(self):
        from pan_runtime.data.segments import SegmentPool
        from pan_runtime.net import _fastpath

        self.pool = SegmentPool(2048, 8)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.peer.settimeout(5.0)
        noop = lambda *a: (-1, False)  # noqa: E731
        self.fp = _fastpath.FastPath(fd=self.sock.fileno(), pool=self.pool, base=self.pool.base_address, slot_size=2048,
                                     slot_count=8, on_slow=noop, on_handover=noop, owner=self)
        self.fp.configure(_SELF, [(self.peer.getsockname(), _DEST, 1500, -1, 0), (("127.0.0.1", 9), _PREV, 1500, -1, 0)],
                          [(_DEST, 0)], -1, [], False)

    def close(self):
        self.sock.close()
        self.peer.close()


@pytest.fixture
def reader():
    r = _Reader()
    yield r
    r.close()


def _batch(bodies: list[bytes], hop: int = 9) -> tuple[bytes, bytes]:
    """A BATCH payload's bodies (where the worker left them) and the node's meta for them."""
    at = 8 + ((len(bodies) * 76 + 7) & ~7)
    payload, meta = bytearray(at), bytearray()
    for body in bodies:
        header = bytes([1, 0, hop, 0]) + bytes(32) + bytes(16)
        meta += header + struct.pack("<II", len(body), at) + _PREV + bytes(4)
        payload += body + bytes(-len(body) % 8)
        at += (len(body) + 7) & ~7
    return bytes(payload), bytes(meta)


def _verdicts(entries: list[tuple[int, bytes]], flags: int = 0, count: int | None = None, reserved: int = 0) -> bytes:
    text = b"".join(t for _, t in entries)
    out = _HEAD.pack(len(entries) if count is None else count, flags, len(text), reserved)
    for v, t in entries:
        out += _ENTRY.pack(v, len(t), 3, 4)
    return out + text


def test_verdicts_carried_out_in_c_send_forwards_from_the_ring_and_return_the_rest(reader):
    bodies = [_DEST + b"first", b"\x00" * 20, _SELF + b"\x00\x07here", _DEST + b"second"]
    payload, meta = _batch(bodies)
    rec = _verdicts([(2, b""), (0, b""), (2, b""), (2, b"")])  # forward, drop, forward to this node, forward
    reset, fwd, dropped, lost, steps, fuel, rest = reader.fp.worker_verdicts(payload, meta, rec, 1000)
    assert (reset, fwd, dropped, lost, steps, fuel) == (0, 2, 1, 0, 12, 16)
    got = [reader.peer.recv(4096) for _ in range(2)]
    assert [g[52:] for g in got] == [bodies[0], bodies[3]]  # in order, the bodies as the worker left them
    assert {g[2] for g in got} == {8}  # this node's hop taken in the byte sent
    # the deliver to this node is the node's Python's, with the datagram as it came (hop 9)
    assert len(rest) == 1 and rest[0][:3] == (2, 2, None) and rest[0][3][52:] == bodies[2] and rest[0][3][2] == 9
    assert rest[0][4] == _PREV


def test_a_fault_comes_back_with_its_text_and_the_reset_flag(reader):
    payload, meta = _batch([_DEST + b"x", _DEST + b"y"])
    rec = _verdicts([(0, b"trap:out of bounds"), (2, b"")], flags=1)
    reset, fwd, dropped, lost, _, _, rest = reader.fp.worker_verdicts(payload, meta, rec, 0)
    assert reset == 1 and fwd == 1 and dropped == 0
    assert [(i, why) for i, _, why, _, _ in rest] == [(0, b"trap:out of bounds")]
    assert reader.peer.recv(4096)[52:] == _DEST + b"y"


@pytest.mark.parametrize("bad", [
    _verdicts([(2, b"")], count=2),  # a count not the batch's
    _verdicts([(2, b""), (2, b"")], reserved=1),
    _verdicts([(2, b""), (2, b"")]) + b"\x00",  # longer than its fields
    _verdicts([(2, b""), (2, b"")])[:-1],
    _HEAD.pack(2, 0, 5, 0) + _ENTRY.pack(2, 4, 0, 0) + _ENTRY.pack(2, 0, 0, 0) + b"abcde",  # texts short of the area
    _HEAD.pack(2, 0, 0, 0) + _ENTRY.pack(2, 9, 0, 0) + _ENTRY.pack(2, 0, 0, 0),  # a text past the area
    _verdicts([(0, b"x" * 2049), (2, b"")]),  # a fault text past 2048 bytes
    b"\x02\x00",
], ids=["count", "reserved", "long", "short", "texts-short", "text-past", "text-too-long", "no-header"])
def test_a_record_breaking_the_layout_is_refused_and_nothing_is_sent(reader, bad):
    payload, meta = _batch([_DEST + b"x", _DEST + b"y"])
    with pytest.raises(ValueError):
        reader.fp.worker_verdicts(payload, meta, bad, 0)
    reader.peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        reader.peer.recv(4096)


def test_a_lane_takes_only_rings_inside_its_mapping_and_gives_back_what_it_was_granted():
    from pan_runtime.net import _fastpath

    lane = _fastpath.WorkerLane(lambda *a: None, lambda *a: 0, lambda *a: 0)
    buf = bytearray(2 * (128 + 4096))
    for down, up, size in ((0, 128 + 4096 + 8, 4096), (0, 128 + 4096, 8192), (4, 128 + 4096, 4096), (0, 128 + 4096, 3000)):
        with pytest.raises(ValueError):
            lane.grant(memoryview(buf), down, up, size, 0, 0, -1, -1, 1, 1, 0, 8, 8)
    assert not lane.granted and lane.take() is None and lane.out == 0 and lane.due() == 0
    lane.grant(memoryview(buf), 0, 128 + 4096, 4096, 64, 32, -1, -1, 1, 1, 0, 8, 8)
    assert lane.granted
    with pytest.raises(RuntimeError):
        lane.grant(memoryview(buf), 0, 128 + 4096, 4096, 64, 32, -1, -1, 1, 1, 0, 8, 8)
    assert lane.take() == (64, 32, []) and not lane.granted
    assert lane.pull() == (0,) * 14
