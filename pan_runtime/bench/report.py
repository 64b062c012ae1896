"""``pan bench report FILE.json``: a run rendered as Markdown, next to the paper's figures.

The paper (section IV, a 1999 testbed of 200 MHz Pentium Pros on switched Fast Ethernet)
reports: the kernel node ~20 µs above IP forwarding whatever the size, 13% at 1500 bytes;
the user-space node ~83 µs above IP forwarding at 128 bytes; Java code 3-5x the cost of
native code; about 90 Mbit/s of flood throughput on Fast Ethernet. The report puts this
run's matching figures beside those, then the full tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .results import read_json
from .table import format_results, index

__all__ = ["render_report", "report_main", "headline"]

PAPER = {
    "kernel_fixed_us": 20.0,
    "kernel_pct_1500": 13.0,
    "user_us_128": 83.0,
    "java_ratio": (3.0, 5.0),
    "fast_ethernet_mbit": 90.0,
}
RUNTIME_ORDER = ("native", "wasm", "jvm", "jvm-nogc", "restricted_py", "null", "bare")


def _order(rts: set[str]) -> list[str]:
    return sorted(rts, key=lambda r: (RUNTIME_ORDER.index(r) if r in RUNTIME_ORDER else 99, r))


def _near(sizes: set[int], want: int) -> int | None:
    return min(sizes, key=lambda s: (abs(s - want), s)) if sizes else None


def _topology(ix: dict[Any, float], exp: str) -> str | None:
    topos = {k[1] for k in ix if k[0] == exp}
    for t in ("netns", "mininet", "udp", "inproc"):
        if t in topos:
            return t
    return None


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the closing note quotes, as plain data (None where the run has no data)."""
    ix = index(rows)
    out: dict[str, Any] = {}
    # dispatch at 1500 bytes, per runtime, and the ratio to native
    d_sizes = {k[4] for k in ix if k[0] == "dispatch"}
    size = _near(d_sizes, 1500)
    if size:
        disp = {k[3]: v for k, v in ix.items() if k[0] == "dispatch" and k[2] == "active" and k[4] == size and k[5:] == ("dispatch_us", "median")}
        nat = disp.get("native")
        out["dispatch"] = {"size": size, "us": disp, "vs_native": {r: v / nat for r, v in disp.items()} if nat else {}}
    # middle node's added latency per runtime vs cforw and passive
    topo = _topology(ix, "ping")
    if topo:
        p_sizes = {k[4] for k in ix if k[0] == "ping" and k[1] == topo}
        per_size = {}
        for want in (156, 1500):
            s = _near(p_sizes, want)
            if s is None:
                continue
            added = {(k[2], k[3]): v for k, v in ix.items() if k[0] == "ping" and k[1] == topo and k[4] == s and k[5:] == ("added_us", "median")}
            rows_ = {}
            for (config, rt), v in added.items():
                if config not in ("active", "activecopy"):
                    continue
                cf = added.get(("cforw", rt))
                pa = added.get(("passive", rt))
                rows_[f"{config} {rt}"] = {
                    "added_us": v,
                    "cforw_us": cf,
                    "passive_us": pa,
                    "vs_cforw": v / cf if cf and cf > 0 else None,
                    "vs_passive": v / pa if pa and pa > 0 else None,
                    "above_passive_us": v - pa if pa is not None else None,
                    "above_cforw_us": v - cf if cf is not None else None,
                }
            per_size[s] = rows_
        out["added"] = {"topology": topo, "sizes": per_size}
    topo = _topology(ix, "flood")
    if topo:
        s = _near({k[4] for k in ix if k[0] == "flood" and k[1] == topo}, 1500)
        cps = {(k[2], k[3]): v for k, v in ix.items() if k[0] == "flood" and k[1] == topo and k[4] == s and k[5:] == ("capsules_per_s", "median")}
        mbit = {(k[2], k[3]): v for k, v in ix.items() if k[0] == "flood" and k[1] == topo and k[4] == s and k[5:] == ("mbit_per_s", "median")}
        fl = {}
        for (config, rt), v in cps.items():
            cf = cps.get(("cforw", rt))
            fl[f"{config} {rt}"] = {"capsules_per_s": v, "mbit_per_s": mbit.get((config, rt)), "of_cforw": v / cf if cf else None}
        out["flood"] = {"topology": topo, "size": s, "cells": fl}
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def render_report(doc: dict[str, Any], figures: list[str] | None = None) -> str:
    rows = doc["results"]
    m = doc["meta"]
    h = headline(rows)
    mach = m.get("machine", {})
    lines = [
        "# pan bench report",
        "",
        f"Run of {m.get('date', '?')} on {mach.get('processor', '?')} ({mach.get('cpus', '?')} CPUs), "
        f"{mach.get('platform', '?')}, Python {m.get('python', '?')}; placement "
        f"`{(m.get('placement') or {}).get('mode', '?')}`.",
        "",
        "The paper's figures (section IV, 200 MHz Pentium Pro hosts on switched Fast Ethernet, 1999) are "
        "quoted beside ours. Ours come from Python processes on one 2-core virtual machine, so absolute "
        "values are not comparable; the shapes and ratios are what to read.",
        "",
    ]
    if "dispatch" in h:
        d = h["dispatch"]
        lines += [f"## Per-capsule dispatch at {d['size']} bytes (in-process, `active`)", "",
                  "| runtime | µs per capsule | × native |", "|---|---:|---:|"]
        for rt in _order(set(d["us"])):
            lines.append(f"| {rt} | {_fmt(d['us'][rt], '.3f')} | {_fmt(d['vs_native'].get(rt), '.2f')} |")
        lines += ["", f"Paper: Java code objects cost {PAPER['java_ratio'][0]:.0f}–{PAPER['java_ratio'][1]:.0f}× native ones.", ""]
    if "added" in h:
        a = h["added"]
        lines += [f"## Latency added by the middle node ({a['topology']})", ""]
        for size, cells in a["sizes"].items():
            lines += [f"At {size} bytes (added = (RTT − RTT of `none`) / 2):", "",
                      "| middle | added µs | cforw µs | passive µs | × cforw | × passive | above passive µs |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for key in sorted(cells, key=lambda k: (k.split()[0], RUNTIME_ORDER.index(k.split()[1]) if k.split()[1] in RUNTIME_ORDER else 99)):
                c = cells[key]
                lines.append(f"| {key} | {_fmt(c['added_us'], '.1f')} | {_fmt(c['cforw_us'], '.1f')} | {_fmt(c['passive_us'], '.1f')} | "
                             f"{_fmt(c['vs_cforw'], '.2f')} | {_fmt(c['vs_passive'], '.2f')} | {_fmt(c['above_passive_us'], '.1f')} |")
            lines.append("")
        lines += [f"Paper: the kernel node added a fixed ~{PAPER['kernel_fixed_us']:.0f} µs over IP forwarding "
                  f"({PAPER['kernel_pct_1500']:.0f}% at 1500 bytes); the user-space node ~{PAPER['user_us_128']:.0f} µs "
                  "over IP forwarding at 128 bytes.", ""]
    if "flood" in h:
        f = h["flood"]
        lines += [f"## Flood throughput at {f['size']} bytes ({f['topology']})", "",
                  "| config | capsules/s | Mbit/s | fraction of cforw |", "|---|---:|---:|---:|"]
        for key in sorted(f["cells"]):
            c = f["cells"][key]
            lines.append(f"| {key} | {_fmt(c['capsules_per_s'], ',.0f')} | {_fmt(c['mbit_per_s'], '.1f')} | {_fmt(c['of_cforw'], '.2f')} |")
        lines += ["", f"Paper: about {PAPER['fast_ethernet_mbit']:.0f} Mbit/s through a node on Fast Ethernet (the wire's limit).", ""]
    lines += ["## All results (medians)", "", "```", format_results(rows), "```", ""]
    notes = {**(m.get("skipped") or {})}
    if notes:
        lines += ["## Not run", ""] + [f"- {k}: {v}" for k, v in notes.items()] + [""]
    if m.get("loss"):
        lines += ["## Flood cells with loss", ""] + [f"- {k}: {v:.1%}" for k, v in m["loss"].items()] + [""]
    if m.get("failed"):
        lines += ["## Failed", ""] + [f"- {k}: {v}" for k, v in m["failed"].items()] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(p).stem}]({p})" for p in figures] + [""]
    return "\n".join(lines)


def report_main(path: str, output: str | None, plot_dir: str | None) -> int:
    doc = read_json(path)
    figures: list[str] = []
    if plot_dir:
        from .plots import draw_all

        base = Path(output).parent if output else Path(".")
        figures = [os.path.relpath(p, base) for p in draw_all(doc["results"], plot_dir)]
    text = render_report(doc, figures)
    if output:
        Path(output).write_text(text)
        print(f"wrote {output}")
    else:
        print(text)
    return 0
