"""Soak the node (a script, not a test): a million mixed capsules in-process with every
runtime, and a million through a middle ``pan node`` on UDP, sampling what a leak would grow.

In-process, two nodes of a simulated line run, in rounds, the forwarding code of every
runtime mixed with code that raises, code that spins to its budget, datagrams of garbage
and capsules naming code nobody has. Every sample (each ``--every`` capsules) records the
process's RSS, open file descriptors, threads, the pools' free buffers and the node's
counters; at the end every capsule must be accounted for (run or dropped with a reason)
and every pool whole.

Over UDP, a sender, a middle and a receiver ``pan node`` run on loopback (the harness's
``udp`` testbed); the harness floods the middle with the flood code of each runtime in
turn, and samples the middle process (RSS, descriptors, threads from /proc, free buffers
and fast-path counters from its statistics).

    python benchmarks/soak.py [--capsules 1000000] [--every 100000] [--part inproc,udp]
                              [--runtime native,wasm,jvm,restricted_py] [--json FILE]

Leak figures are taken after warm-up (in-process: from the sample at ``--warmup`` of the run;
over UDP: from each runtime's first sample), so memory the runtimes take once (JIT, compiled
modules, caches) does not count as a leak.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pan_runtime.bench.configuration import start_configuration
from pan_runtime.bench.testbed import make_testbed
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import FloodHdr
from pan_runtime.resources import cases_dir
from pan_runtime.testing import build_case

CASES = cases_dir()
RUNTIMES = ("native", "wasm", "jvm", "restricted_py")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_sample(pid: int | str = "self") -> dict[str, int]:
    """RSS (KiB), open descriptors and threads of one process, read from /proc."""
    with open(f"/proc/{pid}/statm") as f:
        rss_kib = int(f.read().split()[1]) * PAGE // 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return {"rss_kib": rss_kib, "fds": fds, "threads": threads}


def leaks(samples: list[dict[str, Any]]) -> dict[str, int]:
    """Growth from the first sample (after warm-up) to the last."""
    first, last = samples[0], samples[-1]
    return {k: last[k] - first[k] for k in ("rss_kib", "py_blocks", "fds", "threads") if k in first}


def soak_inproc(total: int, every: int, runtimes: list[str], log: Any, jvm_heap: str = "32m", warmup: float = 0.3) -> dict[str, Any]:
    plugins = default_plugins()
    rng = random.Random(7)
    # a small Java heap: a JVM grows its heap to -Xmx before collecting all of it, which in RSS
    # looks like a leak of up to the heap's size; with 32m the growth a leak would show stands out
    # neither the breaker nor the neighbour ledger may stop the mix: the soak is about leaks
    cfg = NodeConfig(budget=Budget(time_ms=20, steps=20_000), breaker_threshold=10**9, queue_limit=20_000,
                     neighbour_exhaustions=1_000_000, runtime_options={"jvm": {"heap": jvm_heap}})
    samples: list[dict[str, Any]] = []
    with Network.line(2, plugins=plugins, config=cfg) as net:
        a, b = net.nodes
        pm = reference_code("restricted_py", "portmapper", plugins)
        net.install(pm)
        for n in net.nodes:
            n.use_portmapper(pm)
        forwards = [reference_code(rt, "forward", plugins) for rt in runtimes]
        # native code runs uncontained (isolation "none"): its trap or loop would end the soak
        contained = [rt for rt in runtimes if rt != "native"]
        raisers = [build_case(CASES / "raise", rt, plugins) for rt in contained]
        spinners = [build_case(CASES / "spin", rt, plugins) for rt in contained]
        for code in (*forwards, *raisers, *spinners):
            net.install(code)
        sink = Application(b)
        sink.bind(7)
        app = Application(a)
        body = b.address.raw + b"\x00\x07\x00\x00" + bytes(200)
        sent = delivered = 0
        kinds = {"forward": 0, "raise": 0, "spin": 0, "garbage": 0, "no_code": 0}
        batch = 1000
        while sent < total:
            for _ in range(batch):
                r = rng.random()
                if r < 0.90:
                    kinds["forward"] += 1
                    app.send(forwards[sent % len(forwards)], body)
                elif r < 0.96 and raisers:
                    kinds["raise"] += 1
                    app.send(raisers[sent % len(raisers)], b"x")
                elif r < 0.9601 and spinners:
                    kinds["spin"] += 1
                    app.send(spinners[sent % len(spinners)], b"x")
                elif r < 0.98:
                    kinds["garbage"] += 1
                    a.inject(rng.randbytes(rng.randrange(0, 120)), app.link)
                else:
                    kinds["no_code"] += 1
                    app.send(rng.randbytes(32), b"nobody runs me")
                sent += 1
            net.run(timeout_s=600.0)
            delivered += len(sink.deliveries())
            if sent % every == 0:
                gc.collect()
                s = {
                    "capsules": sent,
                    **proc_sample(),
                    "py_blocks": sys.getallocatedblocks(),
                    "pool_free": [n.pool.available for n in net.nodes],
                    "delivered": delivered,
                }
                samples.append(s)
                log(f"inproc {sent:>9}: rss {s['rss_kib']} KiB python blocks {s['py_blocks']} fds {s['fds']} threads {s['threads']} "
                    f"pool free {s['pool_free']} delivered {delivered}")
        warm = min(len(samples) - 1, int(len(samples) * warmup))
        st = {e.code.name: e.stats for e in a.cache}
        ran = sum(x.capsules_in for x in st.values())
        # forwarding capsules that did not arrive must each be a fault or drop the node counted
        # (on a loaded machine a JVM collection can take a correct capsule past a tight budget)
        fwd_names = {c.name for c in forwards}
        fwd_faults = {
            n.name: {
                "errors": sum(e.stats.errors for e in n.cache if e.code.name in fwd_names),
                "drops": dict(sum((e.stats.drops for e in n.cache if e.code.name in fwd_names), Counter())),
            }
            for n in net.nodes
        }
        counted = sum(f["errors"] + sum(f["drops"].values()) for f in fwd_faults.values())
        accounted = ran + sum(a.stats.drops.values())
        pools = {n.name: n.pool.count - n.pool.available for n in net.nodes}
        return {
            "part": "inproc",
            "runtimes": runtimes,
            "sent": kinds,
            "delivered": delivered,
            "accounted": accounted,
            "injected": a.stats.injected,
            "drops": dict(a.stats.drops),
            "buffers_held_at_end": pools,
            "samples": samples,
            "forward_faults": fwd_faults,
            "growth_after_warmup": leaks(samples[warm:]),
            "ok": accounted == a.stats.injected == total
            and kinds["forward"] - delivered == counted
            and not any(pools.values()),
        }


def soak_udp(total: int, every: int, runtimes: list[str], log: Any) -> dict[str, Any]:
    plugins = default_plugins()
    samples: list[dict[str, Any]] = []
    per_runtime = total // len(runtimes)
    with make_testbed("udp", "onecpu") as bed:
        run = start_configuration(bed, "active", list(runtimes), 2048)
        with run:
            middle = next(p for p in run.procs if p.name.endswith("middle)"))
            app = run.app
            dest = NodeAddress.parse(run.receiver_address).raw
            pm = reference_code("restricted_py", "portmapper", plugins)
            codes = {"portmapper": pm}
            floods = {rt: reference_code(rt, "flood", plugins) for rt in runtimes}
            run.install_everywhere({**codes, **{f"flood-{rt}": c for rt, c in floods.items()}})
            run.use_runtime(codes, 7)
            sent = 0
            flow = 0
            for rt in runtimes:
                flow += 1
                flood = floods[rt]
                report = 10_000
                pad = bytes(1000 - FloodHdr.SIZE)
                app.send(flood, FloodHdr(dest=dest, port=7, kind=0, flow=flow, report_every=report).pack() + pad)
                wire = capsule_bytes(flood, FloodHdr(dest=dest, port=7, kind=1, flow=flow, report_every=report).pack() + pad, app.address)
                acked = 0
                goal = sent + per_runtime
                while sent < goal:
                    if sent - acked >= 4 * report:
                        d = app.receive(timeout=5.0)
                        if d is None:
                            acked = sent  # reports lost to drops: go on, the counters tell
                            continue
                        rep = FloodHdr.unpack(d.data) if len(d.data) >= FloodHdr.SIZE else None
                        if rep and rep.kind == 2 and rep.flow == flow:
                            acked = max(acked, goal - per_runtime + rep.count)
                        continue
                    app.send_raw(wire)
                    sent += 1
                    if sent % every == 0:
                        st = run.clients["middle"].stats()
                        s = {"capsules": sent, "runtime": rt, **proc_sample(middle.pid),
                             "pool_free": st.get("pool_free"), "fast_path": st.get("links", {}).get("fast_path")}
                        samples.append(s)
                        log(f"udp {rt:>13} {sent:>9}: rss {s['rss_kib']} KiB fds {s['fds']} "
                            f"threads {s['threads']} pool free {s['pool_free']}")
                time.sleep(0.5)
                app.deliveries()
            st = run.clients["middle"].stats()
    return {
        "part": "udp",
        "runtimes": runtimes,
        "sent": sent,
        "middle_stats_at_end": {k: st.get(k) for k in ("pool_free", "drops", "links")},
        "samples": samples,
        # each runtime's first sample is its own warm-up (its code compiled, the JVM started)
        "growth_after_warmup": {rt: leaks(seg) for rt in runtimes if (seg := [s for s in samples if s["runtime"] == rt])},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capsules", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--part", default="inproc,udp")
    ap.add_argument("--runtime", default=",".join(RUNTIMES))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--jvm-heap", default="32m", help="the in-process JVM's -Xmx (default 32m)")
    ap.add_argument("--warmup", type=float, default=0.3, help="share of the in-process run that is warm-up (0.3)")
    args = ap.parse_args(argv)
    if args.every % 1000:
        ap.error("--every must be a multiple of 1000")
    runtimes = [r for r in args.runtime.split(",") if r]

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    results = []
    for part in args.part.split(","):
        if part == "inproc":
            results.append(soak_inproc(args.capsules, args.every, runtimes, log, args.jvm_heap, args.warmup))
        else:
            results.append(soak_udp(args.capsules, args.every, runtimes, log))
        log(f"{part}: growth after warm-up {results[-1]['growth_after_warmup']}")
    out = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "python": sys.version.split()[0],
           "threads_at_end": threading.active_count(), "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    bad = [r["part"] for r in results if r.get("ok") is False]
    if bad:
        log(f"FAILED: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
