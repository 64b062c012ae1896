"""``pan bench``: compare runtimes on the same protocols, measured side by side in one run.

The ``dispatch`` experiment measures the middle node of an in-process sender - middle -
receiver network: capsules of the ``forward`` protocol are queued at the middle node, and
the time for the node to evaluate them (parse, look up code, run ``accept``, carry out the
verdict, hand the capsule to the link) is divided by their count. Sizes are IP packet sizes
as in the paper's figures (capsule = size - 28 bytes of IP and UDP headers).

Runtime ``null`` is the built-in baseline (a plain Python function doing the forward inside
the same node); ``bare`` is a loop that only parses each capsule and re-sends it, without
the node.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from pan_runtime.address import NodeAddress
from pan_runtime.capsule import HEADER_SIZE, Capsule
from pan_runtime.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.network import Network
from pan_runtime.node import NodeConfig, default_plugins
from pan_runtime.protocols import reference_code
from pan_runtime.stats import format_table

__all__ = ["Result", "add_arguments", "main", "dispatch_experiment"]

IP_UDP_OVERHEAD = 28
FORWARD_HDR = 20
MIN_SIZE = IP_UDP_OVERHEAD + HEADER_SIZE + FORWARD_HDR
EXPERIMENTS = ("dispatch",)
BASELINES = ("null", "bare")


@dataclass
class Result:
    experiment: str
    topology: str
    config: str
    runtime: str
    size: int
    metric: str
    stat: str
    value: float


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _sizes(text: str) -> list[int]:
    out = []
    for t in _csv(text):
        if not t.isdigit():
            raise PanError(f"size {t!r} is not a whole number of bytes")
        n = int(t)
        if n < MIN_SIZE:
            raise PanError(f"size {n} is below the smallest forward capsule ({MIN_SIZE} bytes incl. IP/UDP headers)")
        if n > 65535:
            raise PanError(f"size {n} is above what a datagram can carry (65535)")
        out.append(n)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", default="dispatch", help="comma-separated: dispatch")
    p.add_argument("--runtime", default="null,restricted_py", help="comma-separated runtimes (plus baselines null, bare)")
    p.add_argument("--size", default="128,1500,8192", help="comma-separated IP packet sizes in bytes")
    p.add_argument("--batch", type=int, default=1, help="largest batch the node hands a runtime (default 1)")
    p.add_argument("--count", type=int, default=2000, help="capsules per trial")
    p.add_argument("--trials", type=int, default=5, help="trials per cell (the median is kept)")
    p.add_argument("--json", metavar="FILE", help="write results as JSON")
    p.add_argument("--quick", action="store_true", help="a smoke run: few capsules and trials")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    versions = {}
    for dist in ("pan-runtime", "wasmtime", "pyelftools", "RestrictedPython", "JPype1", "pluggy", "cryptography"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        import os

        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": _cpus(), "loadavg": load},
        "python": sys.version.split()[0],
        "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: v for k, v in vars(args).items() if k not in ("fn",)},
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _forward_code(runtime: str) -> CodeObject:
    return reference_code(runtime, "forward")


def _capsule(code_name: bytes, home: NodeAddress, dest: NodeAddress, size: int) -> bytes:
    from pan_runtime.capsule import encode_header

    body_len = size - IP_UDP_OVERHEAD - HEADER_SIZE
    body = dest.raw + (7).to_bytes(2, "big") + b"\0\0" + bytes(body_len - FORWARD_HDR)
    return encode_header(code_name, home) + body


def _bare_loop(wire: bytes, count: int, trials: int) -> list[float]:
    """Parse and re-send without a node: the floor any node pays."""
    from pan_runtime.segments import SegmentPool

    samples = []
    with SegmentPool(max(len(wire), 64), 64) as pool:
        sink: list[int] = []
        for t in range(trials + 1):
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
            if t:
                samples.append(dt / (reps * len(segs)) / 1000)
    return samples


def dispatch_experiment(
    runtime: str, size: int, *, count: int, trials: int, batch: int, progress: Callable[[str], None] | None = None
) -> list[float]:
    """Per-capsule middle-node times (µs), one sample per trial after a warm-up trial."""
    if runtime == "bare":
        wire = _capsule(b"\1" * 32, NodeAddress.from_int(1), NodeAddress.from_int(3), size)
        return _bare_loop(wire, count, trials)
    code = _forward_code(runtime)
    cfg = NodeConfig(batch=batch, queue_limit=count + 16, pool_buffers=count + 64, pool_buffer_size=max(9216, size))
    with Network.line(3, config=cfg) as net:
        sender, middle, receiver = net.nodes
        net.install(code)
        wire = memoryview(_capsule(code.name, sender.address, receiver.address, size))
        samples = []
        for t in range(trials + 1):
            for _ in range(count):
                middle.receive_buffers([wire], sender.address)
            t0 = time.perf_counter_ns()
            middle.process()
            dt = time.perf_counter_ns() - t0
            # the receiver drains what arrived (not timed)
            _drain(receiver)
            fwd = middle.cache.peek(code.name)
            assert fwd is not None
            if t:
                samples.append(dt / count / 1000)
            if progress:
                progress(f"dispatch {runtime} {size}B trial {t}/{trials}")
        drops = middle.stats.drops + fwd.stats.drops
        if drops:
            raise PanError(f"dispatch {runtime} {size}B: the middle node dropped capsules: {dict(drops)}")
        if fwd.stats.forwarded != count * (trials + 1):
            raise PanError(f"dispatch {runtime}: forwarded {fwd.stats.forwarded} of {count * (trials + 1)}")
        return samples


def _drain(node: Any) -> None:
    q = node.queue
    while q:
        q.popleft().seg.release()


def main(args: argparse.Namespace) -> int:
    experiments = _csv(args.experiment)
    for e in experiments:
        if e not in EXPERIMENTS:
            raise PanError(f"unknown experiment {e!r}; known: {', '.join(EXPERIMENTS)}")
    runtimes = _csv(args.runtime)
    plugins = default_plugins()
    infos = {i.name: i for i in plugins.runtime_infos()}
    for r in runtimes:
        if r not in infos and r not in BASELINES:
            raise PanError(f"unknown runtime {r!r}; known: {', '.join(sorted(set(infos) | set(BASELINES)))}")
    sizes = _sizes(args.size)
    count, trials = (200, 2) if args.quick else (args.count, args.trials)
    if count <= 0 or trials <= 0:
        raise PanError("--count and --trials must be positive")
    progress = None if args.quiet else (lambda s: (sys.stderr.write("\r\033[K" + s) if sys.stderr.isatty() else None))
    results: list[Result] = []
    skipped: dict[str, str] = {}
    for r in runtimes:
        if r in infos and not infos[r].available:
            skipped[r] = infos[r].reason
    for exp in experiments:
        for size in sizes:
            # runtimes interleaved per size so drift of the shared machine hits all alike
            for r in runtimes:
                if r in skipped:
                    continue
                samples = dispatch_experiment(r, size, count=count, trials=trials, batch=args.batch, progress=progress)
                results.append(Result(exp, "inproc", "active", r, size, "dispatch_us", "median", statistics.median(samples)))
                results.append(Result(exp, "inproc", "active", r, size, "dispatch_us", "min", min(samples)))
    if progress and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    base = {(x.size): x.value for x in results if x.runtime == "null" and x.stat == "median"}
    rows = []
    for x in results:
        if x.stat != "median":
            continue
        ratio = f"{x.value / base[x.size]:.2f}x" if x.size in base and base[x.size] else "-"
        rows.append([x.experiment, x.runtime, str(x.size), f"{x.value:.3f}", ratio])
    print(f"batch {args.batch}, {count} capsules x {trials} trials per cell (median kept)")
    print(format_table(rows, ["experiment", "runtime", "size", "µs/capsule", "vs null"]))
    for r, why in skipped.items():
        print(f"skipped {r}: {why}")
    if args.json:
        doc = {"meta": _meta(args), "results": [asdict(x) for x in results]}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return 0
