"""A worker serving its channel in C (``_batchloop.BatchLoop.serve``, driven by
``pan_runtime.net.worker``): after its first batch, a worker whose code object has a C batch
entry reads the node's records, runs the batches, writes their verdicts and sleeps without
Python, and hands Python only what needs it. Through the public API, on every runtime: many
batches in a row run in the C entry only; a capsule whose code calls the node mid-batch, a
fault mid-batch and control records between batches give what they give in the node's own
process; a down ring whose frames make no sense ends the worker as a protocol breach."""

from __future__ import annotations

import struct

import pytest
from batchloop_cases import PORT, RUNTIMES, build_faulty, outcome, pair
from node_lines import node_line

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.isolation import _batchloop  # noqa: F401  (the extension under test must be built)
from pan_runtime.isolation.mechanism import process_unavailable
from pan_runtime.isolation.protocol import EXIT_PROTOCOL, Kind
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.protocol_headers import PingHdr

#: batches in a row (the first is served by Python: it makes the worker's loop)
ROUNDS = 12

pytestmark = pytest.mark.skipif(
    process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}"
)




def _forwards(net: Network, runtime: str, rounds: int) -> tuple[CodeObject, Application]:
    """``rounds`` batches of 16 forwards from n1 to n2's unbound port, one ``run`` each."""
    a, b = net.nodes
    code = reference_code(runtime, "forward", net.plugins)
    net.install(code)
    app = Application(a)
    body = b.address.raw + (4242).to_bytes(2, "big") + bytes(46)
    for _ in range(rounds):
        for _ in range(16):
            app.send(code, body)
        net.run()
    return code, app


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_many_batches_in_a_row_run_in_the_c_entry_only(runtime: str):
    with pair(runtime, "process", 16) as net:
        code, _ = _forwards(net, runtime, ROUNDS)
        b = net.nodes[1]
        stats = b.cache.peek(code.name).stats  # type: ignore[union-attr]
        workers = b.statistics()["workers"][runtime]
        assert stats.capsules_in == 16 * ROUNDS and stats.drops["no_port"] == 16 * ROUNDS, stats.as_dict()
        assert stats.errors == 0, stats.as_dict()
        assert (workers["entry_calls"], workers["entry_capsules"], workers["python_capsules"]) == (
            ROUNDS,
            16 * ROUNDS,
            0,
        ), workers
        assert workers["restarts"] == 0 and workers["kills"] == 0, workers


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_both_rings_wrap_many_times_while_the_worker_serves_in_c(runtime: str):
    """Batches of 32 capsules with 1400-byte bodies: the down ring (1 MiB) wraps every few
    dozen batches, the up ring (its verdicts, 784 bytes a batch) once past 1338 batches."""
    rounds = 1500
    with pair(runtime, "process", 32) as net:
        a, b = net.nodes
        code = reference_code(runtime, "forward", net.plugins)
        net.install(code)
        app = Application(a)
        body = b.address.raw + (4242).to_bytes(2, "big") + bytes(1400)
        for _ in range(rounds):
            for _ in range(32):
                app.send(code, body)
            net.run()
        ch = b.cache.peek(code.name).loaded.proc.ch  # type: ignore[union-attr]
        assert ch.down.head > 10 * ch.ring_size and ch.up.cursor > ch.ring_size, (ch.down.head, ch.up.cursor)
        stats = b.cache.peek(code.name).stats  # type: ignore[union-attr]
        workers = b.statistics()["workers"][runtime]
        assert stats.capsules_in == 32 * rounds and stats.drops["no_port"] == 32 * rounds, stats.as_dict()
        assert (workers["entry_capsules"], workers["python_capsules"]) == (32 * rounds, 0), workers
        assert workers["restarts"] == 0, workers


def _pings(runtime: str, mechanism: str) -> tuple[list[int], dict, bytes | None, dict]:
    """Rounds of pings from n1 to n3, n2, n3, n2, n3 (one batch at n2 each): those for n3 pass
    n2 in its C entry, those for n2 call the node from the middle of the batch (soft state,
    the clock: the worker's host forwards them), the rest of the batch then runs in C. The
    sequence numbers answered, n2's counts of the ping code, its "pinged" counter and worker
    statistics."""
    plain = NodeConfig(budget=Budget(time_ms=200))
    isolated = NodeConfig(isolation={runtime: mechanism}, budget=Budget(time_ms=200), batch=32)
    with node_line(plain, isolated, plain) as net:
        a, b, c = net.nodes
        ping = reference_code(runtime, "ping", net.plugins)
        net.install(ping)
        app = Application(a)
        app.bind(PORT)
        seq = 0
        for _ in range(4):
            for dest in [c, b, c, b, c]:
                app.send(ping, PingHdr(dest=dest.address.raw, port=PORT, phase=0, seq=seq).pack() + bytes(16))
                seq += 1
            net.run()
        answered = sorted(h.seq for h in (PingHdr.unpack(d.data) for d in app.deliveries()) if h.phase == 1)
        entry = b.cache.peek(ping.name)
        assert entry is not None
        pinged = entry.state.get(b"pinged")
        return (
            answered,
            outcome(entry.stats.as_dict()),
            bytes(pinged) if pinged is not None else None,
            b.statistics()["workers"],
        )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_capsules_that_call_the_node_mid_batch_in_c_get_their_in_process_verdicts(runtime: str):
    inproc = _pings(runtime, "in_process")
    answered, stats, pinged, workers = _pings(runtime, "process")
    assert answered == inproc[0] == list(range(20))
    assert stats == inproc[1]
    assert pinged == inproc[2] == (8).to_bytes(8, "big")  # every ping for n2 wrote soft state
    w = workers[runtime]
    assert w["python_capsules"] == 0, w
    assert w["entry_capsules"] == stats["capsules_in"], (w, stats)
    assert w["restarts"] == 0, w



def _export(node, entry) -> object:
    """An export call on the code object (a control record for a worker): its value or error type."""
    try:
        return node.call_export(entry, "twice", 20, 2)
    except PanError as exc:
        return type(exc).__name__


def _faults(
    runtime: str, mechanism: str, code: CodeObject, ops: list[int]
) -> tuple[dict, list[object], dict]:
    """Rounds of capsules from n1 to n2 (one batch there each, ``ops``: 1 faults) with an
    export call between rounds: n2's counts of the code object, the export calls' values,
    its worker statistics."""
    with pair(runtime, mechanism, 8) as net:
        a, b = net.nodes
        net.install(code)
        app = Application(a)
        entry = b.cache.peek(code.name)
        exports = []
        for _ in range(4):
            for op in ops:
                app.send(code, bytes([op]) + b.address.raw + bytes(15))
            net.run()
            entry = b.cache.peek(code.name)
            assert entry is not None
            exports.append(_export(b, entry))
        return outcome(entry.stats.as_dict()), exports, b.statistics()["workers"]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    "ops", [[0, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 1]], ids=["none", "mid", "last"]
)
def test_faults_and_control_records_between_batches_served_in_c(runtime: str, ops: list[int]):
    if runtime == "native" and 1 in ops:
        pytest.skip(
            "[allowed-skip] native code cannot fault short of killing its worker (a trap is SIGILL): "
            "tests/test_supervisor.py"
        )
    code = build_faulty(runtime, ["twice"])
    inproc, inproc_exports, _ = _faults(runtime, "in_process", code, ops)
    stats, exports, workers = _faults(runtime, "process", code, ops)
    assert stats == inproc
    assert exports == inproc_exports == [42] * 4  # twice(20, 2) in the worker between batches
    faults = 4 * ops.count(1)
    assert stats["capsules_in"] == 4 * len(ops) and stats["errors"] == faults, stats
    assert "worker_down" not in stats["drops"], stats
    w = workers[runtime]
    assert w["entry_capsules"] + w["python_capsules"] == 4 * len(ops), w
    assert w["entry_capsules"] > 4, w  # batches after a fault or an export call were in C again
    assert w["restarts"] == 0, w


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("hostile", ["past_head", "crosses_end", "ring_ahead"])
def test_a_down_ring_frame_that_makes_no_sense_ends_the_worker_as_a_protocol_breach(
    runtime: str, hostile: str
):
    with pair(runtime, "process", 16) as net:
        code, _ = _forwards(net, runtime, 3)  # the worker serves in C and sleeps there now
        b = net.nodes[1]
        wc = b.cache.peek(code.name).loaded  # type: ignore[union-attr]
        proc = wc.proc.proc
        ring = wc.proc.ch.down
        view = wc.proc.ch.view
        size = ring.size
        # the down ring's tail: the worker's read cursor, released
        (tail,) = struct.unpack_from("<Q", view, 64)
        pos = tail % size
        if hostile == "past_head":  # a 100-byte record of which only its frame was written
            length, head = 100, tail + 16
        elif hostile == "crosses_end":  # a record running past the ring's end (head covers it)
            length = size - pos + 64 if pos else size // 2 + 64
            head = tail + 8 + length if pos else tail + size // 2
        else:  # a head more than a ring ahead of the reader
            length, head = 0, tail + 10 * size
        struct.pack_into("<II", view, ring.data_at + pos, length, Kind.BATCH)
        struct.pack_into("<Q", view, 0, head)
        wc.proc.ch.wake_worker()
        assert proc.wait(timeout=120) == EXIT_PROTOCOL  # a hang guard, not a deadline


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_up_ring_tail_outside_what_the_worker_wrote_ends_it_as_a_protocol_breach(runtime: str):
    with pair(runtime, "process", 16) as net:
        code, app = _forwards(net, runtime, 3)  # the worker serves in C and sleeps there now
        b = net.nodes[1]
        wc = b.cache.peek(code.name).loaded  # type: ignore[union-attr]
        proc = wc.proc.proc
        up = wc.proc.ch.up
        struct.pack_into("<Q", wc.proc.ch.view, up.data_at - 64, up.head + (1 << 40))  # the up ring's tail
        for _ in range(16):
            app.send(code, b.address.raw + (4242).to_bytes(2, "big") + bytes(46))
        net.run()
        assert proc.wait(timeout=120) == EXIT_PROTOCOL  # a hang guard, not a deadline
        workers = b.statistics()["workers"][runtime]
        assert workers["died_crash"] == 1, workers  # the node read the protocol breach
