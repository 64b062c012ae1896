"""The ``dispatch`` experiment: per-capsule processing time inside one node, no sockets.

Capsules of the ``forward`` protocol are queued at the middle node of an in-process sender -
middle - receiver network, and the time for the node to evaluate them (parse, look up code,
run ``accept``, carry out the verdict, hand the capsule to the link) is divided by their
count. Runtime ``null`` is the built-in baseline (a plain Python function doing the forward
inside the same node); ``bare`` is a loop that only parses each capsule and re-sends it,
without the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE, Capsule, encode_header
from pan_runtime.errors import PanError
from pan_runtime.net.network import Network
from pan_runtime.node.node import NodeConfig

from .options import IP_UDP_OVERHEAD, split_cell

__all__ = ["FORWARD_HDR", "dispatch_experiment", "forward_capsule"]

FORWARD_HDR = 20


def forward_capsule(code_name: bytes, home: NodeAddress, dest: NodeAddress, size: int) -> bytes:
    """A ``forward`` capsule of IP packet size ``size`` from ``home`` toward ``dest``."""
    body_len = size - IP_UDP_OVERHEAD - HEADER_SIZE
    body = dest.raw + (7).to_bytes(2, "big") + b"\0\0" + bytes(body_len - FORWARD_HDR)
    return encode_header(code_name, home) + body


def _bare_loop(wire: bytes, count: int, trials: int, warmup: int) -> list[float]:
    """Parse and re-send without a node: the floor any node pays."""
    from pan_runtime.data.segments import SegmentPool

    samples = []
    with SegmentPool(max(len(wire), 64), 64) as pool:
        sink: list[int] = []
        for t in range(trials + warmup):
            segs = []
            for _ in range(min(count, 64)):
                s = pool.allocate(len(wire))
                s.view()[:] = wire
                segs.append(s)
            reps = max(1, count // len(segs))
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                for s in segs:
                    cap = Capsule.parse(s)
                    cap.hop_limit -= 1
                    sink.append(len(cap.buffers()[0]))
                    cap.release()
                sink.clear()
            dt = time.perf_counter_ns() - t0
            for s in segs:
                s.release()
            if t >= warmup:
                samples.append(dt / (reps * len(segs)) / 1000)
    return samples


def dispatch_experiment(
    runtime: str,
    size: int,
    *,
    count: int,
    trials: int,
    batch: int,
    warmup: int = 1,
    copy: bool = False,
    progress: Callable[[str], None] | None = None,
    workers: list[int] | None = None,
) -> list[float]:
    """Per-capsule middle-node times (µs), one sample per trial after ``warmup`` trials.
    ``runtime`` is a cell's runtime (``native/process``: the middle runs it in process
    isolation, and the workers it has up at the end are appended to ``workers``)."""
    label = runtime
    runtime, isolation = split_cell(label)
    if runtime == "bare":
        wire = forward_capsule(b"\1" * 32, NodeAddress.from_int(1), NodeAddress.from_int(3), size)
        return _bare_loop(wire, count, trials, warmup)
    code = reference_code(runtime, "forward")
    base = dict(batch=batch, queue_limit=count + 16, pool_buffers=count + 64, pool_buffer_size=max(9216, size), copy_on_send=copy)
    net = Network(config=NodeConfig(**base))  # type: ignore[arg-type]
    net.add_node()
    net.config = NodeConfig(isolation={runtime: isolation}, worker_standbys=0, **base)  # type: ignore[arg-type]
    # the middle, the node timed; in process isolation it waits for each batch's verdicts, so
    # the time of a batch is that of its capsules (the socket topologies run it asynchronously)
    net.add_node().offload.asynchronous = False
    net.config = NodeConfig(**base)  # type: ignore[arg-type]
    net.add_node()
    net.connect("n1", "n2")
    net.connect("n2", "n3")
    net.compute_routes()
    with net:
        sender, middle, receiver = net.nodes
        net.install(code)
        wire = memoryview(forward_capsule(code.name, sender.address, receiver.address, size))
        samples = []
        for t in range(trials + warmup):
            for _ in range(count):
                middle.receive_buffers([wire], sender.address)
            t0 = time.perf_counter_ns()
            middle.process()
            dt = time.perf_counter_ns() - t0
            _drain(receiver)  # what arrived at the receiver (not timed)
            if t >= warmup:
                samples.append(dt / count / 1000)
            if progress:
                progress(f"dispatch {label} {size}B trial {t + 1}/{trials + warmup}")
        fwd = middle.cache.peek(code.name)
        assert fwd is not None
        drops = middle.stats.drops + fwd.stats.drops
        if drops:
            raise PanError(f"dispatch {runtime} {size}B: the middle node dropped capsules: {dict(drops)}")
        if fwd.stats.forwarded != count * (trials + warmup):
            raise PanError(f"dispatch {label}: forwarded {fwd.stats.forwarded} of {count * (trials + warmup)}")
        if workers is not None and isolation == "process":
            workers.append(middle_workers(middle, runtime))
        return samples


def middle_workers(node: Any, runtime: str) -> int:
    """Worker processes ``node`` has up for ``runtime`` (0 when it runs it in-process)."""
    return int(node.statistics().get("workers", {}).get(runtime, {}).get("workers", 0))


def _drain(node: Any) -> None:
    node.queue.clear()
