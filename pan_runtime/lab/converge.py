"""The ``converge`` experiment: how long distance-vector routing written as a code object
(``protocols/dv.*``) takes to agree with the network again after a link goes down and after
it comes back.

The dv code of the runtime under test is installed on every node and ticked once per
``lab.dv_period`` (the PNI has no timer, so the lab sends each node an application capsule
that tells it a period has passed; ``pan_runtime.lab.dvcode``). Every node's dv table is read
through the node's soft-state dump and compared with the topology: a node is consistent when
it has a route to exactly the nodes it can reach, each at the shortest distance in hops and
through a neighbour that lies on such a shortest path. The times are from the change (the
first tick; the link set down; set up) until a round of reads finds every node consistent,
so they include up to one round of reads (one soft-state request per node).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError

from .netns import DV_TICK, NetnsLab
from .topology import Topology

__all__ = ["CONVERGE_GUARD_S", "cut_link", "expected_routes", "dv_routes", "mismatches", "run_converge"]

#: hang guard for one convergence (a busy machine runs 32 JVMs slowly)
CONVERGE_GUARD_S = 300.0
#: longest pause between two rounds of reads
POLL_S = 0.05
#: the dv table's row size and its "unreachable" metric (protocols/dv.*)
ROW = 40
INF = 16

Expected = dict[str, dict[str, tuple[int, frozenset[str]]]]


def cut_link(topo: Topology, a: str, b: str) -> int:
    """The index of the middle link on the path from ``a`` to ``b`` (the one to take down)."""
    hops = topo.hops(a, b)
    if len(hops) < 2:
        raise PanError(f"lab {topo.name}: no path from {a} to {b}")
    k = (len(hops) - 2) // 2
    pair = {hops[k], hops[k + 1]}
    return next(i for i, ln in enumerate(topo.links) if {ln.a, ln.b} == pair)


def expected_routes(topo: Topology, down: frozenset[int] = frozenset()) -> Expected:
    """For every node, every node it reaches with links ``down`` removed: the distance in hops
    and the neighbours a shortest path may leave through."""
    nbs: dict[str, list[str]] = {n: [] for n in topo.nodes}
    for i, ln in enumerate(topo.links):
        if i not in down:
            nbs[ln.a].append(ln.b)
            nbs[ln.b].append(ln.a)
    dist: dict[str, dict[str, int]] = {}
    for src in topo.nodes:
        d = {src: 0}
        q = deque([src])
        while q:
            u = q.popleft()
            for v in nbs[u]:
                if v not in d:
                    d[v] = d[u] + 1
                    q.append(v)
        dist[src] = d
    return {
        u: {v: (dv, frozenset(h for h in nbs[u] if dist[h].get(v) == dv - 1)) for v, dv in dist[u].items() if v != u}
        for u in topo.nodes
    }


def dv_routes(table: bytes, names: dict[bytes, str]) -> dict[str, tuple[str, int]]:
    """The reachable routes of a dv table (soft state ``table``): destination -> (next hop, metric),
    by node name (an address no node has stays in hex)."""
    out = {}
    for o in range(0, len(table) - ROW + 1, ROW):
        metric = int.from_bytes(table[o + 32 : o + 34], "big")
        if metric < INF:
            dest, hop = table[o : o + 16], table[o + 16 : o + 32]
            out[names.get(dest, dest.hex())] = (names.get(hop, hop.hex()), metric)
    return out


def mismatches(want: dict[str, tuple[int, frozenset[str]]], have: dict[str, tuple[str, int]]) -> list[str]:
    """How one node's routes ``have`` differ from ``want`` (empty: consistent)."""
    out = [f"no route to {d}" for d in want if d not in have]
    out += [f"a route to unreachable {d}" for d in have if d not in want]
    for d, (hop, metric) in have.items():
        if d in want and (metric != want[d][0] or hop not in want[d][1]):
            out.append(f"{d} via {hop} at {metric} (want {want[d][0]} via {'/'.join(sorted(want[d][1]))})")
    return out


class _Run:
    """Ticks every node once per period and reads every node's dv table between ticks."""

    def __init__(self, lab: NetnsLab, code: CodeObject):
        self.lab = lab
        self.code = code
        self.period = lab.topo.dv_period_us / 1e6
        self.names = {NodeAddress.parse(a).raw: n for n, a in lab.addr.node.items()}
        self.next_tick = 0.0
        self.ticks = 0

    def tick_if_due(self) -> None:
        now = time.monotonic()
        if now < self.next_tick:
            return
        for c in self.lab.clients.values():
            c.send(self.code, DV_TICK)
        self.ticks += 1
        self.next_tick = max(self.next_tick + self.period, now)

    def tables(self) -> dict[str, dict[str, tuple[str, int]]]:
        out = {}
        for name, c in self.lab.clients.items():
            self.tick_if_due()
            doc = c.soft_state(self.code)
            raw = next((e["value"] for e in doc["entries"] if e["key"] == b"table"), b"")
            out[name] = dv_routes(raw, self.names)
        return out

    def until_consistent(self, want: Expected, what: str) -> tuple[float, int]:
        """Milliseconds and ticks from now until every node's table matches ``want``."""
        t0, ticks0 = time.monotonic(), self.ticks
        deadline = t0 + CONVERGE_GUARD_S
        while True:
            self.tick_if_due()
            tables = self.tables()
            wrong = {n: m for n in want if (m := mismatches(want[n], tables[n]))}
            if not wrong:
                return (time.monotonic() - t0) * 1000, self.ticks - ticks0
            if time.monotonic() > deadline:
                sample = "; ".join(f"{n}: {', '.join(m[:3])}" for n, m in list(wrong.items())[:3])
                raise PanError(f"converge: {what}: {len(wrong)} nodes still disagree after {CONVERGE_GUARD_S:.0f} s ({sample})")
            time.sleep(max(0.0, min(POLL_S, self.next_tick - time.monotonic())))


def run_converge(lab: NetnsLab, code: CodeObject, cut: int, trials: int, report: Callable[[str, dict[str, float]], None]) -> None:
    """Install ``code`` (a dv code object, signed) on every node, measure the start, then
    ``trials`` times take link ``cut`` down and bring it back; ``report(metric, stats)`` gets
    the medians (and extremes) in milliseconds."""
    topo = lab.topo
    full = expected_routes(topo)
    without = expected_routes(topo, frozenset({cut}))
    for c in lab.clients.values():
        c.install(code, pin=True)
    run = _Run(lab, code)
    is_down = False
    try:
        start, _ = run.until_consistent(full, "start")
        downs: list[float] = []
        ups: list[float] = []
        ticks: list[int] = []
        for _ in range(trials):
            lab.set_link(cut, up=False)
            is_down = True
            ms, n = run.until_consistent(without, "after the link went down")
            downs.append(ms)
            ticks.append(n)
            lab.set_link(cut, up=True)
            is_down = False
            ms, _ = run.until_consistent(full, "after the link came back")
            ups.append(ms)
    finally:
        if is_down:
            lab.set_link(cut, up=True)
        time.sleep(POLL_S)  # triggered updates still in flight land before the code goes
        for c in lab.clients.values():
            try:
                c.uninstall(code)
            except PanError:
                pass  # the node is gone: the lab's teardown reports it
    report("converge_start_ms", {"median": start})
    report("converge_down_ms", _stats(downs))
    report("converge_up_ms", _stats(ups))
    report("dv_ticks", _stats([float(t) for t in ticks]))
    report("dv_period_ms", {"median": run.period * 1000})


def _stats(v: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}
