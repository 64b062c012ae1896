"""Experiments on a lab, for ``pan bench --topology lab:FILE``.

``ping`` and ``flood`` run from the lab's first node to the node farthest from it; ``path``
pings along the lab's longest shortest path and gives the latency per hop; ``spread``
installs a code object no node has seen at the first node and sends one ping with it to
every other node at once: the time until the last reply is the time the code took to reach
every node by demand loading (each hop fetches it from the one before), and the bytes are
those of the code fetched. A ping not answered within ``RESEND_S`` is sent again (its
capsule may have been parked at a hop whose fetch outlived the node's demand deadline) and
counted as ``resent``. ``converge`` (``pan_runtime.lab.converge``) runs the runtime's
distance-vector code on every node and times its agreement with the network after the middle
link of the diameter goes down and after it comes back. Results are the bench's rows; the topology column is
``lab:<name>`` and the configuration column names the nodes (``n1->n7``).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from pan_runtime.bench.inproc import PORT, reference_set
from pan_runtime.bench.options import IP_UDP_OVERHEAD
from pan_runtime.bench.results import summarize
from pan_runtime.cli.netcli import flood, ping
from pan_runtime.cli.protocols import ping_body, ping_rtt_us
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError

from .converge import cut_link, run_converge
from .dvcode import dv_code
from .mininetlab import MininetLab
from .netns import NetnsLab
from .topology import Topology, load_topology

__all__ = ["LAB_EXPERIMENTS", "format_lab_results", "run_lab", "farthest", "diameter", "fresh_variant"]

LAB_EXPERIMENTS = ("ping", "flood", "spread", "path", "converge")
#: hang guard for one spread trial (a busy machine compiles slowly)
SPREAD_GUARD_S = 300.0
#: spread trial t numbers its pings from SPREAD_SEQ_BASE * (t + 1) (ping and path count from 0)
SPREAD_SEQ_BASE = 1 << 20
#: a spread ping not answered within this long is sent again
RESEND_S = 5.0

Add = Callable[[str, str, str, str, int, str, dict[str, float]], None]


def farthest(topo: Topology, src: str) -> tuple[str, int]:
    """The node farthest from ``src`` (the last such in file order) and its distance in hops."""
    hops = topo.next_hops(src)
    if not hops:
        raise PanError(f"lab {topo.name}: node {src} has no neighbour to measure toward")
    best = max(hops.items(), key=lambda kv: kv[1][1])
    return best[0], best[1][1]


def diameter(topo: Topology) -> tuple[str, str, int]:
    """A pair of nodes farthest apart (the longest shortest path) and its length in hops."""
    best = ("", "", -1)
    for src in topo.nodes:
        for dst, (_, d) in topo.next_hops(src).items():
            if d > best[2]:
                best = (src, dst, d)
    if best[2] < 1:
        raise PanError(f"lab {topo.name} has no link")
    return best


def fresh_variant(code: CodeObject, tag: str) -> CodeObject:
    """``code`` under a name no node has seen (same payload, a different manifest ``meta``)."""
    m = dataclasses.replace(code.manifest, meta={**code.manifest.meta, "lab_spread": tag})
    return CodeObject(m, code.payload)


def run_lab(plan: Any, spec: str, runtimes: list[str], add: Add, failed: dict[str, str], progress: Callable[[str], None] | None) -> None:
    """Bring the lab ``spec`` (``lab:FILE``) up and run ``plan``'s experiments on it with ``runtimes``."""
    topo = load_topology(spec.split(":", 1)[1])
    label = f"lab:{topo.name}"
    exps = [e for e in plan.experiments if e in LAB_EXPERIMENTS]
    kind = MininetLab if getattr(plan, "lab_backend", "netns") == "mininet" else NetnsLab
    with kind(topo, "error", progress) as lab:
        lab.up()
        src = next(iter(topo.nodes))
        dst, _ = farthest(topo, src)
        pa, pb, plen = diameter(topo)
        addr = {n: NodeAddress.parse(a) for n, a in lab.addr.node.items()}
        for rt in runtimes:
            key = f"{label} {rt}"
            try:
                codes = {k: lab.sign(c) for k, c in reference_set(rt).items()}
            except PanError as exc:
                failed[f"build {rt}"] = str(exc)
                continue
            for exp in exps:
                for size in plan.sizes if exp in ("ping", "flood") else plan.sizes[:1]:
                    if progress:
                        progress(f"{label}: {exp} {rt} {size}")
                    try:
                        if exp == "ping":
                            _ping(lab, codes, src, addr[dst], size, plan, rt, "ping", f"{src}->{dst}", add, label)
                        elif exp == "path":
                            rtt = _ping(lab, codes, pa, addr[pb], size, plan, rt, "path", f"{pa}->{pb}", add, label)
                            add("path", label, f"{pa}->{pb}", rt, size, "hops", {"median": float(plen)})
                            add("path", label, f"{pa}->{pb}", rt, size, "per_hop_us", {"median": rtt / (2 * plen)})
                        elif exp == "flood":
                            _flood(lab, codes, src, addr[dst], size, plan, rt, f"{src}->{dst}", add, label)
                        elif exp == "spread":
                            _spread(lab, codes, src, addr, size, plan, rt, add, label)
                        elif exp == "converge":
                            _converge(lab, pa, pb, size, plan, rt, add, label)
                    except PanError as exc:
                        failed[f"{exp} {key} {size}"] = str(exc)


def _prepare(lab: NetnsLab, codes: dict[str, CodeObject], node: str, protocol: str) -> Any:
    c = lab.clients[node]
    c.install(codes["portmapper"], pin=True)
    c.use_portmapper(codes["portmapper"], force=True)
    c.install(codes[protocol], pin=True)
    c.bind(PORT, force=True)
    time.sleep(0.05)  # the bind capsule is evaluated on the node's next turn
    return c


def _body(size: int) -> int:
    """Body bytes of a capsule in an IP packet of ``size`` bytes."""
    return max(0, size - IP_UDP_OVERHEAD - HEADER_SIZE)


def _ping(lab, codes, src, dest, size, plan, rt, exp, pair, add, label) -> float:  # type: ignore[no-untyped-def]
    c = _prepare(lab, codes, src, "ping")
    body = _body(size)
    # warm-up: the first capsules demand-load the code along the path
    for _ in range(max(1, plan.warmup)):
        rtts, _sent = ping(c, codes["ping"], dest, count=3, size=body, port=PORT, timeout=60.0)
    trials = []
    for _ in range(plan.trials):
        rtts, sent = ping(c, codes["ping"], dest, count=plan.counts[exp], size=body, port=PORT, timeout=10.0)
        if not rtts:
            raise PanError(f"no ping reply from {dest} ({sent} sent)")
        trials.append(summarize(rtts))
    stats = {k: statistics.median(t[k] for t in trials) for k in trials[0]}
    add(exp, label, pair, rt, size, "rtt_us", stats)
    return stats["median"]


def _flood(lab, codes, src, dest, size, plan, rt, pair, add, label) -> None:  # type: ignore[no-untyped-def]
    c = _prepare(lab, codes, src, "flood")
    body = _body(size)
    runs = []
    for t in range(plan.trials):
        r = flood(c, codes["flood"], dest, count=plan.counts["flood"], size=body, port=PORT, timeout=60.0, flow=1000 + t)
        runs.append(r)
    cps = [r["capsules_per_s"] for r in runs]
    add("flood", label, pair, rt, size, "capsules_per_s", {"median": statistics.median(cps), "min": min(cps), "max": max(cps)})
    mbit = [r["mbit_per_s"] for r in runs]
    add("flood", label, pair, rt, size, "mbit_per_s", {"median": statistics.median(mbit)})


def _demand_totals(lab: NetnsLab) -> dict[str, dict[str, int]]:
    return {n: {k: int(v) for k, v in st.get("demand", {}).items() if isinstance(v, int)} for n, st in lab.stats().items()}


def _spread(lab, codes, src, addr, size, plan, rt, add, label) -> None:  # type: ignore[no-untyped-def]
    c = _prepare(lab, codes, src, "ping")
    others = [n for n in lab.topo.nodes if n != src]
    secs, moved, chunks, resends = [], [], [], []
    for t in range(plan.trials):
        code = lab.sign(fresh_variant(codes["ping"], f"{os.getpid()}-{rt}-{t}-{time.monotonic_ns()}"))
        c.install(code, pin=True)
        before = _demand_totals(lab)
        while c.receive(0.0) is not None:
            pass  # late replies of earlier experiments
        # sequence numbers no earlier ping of this run used, so that no late reply can count
        base = SPREAD_SEQ_BASE * (t + 1)
        waiting = {base + i: n for i, n in enumerate(others)}
        resent = 0
        t0 = time.monotonic()
        for i, n in waiting.items():
            c.send(code, ping_body(addr[n].raw, PORT, i, _body(size)))
        last = t0
        deadline = t0 + SPREAD_GUARD_S
        resend_at = t0 + RESEND_S
        while waiting and time.monotonic() < deadline:
            if time.monotonic() >= resend_at:
                # a capsule parked at a hop whose fetch outlived the node's demand deadline is
                # dropped (fetch_timeout); ask again, as an application would
                for i, n in waiting.items():
                    c.send(code, ping_body(addr[n].raw, PORT, i, _body(size)))
                resent += len(waiting)
                resend_at = time.monotonic() + RESEND_S
            d = c.receive(max(0.0, min(deadline, resend_at) - time.monotonic()))
            if d is None:
                continue
            for i in list(waiting):
                if ping_rtt_us(d.data, i, time.monotonic_ns()) is not None:
                    del waiting[i]
                    last = time.monotonic()
                    break
        if waiting:
            raise PanError(f"spread: no reply from {', '.join(waiting.values())} within {SPREAD_GUARD_S:.0f} s")
        after = _demand_totals(lab)
        missing = [n for n, st in lab.stats().items() if code.hex_name not in st.get("code", {})]
        if missing:
            raise PanError(f"spread: the code never reached {', '.join(missing)}")
        fetched = sum(after[n].get("fetched", 0) - before[n].get("fetched", 0) for n in after)
        secs.append((last - t0) * 1000)
        moved.append(fetched * len(code.to_pco()))
        chunks.append(sum(after[n].get("chunks_received", 0) - before[n].get("chunks_received", 0) for n in after))
        resends.append(resent)
        c.uninstall(code)
    pair = f"{src}->all({len(others)})"
    add("spread", label, pair, rt, size, "spread_ms", {"median": statistics.median(secs), "min": min(secs), "max": max(secs)})
    add("spread", label, pair, rt, size, "code_bytes", {"median": statistics.median(moved)})
    add("spread", label, pair, rt, size, "chunks", {"median": statistics.median(chunks)})
    add("spread", label, pair, rt, size, "resent", {"median": statistics.median(resends), "max": max(resends)})


def _converge(lab, pa, pb, size, plan, rt, add, label) -> None:  # type: ignore[no-untyped-def]
    cut = cut_link(lab.topo, pa, pb)
    ln = lab.topo.links[cut]
    # a name no node has seen: a dv the lab itself runs (routing = "dv") is left alone
    code = lab.sign(fresh_variant(dv_code(rt), f"{os.getpid()}-{rt}-{time.monotonic_ns()}"))
    run_converge(lab, code, cut, plan.trials, lambda metric, stats: add("converge", label, f"{ln.a}-{ln.b}", rt, size, metric, stats))


def format_lab_results(results: list[Any]) -> str:
    """The medians of the lab experiments' rows, one line per (experiment, lab, nodes, runtime, size)."""
    from pan_runtime.node.stats import format_table

    rows: dict[tuple[str, str, str, str, int], dict[str, float]] = {}
    for r in results:
        if r.topology.startswith("lab:") and r.stat == "median":
            rows.setdefault((r.experiment, r.topology, r.config, r.runtime, r.size), {})[r.metric] = r.value
    if not rows:
        return ""
    metrics = ["rtt_us", "per_hop_us", "hops", "capsules_per_s", "spread_ms", "code_bytes", "chunks", "resent",
               "converge_start_ms", "converge_down_ms", "converge_up_ms", "dv_ticks"]
    used = [m for m in metrics if any(m in v for v in rows.values())]
    table = [[*map(str, k), *(f"{v[m]:.1f}" if m in v else "-" for m in used)] for k, v in rows.items()]
    return format_table(table, ["experiment", "topology", "nodes", "runtime", "size", *used])
