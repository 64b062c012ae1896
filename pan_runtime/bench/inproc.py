"""``ping`` and ``flood`` on the ``inproc`` topology: sender, (middle,) receiver as nodes of one
in-process network, all running the runtime's reference protocols.

``none`` links the sender straight to the receiver; ``active`` puts a node in the middle;
``activecopy`` makes that middle node copy capsule data before sending it on.
"""

from __future__ import annotations

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

from .options import IP_UDP_OVERHEAD

__all__ = ["PORT", "Trial", "body_length", "inproc_ping", "inproc_flood", "reference_set"]

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
    ):
        self.samples = samples
        self.clean = clean
        self.gc_pauses = gc_pauses
        #: share of the middle pan node's datagrams its UDP fast path carried out in C
        self.fast_share = fast_share
        #: flood only: the fraction of data capsules the receiver did not count
        self.loss = loss


def body_length(size: int) -> int:
    return size - IP_UDP_OVERHEAD - HEADER_SIZE


def reference_set(runtime: str) -> dict[str, CodeObject]:
    """The portmapper, ping and flood code objects of ``runtime`` (built once, then cached)."""
    return {p: reference_code(runtime, p) for p in ("portmapper", "ping", "flood")}


def _network(config: str, size: int, queue: int) -> Network:
    base = dict(queue_limit=queue + 64, pool_buffers=queue + 128, pool_buffer_size=max(9216, size))
    net = Network(config=NodeConfig(**base))
    sender = net.add_node("sender")
    if config == "none":
        receiver = net.add_node("receiver")
        net.connect(sender, receiver)
    else:
        net.config = NodeConfig(copy_on_send=(config == "activecopy"), **base)
        middle = net.add_node("middle")
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
    codes = reference_set(runtime)
    out: list[Trial] = []
    with _network(config, size, 64) as net:
        app = _setup(net, codes)
        gc = _GcClock(net, runtime)
        dest = net.nodes[-1].address.raw
        ping = codes["ping"]
        for t in range(warmup + trials):
            rtts: list[float] = []
            clean: list[float] = []
            gc0 = gc.read()
            for seq in range(count):
                before = gc.read()
                app.send(ping, ping_body(dest, PORT, seq, body_length(size)))
                net.run()
                d = app.receive()
                rtt = ping_rtt_us(d.data, seq, time.monotonic_ns()) if d is not None else None
                if rtt is None:
                    continue
                rtts.append(rtt)
                if gc.read() == before:
                    clean.append(rtt)
            if not rtts:
                raise PanError(f"ping {runtime} {config} {size}B: no ping came back")
            if progress:
                progress(f"ping inproc {config} {runtime} {size}B trial {t + 1}/{warmup + trials}")
            if t >= warmup:
                out.append(Trial(rtts, clean if runtime == "jvm" else None, gc.read() - gc0 if runtime == "jvm" else None))
    return out


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
    codes = reference_set(runtime)
    out: list[Trial] = []
    chunk = 256
    with _network(config, size, chunk) as net:
        app = _setup(net, codes)
        gc = _GcClock(net, runtime)
        dest = net.nodes[-1].address.raw
        pad = bytes(body_length(size) - FloodHdr.SIZE)
        flood = codes["flood"]
        every = max(1, count // 10)
        for t in range(warmup + trials):
            flow = t + 1
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
                raise PanError(f"flood {runtime} {config} {size}B: the receiver sent no report")
            last = max(reports, key=lambda r: r.count)
            if progress:
                progress(f"flood inproc {config} {runtime} {size}B trial {t + 1}/{warmup + trials}")
            if t >= warmup:
                gcs = gc.read() - gc0 if runtime == "jvm" else None
                out.append(Trial([last.count / (last.elapsed_ns / 1e9)], None, gcs, 1.0 - last.count / count))
    return out
