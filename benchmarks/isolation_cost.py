"""What process isolation costs per capsule (not a test): a node runs the reference forward
protocol of each runtime on N queued capsules of SIZE bytes, in the node's process and in a
worker, one capsule per crossing and in batches; then the channel's parts alone: copying a
body into the ring and back, an eventfd round trip to another process (both on one CPU, and
on two where the machine has them), and encoding and decoding a capsule's fields and verdict
(medians and min–max over the rounds). Prints µs per
capsule (median of the rounds) and ratios. Then restarts: the worker of each runtime's
forward is SIGKILLed and the restart and first capsule after it timed, with a warm standby
(``worker_standbys``) and with a spare only (median, min–max of ``--restarts``). The CPU time
per capsule the node and the worker each spend in a flood (batches of 32) is printed too: it
says where the cost is whatever else runs on the machine.

Then the two figures the issue sets bars for, per runtime, each the median of ``--rounds`` runs
with their spread (min..max): the added latency of one capsule at a time (process ÷ in-process,
bar ≤ 1.5) and the flood throughput of a node that hands batches to the worker without
waiting (asynchronous dispatch, as a node under an event loop does; process ÷ in-process,
bar ≥ 0.7).

    python benchmarks/isolation_cost.py [--runtime native,wasm] [--n 2000] [--size 1500] [--rounds 5]
                                        [--restarts 10] [--skip-capsules]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from pan_runtime.cli.protocols import reference_code
from pan_runtime.isolation import wire
from pan_runtime.isolation.channel import Channel
from pan_runtime.isolation.protocol import CAPSULE, NO_HOP
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


def _gone(pid: int) -> None:
    """Wait until ``pid`` (a child of this process) is dead; a hang guard of 30 s."""
    for _ in range(3000):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.01)
    raise RuntimeError(f"worker {pid} did not die")


def restarts(runtime: str, repeats: int, standbys: int) -> tuple[list[float], int]:
    """Restart times in ms: SIGKILL the worker of the reference forward, let the node notice
    on a capsule (a fault), then time the next capsule: the restart (a warm standby's INIT, a
    spare's link and INIT, or a whole start) and that capsule's run. Each repeat lets the
    node's refill finish first (a standby ready again), as after a single crash. Also returns
    the warm restarts counted."""
    plugins = default_plugins()
    code = reference_code(runtime, "forward", plugins)
    cfg = NodeConfig(isolation={runtime: "process"}, worker_standbys=standbys, breaker_threshold=1 << 20, worker_backoff_ms=0)
    out = []
    with Node(1, config=cfg, plugins=plugins) as node:
        node.install(code)
        entry = node.cache.peek(code.name)
        assert entry is not None
        wc = entry.loaded
        app = Application(node)
        body = node.address.raw + (4242).to_bytes(2, "big") + bytes(64)
        rt = node.runtime(runtime)
        for _ in range(repeats):
            _ready(rt)
            pid = wc.pid  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
            _gone(pid)
            app.send(code, body)
            node.process()  # the node finds its worker dead: one capsule counted as a fault
            ran, errors = entry.stats.capsules_in, entry.stats.errors
            t0 = time.perf_counter_ns()
            app.send(code, body)
            node.process()
            out.append((time.perf_counter_ns() - t0) / 1e6)
            assert entry.stats.capsules_in == ran + 1 and entry.stats.errors == errors, entry.stats.as_dict()
        warm = rt.statistics().get("worker_warm_restarts", 0)
    return out, warm


def _ready(rt: object) -> None:
    """Wait until the runtime's spares have made their runtime and its standbys linked their
    code (their answers are in their rings): a restart measured then is one after a single
    crash, not one in a crash loop."""
    result = 8 + ((len(wire.encode([0, 0, 0])) + 7) & ~7)  # one RESULT record
    spares = list(getattr(rt, "spares", []))
    standbys = [w.standby.proc for w in getattr(rt, "live", ()) if getattr(w, "standby", None) is not None]
    for p, want in [*((p, result) for p in spares), *((p, 2 * result) for p in standbys)]:
        for _ in range(6000):  # a hang guard
            if p.ch.up.unread() >= want or p.proc.poll() is not None:
                break
            time.sleep(0.005)


@contextlib.contextmanager
def _flood_node(runtime: str, mechanism: str, batch: int, n: int, size: int) -> Iterator[tuple[Node, Any, Callable[[], None]]]:
    """A node handing batches over without waiting, ``runtime``'s forward installed and ``n``
    capsules of ``size`` bytes queued: yields it, the code's cache entry and a call that
    carries them all through (checking every one went in)."""
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

        def drain() -> None:
            while node.queue or node.offload.busy or node.offload.waiting:
                if node.queue and node.offload.statistics()["inflight"] < 256:
                    node.process(batch)
                    node.offload.poll()
                else:
                    node.offload.wait(1.0)
            assert entry.stats.capsules_in == n, entry.stats.as_dict()

        yield node, entry, drain


def flood(runtime: str, mechanism: str, batch: int, n: int, size: int) -> float:
    """Capsules per second through a node that hands batches over and polls for verdicts."""
    with _flood_node(runtime, mechanism, batch, n, size) as (_, _, drain):
        t0 = time.perf_counter_ns()
        drain()
        dt = time.perf_counter_ns() - t0
    return n / (dt / 1e9)


def _cpu_ns(pid: int) -> int:
    """CPU time process ``pid`` (its main thread) ran so far, ns (the scheduler's count)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def cpu_per_capsule(runtime: str, batch: int, n: int, size: int) -> tuple[float, float]:
    """CPU µs per capsule of a flood through a worker, (the node's, the worker's): what each
    side spends, which the machine's load does not change as it changes wall time."""
    with _flood_node(runtime, "process", batch, n, size) as (_, entry, drain):
        pid = entry.loaded.pid  # type: ignore[attr-defined]
        w0, n0 = _cpu_ns(pid), _cpu_ns(os.getpid())
        drain()
        w1, n1 = _cpu_ns(pid), _cpu_ns(os.getpid())
    return (n1 - n0) / n / 1000, (w1 - w0) / n / 1000


def _wake_ups(ch: Channel, pid: int, n: int, cpus: tuple[int, int]) -> float:
    """µs per eventfd round trip with this process on ``cpus[0]`` and the echo on ``cpus[1]``."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(pid, {cpus[1]})
    os.sched_setaffinity(0, {cpus[0]})
    try:
        for _ in range(100):
            ch.wake_worker()
            os.eventfd_read(ch.wake_up)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            ch.wake_worker()
            os.eventfd_read(ch.wake_up)
        return (time.perf_counter_ns() - t0) / n / 1000
    finally:
        os.sched_setaffinity(0, before)
        os.sched_setaffinity(pid, before)


def channel_parts(size: int, n: int, rounds: int) -> dict[str, list[float]]:
    """Per capsule, µs, one value per round of ``n``: copying a body into the ring and back
    out, an eventfd round trip to another process (one wake-up each way) with both on one CPU
    (how workers that sleep share the node's) and on two (how a worker on a CPU of its own is
    woken when it no longer polls; on a virtual machine waking an idle vCPU costs far more),
    and the codec (a capsule's fields packed and unpacked, its verdict record encoded and
    decoded)."""
    cpus = sorted(os.sched_getaffinity(0))
    ch = Channel.create(1 << 20)
    body = bytearray(size)
    view = memoryview(body)
    fields = bytearray(CAPSULE.size)
    vals = [1, 0, 0, b"", 0, 0]
    proc = subprocess.Popen([sys.executable, "-c", _ECHO, str(ch.wake_down), str(ch.wake_up)], pass_fds=(ch.wake_down, ch.wake_up))
    os.set_blocking(ch.wake_up, True)
    wakes = ["wake-up, one CPU"] + (["wake-up, two CPUs"] if len(cpus) > 1 else [])
    out: dict[str, list[float]] = {k: [] for k in ["copy", *wakes, "codec"]}
    try:
        for _ in range(rounds):
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
            out["copy"].append((time.perf_counter_ns() - t0) / n / 1000)
            out["wake-up, one CPU"].append(_wake_ups(ch, proc.pid, n, (cpus[0], cpus[0])))
            if len(cpus) > 1:
                out["wake-up, two CPUs"].append(_wake_ups(ch, proc.pid, n, (cpus[0], cpus[1])))
            t0 = time.perf_counter_ns()
            for _ in range(n):
                CAPSULE.pack_into(fields, 0, 0, 64, size, NO_HOP, bytes(32), NO_HOP, 0)
                CAPSULE.unpack_from(fields, 0)
                wire.decode(wire.encode(vals))  # type: ignore[arg-type]
            out["codec"].append((time.perf_counter_ns() - t0) / n / 1000)
    finally:
        os.eventfd_write(ch.wake_down, 1 << 40)
        proc.wait(5)
        os.set_blocking(ch.wake_up, False)
        ch.close()
    return out


def spread(values: list[float], unit: str = "") -> str:
    """"median (min–max)" of ``values``."""
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="native,wasm,jvm,restricted_py")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--restarts", type=int, default=10, help="restarts timed per runtime and kind (0: none)")
    ap.add_argument("--parts", type=int, default=20000, help="iterations per round of the channel's parts")
    ap.add_argument("--skip-capsules", action="store_true", help="only the restarts and the channel's parts")
    args = ap.parse_args()
    runtimes = args.runtime.split(",")
    if not args.skip_capsules:
        capsules(runtimes, args)
    if args.restarts:
        print(f"\nrestart and first capsule, ms: median (min–max) of {args.restarts}")
        print(f"{'runtime':14s} {'warm standby':>26s} {'warm':>5s} {'spare (worker_standbys = 0)':>30s}")
        for rt in runtimes:
            warm, used = restarts(rt, args.restarts, 4)
            cold, _ = restarts(rt, args.restarts, 0)
            print(f"{rt:14s} {spread(warm):>26s} {used:5d} {spread(cold):>30s}", flush=True)
    print(f"\nchannel parts per capsule ({args.size}-byte body), µs: median (min–max) of {args.rounds} rounds of {args.parts}")
    for k, v in channel_parts(args.size, args.parts, args.rounds).items():
        print(f"{k:18s} {spread(v):>24s}")


def capsules(runtimes: list[str], args: argparse.Namespace) -> None:
    print(f"{'runtime':14s} {'in-process':>10s} {'process b1':>10s} {'ratio':>6s} {'in-proc b32':>11s} {'process b32':>11s} {'ratio':>6s}")
    for rt in runtimes:
        r = {}
        for mech in ("in_process", "process"):
            for b in (1, 32):
                r[mech, b] = per_capsule(rt, mech, b, args.n, args.size, args.rounds)
        print(f"{rt:14s} {r['in_process', 1]:10.2f} {r['process', 1]:10.2f} {r['process', 1] / r['in_process', 1]:6.2f} "
              f"{r['in_process', 32]:11.2f} {r['process', 32]:11.2f} {r['process', 32] / r['in_process', 32]:6.2f}", flush=True)
    print()
    print(f"CPU per capsule of a flood through a worker (batches of 32), µs: median (min–max) of {args.rounds} runs")
    print(f"{'runtime':14s} {'node':>24s} {'worker':>24s}")
    for rt in runtimes:
        got = [cpu_per_capsule(rt, 32, args.n, args.size) for _ in range(args.rounds)]
        print(f"{rt:14s} {spread([g[0] for g in got]):>24s} {spread([g[1] for g in got]):>24s}", flush=True)
    print()
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.rounds} runs (min..max)")
    print(f"{'runtime':14s} {'latency in-proc µs':>22s} {'latency process µs':>22s} {'ratio':>6s} "
          f"{'flood in-proc /s':>24s} {'flood process /s':>24s} {'ratio':>6s}")
    for rt in runtimes:
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
