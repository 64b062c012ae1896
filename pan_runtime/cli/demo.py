"""``pan demo``: ping and flood across sender - middle - receiver, in-process, per runtime.

For every available runtime whose plugin registered reference protocols (built-in or
installed) the demo builds the reference protocols, installs them on a
three-node in-process network, pings (round trip median and p99), floods (capsules/s as the
receiver reports it) and reads the middle node's per-capsule processing time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from pan_runtime.cli.protocols import ping_body, ping_rtt_us, reference_code
from pan_runtime.errors import PanError
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.node import NodeConfig
from pan_runtime.node.stats import format_table
from pan_runtime.plugin.plugins import Plugins, default_plugins
from pan_runtime.protocol_headers import FloodHdr

__all__ = ["DemoResult", "demo_runtime", "run_demo"]

PORT = 7


@dataclass
class DemoResult:
    runtime: str
    rtt_median_us: float
    rtt_p99_us: float
    flood_capsules_per_s: float
    flood_received: int
    middle_us: float


class Progress:
    """A one-line progress display on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, quiet: bool):
        self.on = not quiet
        self.tty = sys.stderr.isatty()

    def show(self, text: str) -> None:
        if not self.on:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def demo_runtime(
    runtime: str,
    *,
    pings: int = 200,
    count: int = 2000,
    size: int = 512,
    progress: Progress | None = None,
    plugins: Plugins | None = None,
) -> DemoResult:
    """Run ping and flood with ``runtime``'s reference protocols on a fresh 3-node network."""
    prog = progress or Progress(True)
    plugins = plugins or default_plugins()
    prog.show(f"{runtime}: building reference protocols")
    codes = {p: reference_code(runtime, p, plugins) for p in ("portmapper", "ping", "flood")}
    with Network.line(3, plugins=plugins, config=NodeConfig(queue_limit=8192, pool_buffers=4096)) as net:
        sender, middle, receiver = net.nodes
        for code in codes.values():
            net.install(code)
        for n in net.nodes:
            n.use_portmapper(codes["portmapper"])
        app = Application(sender)
        app.bind(PORT)
        net.run()
        # ping: one at a time, round trip stamped by the sender node's ping code
        rtts: list[float] = []
        for seq in range(pings):
            if seq % 50 == 0:
                prog.show(f"{runtime}: ping {seq}/{pings}")
            app.send(codes["ping"], ping_body(receiver.address.raw, PORT, seq, size))
            net.run()
            d = app.receive()
            rtt = ping_rtt_us(d.data, seq, time.monotonic_ns()) if d is not None else None
            if rtt is not None:
                rtts.append(rtt)
        if not rtts:
            raise PanError(f"{runtime}: no ping came back (sender drops: {dict(sender.stats.drops)})")
        # flood: a flow start, then data; the receiver reports back every `count` capsules
        fbody = max(size, FloodHdr.SIZE)
        fpad = bytes(fbody - FloodHdr.SIZE)
        start = FloodHdr(dest=receiver.address.raw, port=PORT, kind=0, flow=1, report_every=count)
        app.send(codes["flood"], start.pack() + fpad)
        net.run()
        chunk = 500
        data = FloodHdr(dest=receiver.address.raw, port=PORT, kind=1, flow=1, report_every=count)
        sent = 0
        while sent < count:
            n = min(chunk, count - sent)
            for _ in range(n):
                data.seq = sent
                app.send(codes["flood"], data.pack() + fpad)
                sent += 1
            net.run()
            prog.show(f"{runtime}: flood {sent}/{count}")
        reports = [FloodHdr.unpack(d.data) for d in app.deliveries() if len(d.data) >= FloodHdr.SIZE]
        reports = [r for r in reports if r.kind == 2]
        if not reports:
            raise PanError(f"{runtime}: the flood receiver sent no report (receiver drops: {dict(receiver.stats.drops)})")
        last = max(reports, key=lambda r: r.count)
        cps = last.count / (last.elapsed_ns / 1e9) if last.elapsed_ns else 0.0
        mid = middle.cache.peek(codes["flood"].name)
        middle_us = (mid.stats.time_ns / mid.stats.capsules_in / 1000) if mid and mid.stats.capsules_in else 0.0
        prog.done()
        return DemoResult(
            runtime,
            statistics.median(rtts),
            _percentile(rtts, 0.99),
            cps,
            last.count,
            middle_us,
        )


def run_demo(runtimes: list[str] | None = None, count: int = 2000, size: int = 512, quiet: bool = False, as_json: bool = False) -> int:
    plugins = default_plugins()
    infos = {i.name: i for i in plugins.runtime_infos()}
    from pan_runtime.cli.protocols import has_reference_sources

    have = {n for n, i in infos.items() if i.available and has_reference_sources(n, plugins)}
    wanted = list(dict.fromkeys(runtimes)) if runtimes else sorted(have)
    # what was not run and why: every runtime when none was named, else only those named
    named = set(wanted) if runtimes else set(infos) - {"null"}
    others = {
        n: "no reference protocols: its plugin registers none (the pan_register_sources hook)"
        for n, i in infos.items()
        if i.available and n in named and n not in have
    }
    prog = Progress(quiet)
    results: list[DemoResult] = []
    failed: dict[str, str] = {}
    t0 = time.monotonic()
    for rt in wanted:
        info = infos.get(rt)
        if info is None or not info.available:
            failed[rt] = info.reason if info else "no such runtime"
            continue
        if rt in others:
            continue
        try:
            results.append(demo_runtime(rt, count=count, size=size, progress=prog, plugins=plugins))
        except PanError as exc:
            prog.done()
            failed[rt] = str(exc)
    unavailable = {n: i.reason for n, i in sorted(infos.items()) if not i.available and n in named}
    unavailable.update(others)
    unavailable.update(failed)
    if as_json:
        doc = {"size": size, "count": count, "results": [asdict(r) for r in results], "not_run": unavailable}
        print(json.dumps(doc, indent=2))
        return 0 if results and not failed else 1
    rows = [
        [
            r.runtime,
            f"{r.rtt_median_us:.1f}",
            f"{r.rtt_p99_us:.1f}",
            f"{r.flood_capsules_per_s:,.0f}",
            f"{r.flood_received}",
            f"{r.middle_us:.2f}",
        ]
        for r in results
    ]
    print(f"pan demo: sender - middle - receiver, in-process; body {size} bytes, flood of {count} capsules\n")
    print(
        format_table(
            rows,
            ["runtime", "ping RTT median µs", "ping RTT p99 µs", "flood capsules/s", "flood received", "middle µs/capsule"],
        )
    )
    if unavailable:
        print("\nnot run:")
        for n, why in sorted(unavailable.items()):
            print(f"  {n}: {why}")
    print(f"\n(finished in {time.monotonic() - t0:.1f} s)")
    return 0 if results and not failed and not (runtimes and others) else 1
