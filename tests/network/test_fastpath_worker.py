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
import signal
import struct
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
        # every capsule went down in a batch C wrote, with one call into Python per batch
        assert mid["to_worker"] == N and w["fast_capsules"] == N and 1 <= w["fast_batches"] <= N
        assert mid["crossings"] == w["fast_batches"] and mid["handed_over"] == mid["slow"] == mid["python_runs"] == 0
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
        assert _fast(t.middle)["to_worker"] >= 1 + min(8, taken)
        assert all(x.node.pool.available == x.node.pool.count for x in t.ds)
