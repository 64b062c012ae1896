"""The terminal tables of a run: one per experiment, medians, with the ratios a reader wants."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pan_runtime.node.stats import format_table

from .results import Result

__all__ = ["format_results", "index"]


def index(results: Iterable[Result] | Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str, int, str, str], float]:
    """Results keyed by (experiment, topology, config, runtime, size, metric, stat)."""
    out = {}
    for r in results:
        d = r if isinstance(r, dict) else r.__dict__
        out[(d["experiment"], d["topology"], d["config"], d["runtime"], d["size"], d["metric"], d["stat"])] = d["value"]
    return out


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_results(results: list[Result] | list[dict[str, Any]]) -> str:
    ix = index(results)
    cells = sorted({k[:5] for k in ix}, key=lambda k: (k[0], k[1], k[2], k[4], k[3]))
    parts = []
    disp = [c for c in cells if c[0] == "dispatch"]
    if disp:
        rows = []
        base = "native" if any(c[3] == "native" for c in disp) else "null"
        for exp, topo, config, rt, size in disp:
            v = ix.get((exp, topo, config, rt, size, "dispatch_us", "median"))
            ref = ix.get((exp, topo, config, base, size, "dispatch_us", "median"))
            rows.append([config, rt, str(size), _f(v, "{:.3f}"), _f(v / ref if v and ref else None, "{:.2f}x"),
                         _f(ix.get((exp, topo, config, rt, size, "dispatch_us", "min")), "{:.3f}")])
        parts.append("dispatch (in-process, µs per capsule at the middle node)\n"
                      + format_table(rows, ["config", "runtime", "size", "median µs", f"vs {base}", "min µs"]))
    ping = [c for c in cells if c[0] == "ping"]
    if ping:
        rows = []
        for cell in ping:
            exp, topo, config, rt, size = cell

            def g(m: str, s: str = "median", cell: tuple[str, str, str, str, int] = cell) -> float | None:
                return ix.get((*cell, m, s))

            rows.append([topo, config, rt, str(size), _f(g("rtt_us")), _f(g("rtt_us", "p99")), _f(g("added_us")),
                         _f(g("overhead_pct"), "{:.0f}%")])
        parts.append("ping (round trip and the middle node's added latency = (RTT - RTT of none) / 2)\n"
                     + format_table(rows, ["topology", "config", "runtime", "size", "RTT µs", "p99 µs", "added µs", "overhead"]))
    flood = [c for c in cells if c[0] == "flood"]
    if flood:
        rows = []
        for cell in flood:
            exp, topo, config, rt, size = cell

            def g(m: str, s: str = "median", cell: tuple[str, str, str, str, int] = cell) -> float | None:
                return ix.get((*cell, m, s))

            rows.append([topo, config, rt, str(size), _f(g("capsules_per_s"), "{:,.0f}"), _f(g("mbit_per_s")),
                         _f(g("gc_pauses"), "{:.0f}")])
        parts.append("flood (throughput the receiver counted)\n"
                     + format_table(rows, ["topology", "config", "runtime", "size", "capsules/s", "Mbit/s", "GCs"]))
    return "\n\n".join(parts)
