"""A worker's C loop over its batches (``pan_runtime.isolation._batchloop``, driven by
``pan_runtime.net.worker``): real capsules of real code objects in ``process`` isolation, on
every runtime, through the public API. A batch of forwards crosses into the runtime once; a
capsule whose code makes a PNI call the C entry does not answer (the worker's host forwards
it to the node) and a capsule that faults in the middle of a batch give the same outcome as
in the node's own process, and the rest of the batch still runs. The node reads how its
workers ran their capsules from ``statistics()["workers"]``."""

from __future__ import annotations

import pytest
from batchloop_cases import PORT, RUNTIMES, build_faulty, outcome, pair
from node_lines import node_line

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.isolation import _batchloop  # noqa: F401  (the extension under test must be built)
from pan_runtime.isolation.mechanism import process_unavailable
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.protocol_headers import PingHdr

MECHANISMS = ("in_process", "process")

pytestmark = pytest.mark.skipif(process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}")




@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_batch_of_forwards_crosses_into_the_runtime_once(runtime: str):
    with pair(runtime, "process", 16) as net:
        a, b = net.nodes
        code = reference_code(runtime, "forward", net.plugins)
        net.install(code)
        app = Application(a)
        body = b.address.raw + (4242).to_bytes(2, "big") + bytes(46)  # to n2's unbound port
        for _ in range(16):
            app.send(code, body)
        net.run()
        workers = b.statistics()["workers"][runtime]
        stats = b.cache.peek(code.name).stats  # type: ignore[union-attr]
        assert stats.capsules_in == 16 and stats.drops["no_port"] == 16, stats.as_dict()
        assert (workers["entry_calls"], workers["entry_capsules"], workers["python_capsules"]) == (1, 16, 0), workers


def _line(runtime: str, mechanism: str) -> Network:
    """n1 - n2 - n3, ``runtime`` in ``mechanism`` on n2, the native portmapper on each."""
    plain = NodeConfig(budget=Budget(time_ms=200))
    return node_line(plain, NodeConfig(isolation={runtime: mechanism}, budget=Budget(time_ms=200), batch=32), plain)


def _pings(runtime: str, mechanism: str) -> tuple[list[int], dict, bytes | None, dict]:
    """Pings from n1 to n3, n2, n3, n2, n3: at n2 those for n3 only pass (hot calls: the C
    entry answers them), those for n2 read and write soft state and the clock (calls the
    worker's host forwards to the node). The sequence numbers answered, n2's counts of the
    ping code, its "pinged" counter, n2's worker statistics."""
    with _line(runtime, mechanism) as net:
        a, b, c = net.nodes
        ping = reference_code(runtime, "ping", net.plugins)
        net.install(ping)
        app = Application(a)
        app.bind(PORT)
        for seq, dest in enumerate([c, b, c, b, c]):
            app.send(ping, PingHdr(dest=dest.address.raw, port=PORT, phase=0, seq=seq).pack() + bytes(16))
        net.run()
        answered = sorted(h.seq for h in (PingHdr.unpack(d.data) for d in app.deliveries()) if h.phase == 1)
        entry = b.cache.peek(ping.name)
        assert entry is not None
        pinged = entry.state.get(b"pinged")
        return answered, outcome(entry.stats.as_dict()), bytes(pinged) if pinged is not None else None, b.statistics()["workers"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_capsule_that_calls_the_node_mid_batch_gets_the_verdict_it_gets_in_process(runtime: str):
    inproc = _pings(runtime, "in_process")
    answered, stats, pinged, workers = _pings(runtime, "process")
    assert answered == inproc[0] == [0, 1, 2, 3, 4]
    assert stats == inproc[1]
    assert pinged == inproc[2] == (2).to_bytes(8, "big")  # both pings for n2 wrote soft state
    w = workers[runtime]
    assert w["python_capsules"] == 0, w
    assert w["entry_capsules"] == stats["capsules_in"], (w, stats)
    assert w["entry_calls"] < w["entry_capsules"], w  # capsules shared calls, cut where the code called out



def _faults(runtime: str, mechanism: str, code: CodeObject) -> tuple[dict, dict]:
    """Five capsules from n1 to n2 in one batch there, the second and fourth faulting: n2's
    counts of the code object and its worker statistics."""
    with pair(runtime, mechanism, 8) as net:
        a, b = net.nodes
        net.install(code)
        app = Application(a)
        for op in (0, 1, 0, 1, 0):
            app.send(code, bytes([op]) + b.address.raw + bytes(15))
        net.run()
        entry = b.cache.peek(code.name)
        assert entry is not None
        return outcome(entry.stats.as_dict()), b.statistics()["workers"]


@pytest.mark.parametrize(
    "runtime",
    [
        pytest.param("native", marks=pytest.mark.skip(reason="[allowed-skip] native code cannot fault short of killing "
                                                           "its worker (a trap is SIGILL): tests/test_supervisor.py")),
        "wasm",
        "jvm",
        "restricted_py",
    ],
)
def test_a_fault_mid_batch_is_counted_with_its_reason_and_the_rest_still_run(runtime: str):
    code = build_faulty(runtime)
    inproc, _ = _faults(runtime, "in_process", code)
    stats, workers = _faults(runtime, "process", code)
    assert stats == inproc
    assert stats["capsules_in"] == 5 and stats["done"] == 3 and stats["errors"] == 2, stats
    assert sum(stats["drops"].values()) == 2 and "worker_down" not in stats["drops"], stats
    w = workers[runtime]
    assert w["entry_capsules"] >= 2, w  # the first fault came out of the C entry
    assert w["entry_capsules"] + w["python_capsules"] == 5, w
