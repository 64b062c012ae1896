"""``ping`` and ``flood`` on the ``inproc`` topology: sender, (middle,) receiver as nodes of one
in-process network, all running the runtime's reference protocols.

``none`` links the sender straight to the receiver; ``active`` puts a node in the middle;
``activecopy`` makes that middle node copy capsule data before sending it on. Each
configuration's network stays up while the runner takes one trial of each in turn, as on
the socket topologies, so drift of a shared machine hits every configuration alike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from pan_runtime.cli.protocols import ping_body, ping_rtt_us, reference_code
from pan_runtime.data.capsule import HEADER_SIZE
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.node import NodeConfig
from pan_runtime.protocol_headers import FloodHdr

from .options import IP_UDP_OVERHEAD, split_cell

__all__ = ["PORT", "InprocSession", "Trial", "body_length", "inproc_ping", "inproc_flood", "inproc_trials", "reference_set"]

PORT = 7


class Trial:
    """What one trial measured: samples (µs or capsules/s) and, for jvm, the samples taken
    while no garbage collection ran and how many collections ran."""

    def __init__(
        self,
        samples: list[float],
        clean: list[float] | None = None,
        gc_pauses: int | None = None,
        loss: float = 0.0,
        fast_share: float | None = None,
        woke_share: float | None = None,
    ):
        self.samples = samples
        self.clean = clean
        self.gc_pauses = gc_pauses
        #: share of the middle pan node's datagrams its UDP fast path carried out in C
        self.fast_share = fast_share
        #: flood only: the fraction of data capsules the receiver did not count
        self.loss = loss
        #: worker processes the middle had up for the runtime (process isolation only)
        self.workers: int | None = None
        #: share of the batches handed to the middle's polling workers that found them asleep
        #: (``--worker-poll-us`` only)
        self.woke_share = woke_share


def body_length(size: int) -> int:
    return size - IP_UDP_OVERHEAD - HEADER_SIZE


def reference_set(runtime: str) -> dict[str, CodeObject]:
    """The portmapper, ping and flood code objects of ``runtime`` (built once, then cached)."""
    return {p: reference_code(runtime, p) for p in ("portmapper", "ping", "flood")}


def _network(config: str, size: int, queue: int, middle: dict[str, str] | None = None) -> Network:
    base = dict(queue_limit=queue + 64, pool_buffers=queue + 128, pool_buffer_size=max(9216, size))
    net = Network(config=NodeConfig(**base))
    sender = net.add_node("sender")
    if config == "none":
        receiver = net.add_node("receiver")
        net.connect(sender, receiver)
    else:
        # in process isolation without warm standbys: the bench measures capsules, not restarts
        net.config = NodeConfig(copy_on_send=(config == "activecopy"), isolation=middle, worker_standbys=0, **base)  # type: ignore[arg-type]
        middle = net.add_node("middle")
        # in process isolation it waits for each batch: the in-process session measures the
        # cost of a capsule, lossless; a `pan node` middle (udp, netns) hands batches over and goes on
        middle.offload.asynchronous = False
        net.config = NodeConfig(**base)
        receiver = net.add_node("receiver")
        net.connect(sender, middle)
        net.connect(middle, receiver)
    net.compute_routes()
    return net


def _setup(net: Network, codes: dict[str, CodeObject]) -> Application:
    for code in codes.values():
        net.install(code, pin=True)
    for n in net.nodes:
        n.use_portmapper(codes["portmapper"])
    app = Application(net.nodes[0], "bench")
    app.bind(PORT)
    net.run()
    return app


class _GcClock:
    """Counts the JVM's collections (jvm only; a no-op elsewhere)."""

    def __init__(self, net: Network, runtime: str):
        self.rt = net.nodes[0].runtime("jvm") if runtime == "jvm" else None

    def read(self) -> int:
        return int(self.rt.gc_pauses()) if self.rt is not None else 0  # type: ignore[attr-defined]


class InprocSession:
    """One configuration's in-process network with ``runtime``'s reference protocols, kept
    up across trials so that the runner can take one trial of each configuration in turn
    (drift of a shared machine then hits every configuration alike)."""

    def __init__(self, experiment: str, runtime: str, config: str, size: int, count: int):
        self.label = runtime  # the cell's runtime: "native/process" runs the middle's native code in workers
        runtime, self.isolation = split_cell(runtime)
        self.experiment, self.runtime, self.config, self.size, self.count = experiment, runtime, config, size, count
        self.codes = reference_set(runtime)
        self.chunk = 64 if experiment == "ping" else 256
        self.net = _network(config, size, self.chunk, {runtime: self.isolation})
        try:
            self.app = _setup(self.net, self.codes)
            self.gc = _GcClock(self.net, runtime)
        except BaseException:
            self.net.close()
            raise
        self.dest = self.net.nodes[-1].address.raw
        self.flows = 0

    def close(self) -> None:
        self.net.close()

    def __enter__(self) -> InprocSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trial(self) -> Trial:
        t = self._ping() if self.experiment == "ping" else self._flood()
        if self.isolation == "process" and self.config != "none":
            from .dispatch import middle_workers

            t.workers = middle_workers(self.net.nodes[1], self.runtime)
        return t

    def _ping(self) -> Trial:
        """Round trips (µs) of ``count`` pings, one at a time, as the sender's application sees them."""
        app, net, gc, ping = self.app, self.net, self.gc, self.codes["ping"]
        rtts: list[float] = []
        clean: list[float] = []
        gc0 = gc.read()
        for seq in range(self.count):
            before = gc.read()
            app.send(ping, ping_body(self.dest, PORT, seq, body_length(self.size)))
            net.run()
            d = app.receive()
            rtt = ping_rtt_us(d.data, seq, time.monotonic_ns()) if d is not None else None
            if rtt is None:
                continue
            rtts.append(rtt)
            if gc.read() == before:
                clean.append(rtt)
        if not rtts:
            raise PanError(f"ping {self.runtime} {self.config} {self.size}B: no ping came back")
        jvm = self.runtime == "jvm"
        return Trial(rtts, clean if jvm else None, gc.read() - gc0 if jvm else None)

    def _flood(self) -> Trial:
        """Capsules per second the receiver counted, one sample (a new flow each trial)."""
        app, net, gc, flood, dest = self.app, self.net, self.gc, self.codes["flood"], self.dest
        self.flows += 1
        flow, count, chunk = self.flows, self.count, self.chunk
        pad = bytes(body_length(self.size) - FloodHdr.SIZE)
        every = max(1, count // 10)
        gc0 = gc.read()
        app.send(flood, FloodHdr(dest=dest, port=PORT, kind=0, flow=flow, report_every=every).pack() + pad)
        net.run()
        data = FloodHdr(dest=dest, port=PORT, kind=1, flow=flow, report_every=every)
        sent = 0
        while sent < count:
            for _ in range(min(chunk, count - sent)):
                data.seq = sent
                app.send(flood, data.pack() + pad)
                sent += 1
            net.run()
        reports = [FloodHdr.unpack(d.data) for d in app.deliveries() if len(d.data) >= FloodHdr.SIZE]
        reports = [r for r in reports if r.kind == 2 and r.flow == flow and r.elapsed_ns > 0]
        if not reports:
            raise PanError(f"flood {self.runtime} {self.config} {self.size}B: the receiver sent no report")
        last = max(reports, key=lambda r: r.count)
        gcs = gc.read() - gc0 if self.runtime == "jvm" else None
        return Trial([last.count / (last.elapsed_ns / 1e9)], None, gcs, 1.0 - last.count / count)


def inproc_trials(
    experiment: str,
    runtime: str,
    configs: list[str],
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[Trial]]:
    """``experiment`` (``ping`` or ``flood``) through every configuration in ``configs``, one
    trial of each in turn after ``warmup`` untimed rounds; the trials by configuration."""
    out: dict[str, list[Trial]] = {c: [] for c in configs}
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(InprocSession(experiment, runtime, c, size, count)) for c in configs]
        for t in range(warmup + trials):
            for session in sessions:
                trial = session.trial()
                if t >= warmup:
                    out[session.config].append(trial)
            if progress:
                progress(f"{experiment} inproc {runtime} {size}B trial {t + 1}/{warmup + trials}")
    return out


def inproc_ping(
    runtime: str,
    config: str,
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> list[Trial]:
    """Round trips (µs) of ``count`` pings per trial, one at a time, as the sender's application sees them."""
    return inproc_trials("ping", runtime, [config], size, count=count, trials=trials, warmup=warmup, progress=progress)[config]


def inproc_flood(
    runtime: str,
    config: str,
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> list[Trial]:
    """Capsules per second the receiver counted, one sample per trial (a new flow each)."""
    return inproc_trials("flood", runtime, [config], size, count=count, trials=trials, warmup=warmup, progress=progress)[config]
