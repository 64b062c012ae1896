"""What process isolation costs per capsule (not a test): a node runs the reference forward
protocol of each runtime on N queued capsules of SIZE bytes, in the node's process and in a
worker, one capsule per crossing and in batches; then the channel's parts alone: copying a
body into the ring and back, an eventfd round trip to another process, and encoding and
decoding a batch's records. Prints µs per capsule (median of the rounds) and ratios.

Then the two figures the issue sets bars for, per runtime, each the median of ``--rounds`` runs
with their spread (min..max): the added latency of one capsule at a time (process ÷ in-process,
bar ≤ 1.5) and the flood throughput of a node that hands batches to the worker without
waiting (asynchronous dispatch, as a node under an event loop does; process ÷ in-process,
bar ≥ 0.7).

    python benchmarks/isolation_cost.py [--runtime native,wasm] [--n 2000] [--size 1500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from pan_runtime.cli.protocols import reference_code
from pan_runtime.isolation import wire
from pan_runtime.isolation.channel import Channel
from pan_runtime.net.application import Application
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin.plugins import default_plugins

_ECHO = """
import os, sys
down, up = int(sys.argv[1]), int(sys.argv[2])
while True:
    n = os.eventfd_read(down)
    if n > 1000000:
        break
    os.eventfd_write(up, 1)
"""


def per_capsule(runtime: str, mechanism: str, batch: int, n: int, size: int, rounds: int) -> float:
    plugins = default_plugins()
    code = reference_code(runtime, "forward", plugins)
    cfg = NodeConfig(isolation={runtime: mechanism}, batch=batch, queue_limit=max(4096, n), pool_buffers=max(1024, 2 * n))
    out = []
    with Node(1, config=cfg, plugins=plugins) as node:
        node.install(code)
        app = Application(node)
        body = node.address.raw + (4242).to_bytes(2, "big") + bytes(size - 18)  # unbound port: run, then drop
        for _ in range(rounds):
            for _ in range(n):
                app.send(code, body)
            t0 = time.perf_counter_ns()
            node.process()
            out.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(out)


def flood(runtime: str, mechanism: str, batch: int, n: int, size: int) -> float:
    """Capsules per second through a node that hands batches over and polls for verdicts."""
    plugins = default_plugins()
    code = reference_code(runtime, "forward", plugins)
    cfg = NodeConfig(isolation={runtime: mechanism}, batch=batch, queue_limit=max(4096, n), pool_buffers=max(1024, 2 * n))
    with Node(1, config=cfg, plugins=plugins) as node:
        node.offload.asynchronous = True
        node.install(code)
        app = Application(node)
        body = node.address.raw + (4242).to_bytes(2, "big") + bytes(size - 18)
        entry = node.cache.peek(code.name)
        assert entry is not None
        for _ in range(n):
            app.send(code, body)
        t0 = time.perf_counter_ns()
        while node.queue or node.offload.busy or node.offload.waiting:
            if node.queue and node.offload.statistics()["inflight"] < 256:
                node.process(batch)
                node.offload.poll()
            else:
                node.offload.wait(1.0)
        dt = time.perf_counter_ns() - t0
        assert entry.stats.capsules_in == n, entry.stats.as_dict()
    return n / (dt / 1e9)


def channel_parts(size: int, n: int) -> dict[str, float]:
    ch = Channel.create(1 << 20)
    body = bytearray(size)
    view = memoryview(body)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        rv = ch.down.reserve(4, size)
        assert rv is not None
        rv[:] = view
        ch.down.commit()
        rec = ch.down.get()
        assert rec is not None
        view[:] = rec[1]
        ch.down.release()
    copy = (time.perf_counter_ns() - t0) / n / 1000
    vals = [1, 0, 0, b"", 0, 0]
    t0 = time.perf_counter_ns()
    for _ in range(n):
        wire.decode(wire.encode(vals))  # type: ignore[arg-type]
    codec = (time.perf_counter_ns() - t0) / n / 1000
    proc = subprocess.Popen([sys.executable, "-c", _ECHO, str(ch.wake_down), str(ch.wake_up)], pass_fds=(ch.wake_down, ch.wake_up))
    os.set_blocking(ch.wake_up, True)
    for _ in range(100):
        ch.wake_worker()
        os.eventfd_read(ch.wake_up)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        ch.wake_worker()
        os.eventfd_read(ch.wake_up)
    wake = (time.perf_counter_ns() - t0) / n / 1000
    os.eventfd_write(ch.wake_down, 1 << 40)
    proc.wait(5)
    os.set_blocking(ch.wake_up, False)
    ch.close()
    return {"copy in and out (µs)": copy, "eventfd round trip (µs)": wake, "record codec (µs)": codec}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="native,wasm,jvm,restricted_py")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"{'runtime':14s} {'in-process':>10s} {'process b1':>10s} {'ratio':>6s} {'in-proc b32':>11s} {'process b32':>11s} {'ratio':>6s}")
    for rt in args.runtime.split(","):
        r = {}
        for mech in ("in_process", "process"):
            for b in (1, 32):
                r[mech, b] = per_capsule(rt, mech, b, args.n, args.size, args.rounds)
        print(f"{rt:14s} {r['in_process', 1]:10.2f} {r['process', 1]:10.2f} {r['process', 1] / r['in_process', 1]:6.2f} "
              f"{r['in_process', 32]:11.2f} {r['process', 32]:11.2f} {r['process', 32] / r['in_process', 32]:6.2f}")
    for k, v in channel_parts(args.size, 20000).items():
        print(f"{k:28s} {v:8.2f}")
    print()
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.rounds} runs (min..max)")
    print(f"{'runtime':14s} {'latency in-proc µs':>22s} {'latency process µs':>22s} {'ratio':>6s} "
          f"{'flood in-proc /s':>24s} {'flood process /s':>24s} {'ratio':>6s}")
    for rt in args.runtime.split(","):
        lat = {m: [per_capsule(rt, m, 1, args.n // 4, args.size, 2) for _ in range(args.rounds)] for m in ("in_process", "process")}
        fl = {m: [flood(rt, m, 32, args.n, args.size) for _ in range(args.rounds)] for m in ("in_process", "process")}

        def cell(xs: list[float], fmt: str) -> str:
            return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}..{max(xs):{fmt}})"

        li, lp = statistics.median(lat["in_process"]), statistics.median(lat["process"])
        fi, fp = statistics.median(fl["in_process"]), statistics.median(fl["process"])
        print(f"{rt:14s} {cell(lat['in_process'], '.1f'):>22s} {cell(lat['process'], '.1f'):>22s} {lp / li:6.2f} "
              f"{cell(fl['in_process'], '.0f'):>24s} {cell(fl['process'], '.0f'):>24s} {fp / fi:6.2f}", flush=True)


if __name__ == "__main__":
    main()
