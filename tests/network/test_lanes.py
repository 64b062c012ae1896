"""The fast path on several threads (``limits.threads``, ``pan_runtime.net.lanes``).

A middle node with ``threads = 2`` has four fake neighbours, each sending from its own port
(so the neighbours' own receive sockets go to both threads) and a receiver daemon. Both
threads must forward, every capsule the middle took must arrive and every figure must add
up across the threads; a fault in a run on either thread is handled as on one thread, and
closing the node ends its threads and frees its port.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import struct
import threading
import time
import types
from pathlib import Path

import pytest
from nethelpers import FakePeer, daemon_from, free_udp_ports, pump, remove_tree, short_dir
from test_net_udp import forward_body

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.errors import ConfigError, FaultReason
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.net.config import parse_config
from pan_runtime.net.daemon import prometheus_text
from pan_runtime.node import threadcpus
from pan_runtime.node.config import NodeConfig
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.resources import cases_dir
from pan_runtime.testing import build_case

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
PORT = 7
PEERS = 4
EACH = 30


@pytest.fixture
def tmpdir_short():
    d = short_dir()
    yield d
    remove_tree(d)


def _lane_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pan-lane-")]


@contextlib.contextmanager
def _star(d: Path, runtime: str, threads: int = 2, peers: int = PEERS, limits: str = ""):
    """The middle (``threads`` threads), ``peers`` fake neighbours and a receiver daemon."""
    mport, rport, *pports = free_udp_ports(2 + peers)
    peers = [FakePeer(p) for p in pports]
    mid = [
        "[node]", 'name = "middle"', f'listen = ["127.0.0.1:{mport}"]', 'app_socket = "middle.sock"',
        *(x for p in pports for x in ("[[neighbors]]", f'address = "127.0.0.1:{p}"')),
        "[[neighbors]]", f'address = "127.0.0.1:{rport}"',
        "[limits]", f"threads = {threads}", "budget_time_ms = 1000", limits,
    ]
    rcv = ["[node]", 'name = "receiver"', f'listen = ["127.0.0.1:{rport}"]', 'app_socket = "receiver.sock"',
           "[[neighbors]]", f'address = "127.0.0.1:{mport}"']
    (d / "middle.toml").write_text("\n".join(mid) + "\n")
    (d / "receiver.toml").write_text("\n".join(rcv) + "\n")
    ds = []
    try:
        ds = [daemon_from(d / "middle.toml"), daemon_from(d / "receiver.toml")]
        middle, receiver = ds
        code = reference_code(runtime, "forward")
        pm = reference_code("restricted_py", "portmapper")
        for node in (middle.node, receiver.node):
            node.install(code)
            node.install(pm)
            node.use_portmapper(pm)
        app = Application(receiver.node)
        app.bind(PORT)
        yield types.SimpleNamespace(ds=ds, middle=middle, receiver=receiver, peers=peers, code=code, app=app, mport=mport)
    finally:
        for x in ds:
            x.close()
        for p in peers:
            p.close()


def _send(t, code, tag: bytes, each: int = EACH) -> int:
    """Every peer sends ``each`` forwards toward the receiver (one peer after the other)."""
    for k, peer in enumerate(t.peers):
        for i in range(each):
            body = forward_body(t.receiver.node.address, tag + struct.pack(">HH", k, i))
            peer.send(capsule_bytes(code, body, peer.address), t.mport)
    return len(t.peers) * each


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_threads_both_forward_and_every_figure_adds_up(tmpdir_short, runtime):
    with _star(tmpdir_short, runtime) as t:
        total = _send(t, t.code, b"two")
        assert pump(t.ds, lambda: t.app.pending == total)
        got = sorted(d.data[20:] for d in t.app.deliveries())
        assert got == sorted(b"two" + struct.pack(">HH", k, i) for k in range(PEERS) for i in range(EACH))
        s = t.middle.statistics()
        fast = s["links"]["fast_path"]
        per = fast["threads"]
        assert len(per) == 2
        assert all(th["finished_in_c"] > 0 for th in per), per  # both threads forwarded
        for k in ("finished_in_c", "python_runs", "handed_over", "slow", "dropped_in_c"):
            assert sum(th[k] for th in per) == fast[k]
        assert fast["finished_in_c"] + fast["python_runs"] + fast["handed_over"] == total
        assert s["received"] == total and s["sent"] == total and s["dropped"] == 0
        c = s["code"][t.code.hex_name]
        assert c["capsules_in"] == total and c["forwarded"] == total
        links = s["links"]["neighbors"]
        assert sum(links[str(p.address)]["received"] for p in t.peers) == total
        assert links[str(t.receiver.node.address)]["sent"] == total
        assert s["links"]["syscalls"]["recv_datagrams"] >= total
        text = prometheus_text(s)
        assert f'pan_fast_path_capsules_total{{path="finished_in_c"}} {fast["finished_in_c"]}' in text
        for i, th in enumerate(per):
            assert f'pan_fast_path_thread_capsules_total{{thread="{i}"}} {th["finished_in_c"]}' in text
        assert t.middle.loop.errors == 0 and all(lane.errors == 0 for lane in t.middle.transport.lanes)
        assert fast["lock_held_ns"] > 0  # the serial part of the threads' work is measured
        assert "fast path threads: carried out in C " + " / ".join(str(th["finished_in_c"]) for th in per) in format_stats(s)


def test_without_sockets_of_their_own_the_kernel_spreads_the_neighbours_over_the_threads():
    # no neighbour has a socket of its own: every datagram reaches the node's port, where the
    # kernel picks one socket of the SO_REUSEPORT group by the source's address and port (16
    # sources all hashed to one of two sockets: a chance of 2 in 65536)
    d = short_dir()
    try:
        with _star(d, "native", peers=16, limits="neighbour_sockets = 0") as t:
            assert all(link.rx is None for link in t.middle.transport.links.values())
            total = _send(t, t.code, b"k", each=5)
            assert pump(t.ds, lambda: t.app.pending == total)
            s = t.middle.statistics()
            per = s["links"]["fast_path"]["threads"]
            assert all(th["finished_in_c"] > 0 for th in per) and sum(th["finished_in_c"] for th in per) == total, per
            assert s["received"] == s["sent"] == total
    finally:
        remove_tree(d)


@pytest.mark.parametrize("runtime", ["wasm", "jvm", "restricted_py"])  # code that raises: not in native
def test_a_fault_on_either_thread_is_contained(tmpdir_short, runtime):
    with _star(tmpdir_short, runtime) as t:
        hostile = build_case(cases_dir() / "raise", runtime, default_plugins())
        t.middle.node.install(hostile)
        for peer in t.peers:  # one faulting capsule from every neighbour: both threads run one
            peer.send(capsule_bytes(hostile, b"x" * 8, peer.address), t.mport)
        total = _send(t, t.code, b"after")
        assert pump(t.ds, lambda: t.app.pending == total)
        s = t.middle.statistics()
        h = s["code"][hostile.hex_name]
        assert h["capsules_in"] == PEERS and h["dropped"] == PEERS and h["errors"] == PEERS, h
        per = s["links"]["fast_path"]["threads"]
        assert all(th["handed_over"] > 0 for th in per), per  # a fault was handed over on each thread
        assert s["code"][t.code.hex_name]["forwarded"] == total
        assert all(lane.alive and lane.errors == 0 for lane in t.middle.transport.lanes)
        assert t.middle.loop.errors == 0


def test_close_ends_every_thread_and_frees_the_port(tmpdir_short):
    before = len(_lane_threads())
    with _star(tmpdir_short, "native", threads=3) as t:
        total = _send(t, t.code, b"c")
        assert pump(t.ds, lambda: t.app.pending == total)
        lanes = t.middle.transport.lanes
        assert len(lanes) == 2 and all(lane.alive for lane in lanes)
        assert len(_lane_threads()) == before + 2
        socks = [s for lane in lanes for s in lane.sockets.values()]
        rx = [link.rx for link in t.middle.transport.links.values()]
        t.middle.close()
        assert len(_lane_threads()) == before
        assert not any(lane.alive for lane in lanes)
        assert all(s.fileno() == -1 for s in socks + rx)
        # nothing holds the middle's port any more: a socket without SO_REUSEPORT can bind it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", t.mport))


@pytest.mark.parametrize("value", ["0", "65", "true", "1.5"])
def test_threads_is_a_validated_limit(value):
    text = '[node]\nlisten = ["127.0.0.1:0"]\n[limits]\nthreads = '
    assert parse_config(text + "64\n", "n.toml").node.threads == 64
    assert parse_config(text[: -len("threads = ")], "n.toml").node.threads == 1  # the default
    with pytest.raises(ConfigError, match="limits.threads"):
        parse_config(text + value + "\n", "n.toml")
    with pytest.raises(ConfigError, match="NodeConfig.threads"):
        NodeConfig(threads=0 if value == "0" else 65)


def test_threads_need_the_fast_path(tmpdir_short):
    (tmpdir_short / "n.toml").write_text('[node]\nlisten = ["127.0.0.1:0"]\n[limits]\nthreads = 2\nfast_path = false\n')
    with pytest.raises(ConfigError, match="threads = 2 needs the compiled fast path"):
        daemon_from(tmpdir_short / "n.toml")


def _thread_of(t, peer) -> int:
    tr = t.middle.transport
    link = tr.links[peer.address]
    lane = tr._rx_lane.get(link.rx)
    return 0 if lane is None else lane.index


def _send_chunks(t, peers, tag: bytes, each: int, chunk: int = 100) -> None:
    """``each`` forwards from every one of ``peers``, a chunk at a time (the receiver keeps up)."""
    sent = t.app.pending
    for start in range(0, each, chunk):
        for k, peer in peers:
            for i in range(start, min(each, start + chunk)):
                body = forward_body(t.receiver.node.address, tag + struct.pack(">HH", k, i))
                peer.send(capsule_bytes(t.code, body, peer.address), t.mport)
                sent += 1
        assert pump(t.ds, lambda sent=sent: t.app.pending == sent)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_busy_neighbours_on_one_thread_are_spread_over_both(tmpdir_short, runtime):
    from pan_runtime.net.balance import MIN_DATAGRAMS

    with _star(tmpdir_short, runtime) as t:
        busy = [(0, t.peers[0]), (2, t.peers[2])]  # the threads took neighbours in turn: both on thread 0
        assert [_thread_of(t, p) for _, p in busy] == [0, 0]
        each = MIN_DATAGRAMS // 2 + 100
        _send_chunks(t, busy, b"a", each)
        t.middle.transport.balance()  # the fold may have done it already: once is enough
        s = t.middle.statistics()
        assert s["links"]["fast_path"]["neighbour_moves"] >= 1
        assert sorted(_thread_of(t, p) for _, p in busy) == [0, 1]
        before = [th["finished_in_c"] for th in s["links"]["fast_path"]["threads"]]
        moves = s["links"]["fast_path"]["neighbour_moves"]
        first = t.app.pending
        _send_chunks(t, busy, b"b", each)
        s = t.middle.statistics()
        after = [th["finished_in_c"] for th in s["links"]["fast_path"]["threads"]]
        assert all(a - b >= each for a, b in zip(after, before, strict=True)), (before, after)  # each thread carried one
        assert s["links"]["fast_path"]["neighbour_moves"] == moves  # an even load stays where it is
        got = [d.data[20:] for d in t.app.deliveries()][first:]
        for k, _ in busy:  # every capsule arrived, each neighbour's in the order sent
            assert [g for g in got if g[1:3] == struct.pack(">H", k)] == [b"b" + struct.pack(">HH", k, i) for i in range(each)]
        assert s["dropped"] == 0 and s["received"] == s["sent"]
        assert f"neighbour sockets moved between them {moves}" in format_stats(s)
        assert f"pan_fast_path_neighbour_moves_total {moves}\n" in prometheus_text(s)


@pytest.mark.parametrize("old", [0, 1])  # the event loop's thread, a lane
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_socket_moved_while_its_neighbour_waits_holds_back_nobody_on_its_old_thread(tmpdir_short, runtime, old):
    # two neighbours queue at once on thread 0, whose fair share serves them in turns, each
    # visit leaving datagrams behind (both marked busy); one moves to thread 1 meanwhile. Its
    # old thread must forget the mark: a busy source it no longer reads would stay the
    # least-served one for ever, and the neighbour left there would get nothing once it is a
    # quantum ahead of it (the thread then spun on a readable socket it would not read).
    # From the event loop's thread (old=0) the mark is certain: that thread runs only inside
    # pump. A lane runs on its own and may have emptied both sockets before the move, so
    # old=1 checks the move off a lane and its outcome, not always with a mark left behind.
    with _star(tmpdir_short, runtime) as t:
        busy = [(old, t.peers[old]), (old + 2, t.peers[old + 2])]  # dealt in turn: both on thread `old`
        assert [_thread_of(t, p) for _, p in busy] == [old, old]
        each = 150
        for i in range(each):
            for k, peer in busy:
                body = forward_body(t.receiver.node.address, b"q" + struct.pack(">HH", k, i))
                peer.send(capsule_bytes(t.code, body, peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending >= 40)
        moved = t.middle.transport.balance(least=20) + t.middle.statistics()["links"]["fast_path"]["neighbour_moves"]
        assert moved >= 1 and sorted(_thread_of(t, p) for _, p in busy) == [0, 1]
        assert pump(t.ds, lambda: t.app.pending == 2 * each)
        _send_chunks(t, busy, b"r", 300)  # and on: both threads serve theirs, neither is held back
        got = [d.data[20:] for d in t.app.deliveries()]
        for k, _ in busy:
            assert sorted(g for g in got if g[:1] == b"r" and g[1:3] == struct.pack(">H", k)) == [
                b"r" + struct.pack(">HH", k, i) for i in range(300)]
        s = t.middle.statistics()
        assert s["dropped"] == 0 and s["received"] == s["sent"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_runaway_handed_over_by_a_lane_is_demoted_and_stopped_by_that_lane(tmpdir_short, runtime):
    # a capsule that loops, from a neighbour a lane reads, in process isolation: the lane hands
    # the batch to the worker itself, so it also makes the batch's demotion and budget looks.
    # The event loop does not turn meanwhile (its wait, timed before the batch went down, may
    # sleep past those looks): with the looks left to it, nothing would demote the worker or
    # end the capsule here, and the guard would run out.
    with _star(tmpdir_short, runtime, limits=f'[runtimes.{runtime}]\nisolation = "process"') as t:
        spin = build_case(cases_dir() / "spin", runtime, default_plugins())
        t.middle.node.install(spin)
        peer = t.peers[1]  # dealt in turn: on thread 1
        assert _thread_of(t, peer) == 1
        total = _send(t, t.code, b"w")  # every worker up
        assert pump(t.ds, lambda: t.app.pending == total)
        counters = t.middle.node.codes.runtimes[runtime].counters
        demotions, kills = counters["worker_demotions"], counters["worker_kills"]
        peer.send(capsule_bytes(spin, b"x" * 8, peer.address), t.mport)
        end = time.monotonic() + 60  # a hang guard: the budget is 1 s
        while time.monotonic() < end:
            s = t.middle.statistics()
            if s["code"].get(spin.hex_name, {}).get("dropped"):
                break
            time.sleep(0.01)
        c = s["code"][spin.hex_name]
        assert c["capsules_in"] == 1 and c["dropped"] == 1, c
        assert s["links"]["fast_path"]["threads"][1]["to_worker"] >= 1 + EACH  # thread 1 handed it over
        assert counters["worker_demotions"] == demotions + 1
        # at its budget's end: the runtime stopped it (restored to the normal priority for that),
        # or the node killed its worker (native code cannot stop itself)
        assert c["drops"] in ({FaultReason.KILLED_BUDGET: 1}, {FaultReason.BUDGET: 1}), c
        assert runtime != "native" or FaultReason.KILLED_BUDGET in c["drops"]
        assert counters["worker_kills"] == kills + (FaultReason.KILLED_BUDGET in c["drops"])
        again = _send(t, t.code, b"again")  # and the node goes on forwarding, on both threads
        assert pump(t.ds, lambda: t.app.pending == total + again)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_lane_hands_batches_to_workers_and_carries_out_their_verdicts_in_c(tmpdir_short, runtime):
    # process isolation on two threads: the capsules of the neighbours thread 1 reads go to
    # the worker and their forwards leave from C (worker lanes, under the node's lock as the
    # rest of a visit), beside thread 0's own; every capsule arrives, in order per neighbour.
    # No budget or demotion look comes due (a look takes the lane back: on a loaded machine
    # every batch could be the node's then)
    keep = "worker_grace_ms = 60000\nworker_demote_ms = 60000\n"
    with _star(tmpdir_short, runtime, limits=f'{keep}[runtimes.{runtime}]\nisolation = "process"') as t:
        total = _send(t, t.code, b"w")  # every worker up, its lane granted
        assert pump(t.ds, lambda: t.app.pending == total)
        ones = [(k, p) for k, p in enumerate(t.peers) if _thread_of(t, p) == 1]
        assert len(ones) == PEERS // 2
        before = t.middle.statistics()
        _send_chunks(t, ones, b"a", 300)  # thread 1 alone reads these
        s = t.middle.statistics()
        admitted, finished = (s[k] - before[k] for k in ("fast_lane_admitted", "fast_lane_finished"))
        assert admitted >= 1 and 1 <= finished <= admitted, (admitted, finished)
        threads = [th["to_worker"] - b["to_worker"] for th, b in
                   zip(s["links"]["fast_path"]["threads"], before["links"]["fast_path"]["threads"], strict=True)]
        assert threads == [0, 300 * len(ones)], threads
        first = total
        _send_chunks(t, list(enumerate(t.peers)), b"b", 300)  # and both threads at once
        got = [d.data[20:] for d in t.app.deliveries()]
        for tag, peers in ((b"a", ones), (b"b", list(enumerate(t.peers)))):
            for k, _ in peers:
                assert [g for g in got[first:] if g[:1] == tag and g[1:3] == struct.pack(">H", k)] == [
                    tag + struct.pack(">HH", k, i) for i in range(300)]
        s = t.middle.statistics()
        assert s["dropped"] == 0 and s["received"] == s["sent"] == total + 300 * (len(ones) + PEERS)
        assert s["code"][t.code.hex_name]["forwarded"] == s["sent"]
        assert t.middle.loop.errors == 0 and all(lane.errors == 0 for lane in t.middle.transport.lanes)


@contextlib.contextmanager
def _kept_affinity():
    """The test's own thread back on its CPUs afterwards (the node pins the thread that runs
    its loop), and ``threadcpus`` forgetting what it saw."""
    mine = os.sched_getaffinity(0)
    try:
        yield sorted(mine)
    finally:
        os.sched_setaffinity(0, mine)
        threadcpus._before = None


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_thread_cpus_put_each_thread_on_its_cpu_and_workers_on_the_nodes_cpus(tmpdir_short, runtime):
    # limits.thread_cpus: the event loop's thread on the first CPU, the lane on the second (the
    # same one again on a machine with one); the runtime's workers, started by the pinned loop
    # thread, still get every CPU the process had, not that thread's one
    with _kept_affinity() as mine:
        cpus = [mine[-1], mine[0]]  # the loop's thread away from where the test started, if it can
        limits = f'thread_cpus = [{cpus[0]}, {cpus[1]}]\n[runtimes.{runtime}]\nisolation = "process"'
        with _star(tmpdir_short, runtime, limits=limits) as t:
            total = _send(t, t.code, b"pin")
            assert pump(t.ds, lambda: t.app.pending == total)
            lane = t.middle.transport.lanes[0]
            assert os.sched_getaffinity(0) == {cpus[0]}
            assert os.sched_getaffinity(lane._thread.native_id) == {cpus[1]}
            per = t.middle.statistics()["links"]["fast_path"]["threads"]
            assert [th["cpu"] for th in per] == cpus and all(th["to_worker"] > 0 for th in per), per
            assert f"on CPUs {cpus[0]} / {cpus[1]}" in format_stats(t.middle.statistics())
            # the worker (and the spare) started before the loop's first turn; kill it, so that
            # the pinned loop thread starts the next ones
            before = _children()
            first = t.middle.node.cache.peek(t.code.name).loaded.pid
            os.kill(first, signal.SIGKILL)
            loaded = t.middle.node.cache.peek(t.code.name).loaded
            assert pump(t.ds, lambda: loaded.pid not in (None, first) and _children() - before)
            more = _send(t, t.code, b"again")
            assert pump(t.ds, lambda: t.app.pending == total + more)
            started = _children() - before
            assert {pid: os.sched_getaffinity(pid) for pid in started} == dict.fromkeys(started, set(mine))
            assert lane.errors == 0


def _children() -> set[int]:
    """The processes this one started that are alive."""
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out.update(int(p) for p in f.read().split())
    return out


def test_thread_cpus_the_node_may_not_run_on_are_refused(tmpdir_short):
    with _kept_affinity():
        outside = max(os.sched_getaffinity(0)) + 1
        gc.collect()  # what earlier tests left for the collector is closed before the count, not during it
        fds = len(os.listdir("/proc/self/fd"))
        with pytest.raises(ConfigError, match=f"limits.thread_cpus names CPU {outside}, which this node may not run on"):
            with _star(tmpdir_short, "native", limits=f"thread_cpus = [0, {outside}]"):
                pass
        gc.collect()
        assert len(os.listdir("/proc/self/fd")) == fds  # the refused node left no socket or epoll open
