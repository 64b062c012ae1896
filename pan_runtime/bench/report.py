"""``pan bench report FILE.json``: a run rendered as Markdown, next to the paper's figures.

The paper (section IV, a 1999 testbed of 200 MHz Pentium Pros on switched Fast Ethernet)
reports: the kernel node ~20 µs above IP forwarding whatever the size, 13% at 1500 bytes;
the user-space node ~83 µs above IP forwarding at 128 bytes; Java code 3-5x the cost of
native code; about 90 Mbit/s of flood throughput on Fast Ethernet. The report puts this
run's matching figures beside those, each median with the spread of its trials, says which
differences are significant at the run's noise level (``noise.py``: the trials' ranges do not
overlap), lists the flagged cells instead of quoting them, and marks a ``--quick`` run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .noise import cell_key, flag_cells, flag_lines, interval, significance
from .options import PROCESS_SUFFIX
from .results import index, read_json
from .table import format_results

__all__ = ["render_report", "report_main", "headline", "run_trials"]

PAPER = {
    "kernel_fixed_us": 20.0,
    "kernel_pct_1500": 13.0,
    "user_us_128": 83.0,
    "java_ratio": (3.0, 5.0),
    "fast_ethernet_mbit": 90.0,
}
RUNTIME_ORDER = ("native", "wasm", "jvm", "jvm-nogc", "restricted_py", "null", "bare")


def _order(rts: set[str]) -> list[str]:
    """Runtimes in ``RUNTIME_ORDER``, each in process isolation (``native/process``) after it."""
    def key(r: str) -> tuple[int, str, bool]:
        base = r.replace(PROCESS_SUFFIX, "")
        return (RUNTIME_ORDER.index(base) if base in RUNTIME_ORDER else 99, base, PROCESS_SUFFIX in r)

    return sorted(rts, key=key)


def _near(sizes: set[int], want: int) -> int | None:
    return min(sizes, key=lambda s: (abs(s - want), s)) if sizes else None


def _topology(ix: dict[Any, float], exp: str) -> str | None:
    topos = {k[1] for k in ix if k[0] == exp}
    for t in ("netns", "mininet", "udp", "inproc"):
        if t in topos:
            return t
    return None


def run_trials(doc: dict[str, Any]) -> int:
    """Trials per cell of the run (1 when the file does not say)."""
    plan = ((doc.get("meta") or {}).get("options") or {}).get("plan") or {}
    return int(plan.get("trials") or 1)


def headline(rows: list[dict[str, Any]], trials: int = 1, flags: dict[str, str] | None = None) -> dict[str, Any]:
    """The figures the report quotes, as plain data (None where the run has no data): each
    median with its trials' range and whether it differs significantly from its baseline."""
    ix = index(rows)
    flags = flag_cells(rows, trials) if flags is None else flags
    out: dict[str, Any] = {}
    # dispatch at 1500 bytes, per runtime, and the ratio to native
    d_sizes = {k[4] for k in ix if k[0] == "dispatch"}
    size = _near(d_sizes, 1500)
    if size:
        disp = {k[3]: v for k, v in ix.items() if k[0] == "dispatch" and k[2] == "active" and k[4] == size and k[5:] == ("dispatch_us", "median")}
        spread = {r: interval(ix, ("dispatch", "inproc", "active", r, size), "dispatch_us") for r in disp}
        nat = disp.get("native")
        out["dispatch"] = {
            "size": size, "us": disp, "spread": spread,
            "vs_native": {r: v / nat for r, v in disp.items()} if nat else {},
            "significant": {r: significance(spread[r], spread.get("native"), trials) for r in disp if r != "native"} if nat else {},
        }
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
                mine = interval(ix, ("ping", topo, config, rt, s), "added_us")
                cf_range = interval(ix, ("ping", topo, "cforw", rt, s), "added_us")
                pa_range = interval(ix, ("ping", topo, "passive", rt, s), "added_us")
                rows_[f"{config} {rt}"] = {
                    "added_us": v,
                    "spread": mine,
                    "noise": flags.get(cell_key("ping", topo, config, rt, s, "added_us")),
                    "cforw_us": cf,
                    "cforw_noise": flags.get(cell_key("ping", topo, "cforw", rt, s, "added_us")),
                    "passive_us": pa,
                    "passive_noise": flags.get(cell_key("ping", topo, "passive", rt, s, "added_us")),
                    "vs_cforw": v / cf if cf and cf > 0 else None,
                    "vs_passive": v / pa if pa and pa > 0 else None,
                    "above_passive_us": v - pa if pa is not None else None,
                    "above_cforw_us": v - cf if cf is not None else None,
                    "vs_cforw_significant": significance(mine, cf_range, trials) if cf is not None else None,
                    "vs_passive_significant": significance(mine, pa_range, trials) if pa is not None else None,
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
            mine = interval(ix, ("flood", topo, config, rt, s), "capsules_per_s")  # type: ignore[arg-type]
            theirs = interval(ix, ("flood", topo, "cforw", rt, s), "capsules_per_s")  # type: ignore[arg-type]
            fl[f"{config} {rt}"] = {
                "capsules_per_s": v, "spread": mine, "mbit_per_s": mbit.get((config, rt)), "of_cforw": v / cf if cf else None,
                "vs_cforw_significant": significance(mine, theirs, trials) if cf is not None and config != "cforw" else None,
                "note": flags.get(cell_key("flood", topo, config, rt, s, "capsules_per_s")),  # type: ignore[arg-type]
            }
        out["flood"] = {"topology": topo, "size": s, "cells": fl}
    iso = _isolation(ix, flags, trials)
    if iso:
        out["isolation"] = iso
    return out


def _isolation(ix: dict[Any, float], flags: dict[str, str], trials: int) -> dict[str, Any] | None:
    """The cost of process isolation as the run measured it side by side (``--isolation
    in_process,process``): per runtime, the ``active`` middle's added latency (ping) and
    flood throughput in a worker over in-process, at the size nearest 1500 bytes on the
    topology the report quotes; None when the run has no process cells."""
    out: dict[str, Any] = {}
    for exp, metric in (("ping", "added_us"), ("flood", "capsules_per_s")):
        topo = _topology(ix, exp)
        if topo is None:
            continue
        size = _near({k[4] for k in ix if k[0] == exp and k[1] == topo}, 1500)
        cells = {}
        for k, v in ix.items():
            if k[:3] != (exp, topo, "active") or k[4] != size or k[5:] != (metric, "median"):
                continue
            if not k[3].endswith(PROCESS_SUFFIX):
                continue
            rt = k[3][: -len(PROCESS_SUFFIX)]
            own = ix.get((exp, topo, "active", rt, size, metric, "median"))
            if own is None:
                continue
            mine, theirs = (exp, topo, "active", k[3], size), (exp, topo, "active", rt, size)
            noted = [flags.get(cell_key(*c, metric)) for c in (mine, theirs)]  # type: ignore[arg-type]
            spread, own_spread = interval(ix, mine, metric), interval(ix, theirs, metric)  # type: ignore[arg-type]
            cells[rt] = {
                "in_process": own, "process": v, "ratio": v / own if own > 0 else None,
                "spread": spread, "in_process_spread": own_spread,
                "significant": significance(spread, own_spread, trials), "note": "; ".join(n for n in noted if n) or None,
            }
        if cells:
            out[exp] = {"topology": topo, "size": size, "cells": cells}
    return out or None


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _range(r: tuple[float, float] | None, spec: str, trials: int) -> str:
    if trials <= 1:
        return "1 trial"
    return "–" if r is None else f"{format(r[0], spec)}–{format(r[1], spec)}"


def _sig(text: str | None) -> str:
    return "–" if text is None else text


def render_report(doc: dict[str, Any], figures: list[str] | None = None) -> str:
    rows = doc["results"]
    m = doc["meta"]
    trials = run_trials(doc)
    flags = m.get("flags")
    if flags is None:  # a file written before runs recorded their flags
        flags = flag_cells(rows, trials)
    h = headline(rows, trials, flags)
    mach = m.get("machine", {})
    quick = bool(m.get("quick") or ((m.get("options") or {}).get("plan") or {}).get("quick"))
    lines = ["# pan bench report", ""]
    if quick:
        lines += ["> **QUICK RUN** — one trial per cell and few capsules: a smoke test of the harness, not a measurement. "
                  "No difference below can be called significant.", ""]
    load = m.get("load") or {}
    shares = [r["value"] for r in rows if r["metric"] == "others_cpu" and r["stat"] == "median"]
    load_text = ""
    if load.get("start") or load.get("end"):
        load_text = (f" Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load.get('start') or [])} at the start, "
                     f"{'/'.join(f'{x:.1f}' for x in load.get('end') or [])} at the end.")
    if shares:
        load_text += (f" Other work used {min(shares):.0%}–{max(shares):.0%} of the machine's CPUs while cells ran "
                      f"(median {sorted(shares)[len(shares) // 2]:.0%}).")
    lines += [
        f"Run of {m.get('date', '?')} on {mach.get('processor', '?')} ({mach.get('cpus', '?')} CPUs), "
        f"{mach.get('platform', '?')}, Python {m.get('python', '?')}; placement "
        f"`{(m.get('placement') or {}).get('mode', '?')}`; {trials} trial(s) per cell.{load_text}",
        "",
        "The paper's figures (section IV, 200 MHz Pentium Pro hosts on switched Fast Ethernet, 1999) are "
        "quoted beside ours. Ours come from Python processes on one 2-core virtual machine, so absolute "
        "values are not comparable; the shapes and ratios are what to read. Every median comes with the "
        "range of its trials (lowest–highest); a difference is called *significant* only where the two "
        "ranges do not overlap, and cells flagged as noise are named, not quoted.",
        "",
    ]
    significant: list[str] = []
    within: list[str] = []

    def verdict(what: str, text: str | None) -> None:
        if text == "yes":
            significant.append(what)
        elif text and text.startswith("no"):
            within.append(what)

    if "dispatch" in h:
        d = h["dispatch"]
        lines += [f"## Per-capsule dispatch at {d['size']} bytes (in-process, `active`)", "",
                  "| runtime | µs per capsule | trials' range | × native | differs from native? |", "|---|---:|---:|---:|---|"]
        for rt in _order(set(d["us"])):
            sig = d["significant"].get(rt)
            verdict(f"dispatch: {rt} vs native ({_fmt(d['vs_native'].get(rt), '.2f')}×)", sig)
            lines.append(f"| {rt} | {_fmt(d['us'][rt], '.3f')} | {_range(d['spread'].get(rt), '.3f', trials)} | "
                         f"{_fmt(d['vs_native'].get(rt), '.2f')} | {_sig(sig) if rt != 'native' else '–'} |")
        lines += ["", f"Paper: Java code objects cost {PAPER['java_ratio'][0]:.0f}–{PAPER['java_ratio'][1]:.0f}× native ones.", ""]
    if "added" in h:
        a = h["added"]
        lines += [f"## Latency added by the middle node ({a['topology']})", ""]
        for size, cells in a["sizes"].items():
            lines += [f"At {size} bytes (added = (RTT − RTT of `none`) / 2; *noise* where the run cannot tell, see Flagged cells):", "",
                      "| middle | added µs | trials' range | cforw µs | × cforw | differs from cforw? | passive µs | above passive µs |",
                      "|---|---:|---:|---:|---:|---|---:|---:|"]
            for key in sorted(cells, key=lambda k: (k.split()[0], RUNTIME_ORDER.index(k.split()[1]) if k.split()[1] in RUNTIME_ORDER else 99)):
                c = cells[key]
                added = "noise" if c["noise"] else _fmt(c["added_us"], ".1f")
                cforw = "noise" if c["cforw_noise"] else _fmt(c["cforw_us"], ".1f")
                passive = "noise" if c["passive_noise"] else _fmt(c["passive_us"], ".1f")
                ratio = "–" if c["noise"] or c["cforw_noise"] else _fmt(c["vs_cforw"], ".2f")
                above = "–" if c["noise"] or c["passive_noise"] else _fmt(c["above_passive_us"], ".1f")
                sig = None if c["noise"] or c["cforw_noise"] else c["vs_cforw_significant"]
                verdict(f"added latency at {size} B on {a['topology']}: {key} vs cforw ({ratio}×)", sig)
                lines.append(f"| {key} | {added} | {_range(c['spread'], '.1f', trials)} | {cforw} | {ratio} | {_sig(sig)} | "
                             f"{passive} | {above} |")
            lines.append("")
        lines += [f"Paper: the kernel node added a fixed ~{PAPER['kernel_fixed_us']:.0f} µs over IP forwarding "
                  f"({PAPER['kernel_pct_1500']:.0f}% at 1500 bytes); the user-space node ~{PAPER['user_us_128']:.0f} µs "
                  "over IP forwarding at 128 bytes.", ""]
    if "flood" in h:
        f = h["flood"]
        lines += [f"## Flood throughput at {f['size']} bytes ({f['topology']})", "",
                  "| config | capsules/s | trials' range | Mbit/s | fraction of cforw | differs from cforw? | note |",
                  "|---|---:|---:|---:|---:|---|---|"]
        for key in sorted(f["cells"]):
            c = f["cells"][key]
            note = (c["note"] or "").split(":", 1)[0]
            if key.split()[0] in ("active", "activecopy"):
                verdict(f"flood at {f['size']} B on {f['topology']}: {key} vs cforw ({_fmt(c['of_cforw'], '.2f')})",
                        c["vs_cforw_significant"])
            lines.append(f"| {key} | {_fmt(c['capsules_per_s'], ',.0f')} | {_range(c['spread'], ',.0f', trials)} | "
                         f"{_fmt(c['mbit_per_s'], '.1f')} | {_fmt(c['of_cforw'], '.2f')} | {_sig(c['vs_cforw_significant'])} | {note} |")
        lines += ["", f"Paper: about {PAPER['fast_ethernet_mbit']:.0f} Mbit/s through a node on Fast Ethernet (the wire's limit). "
                  "A *sender-limited* cell was as fast as the direct link: it measures the sending application, not the middle.", ""]
    if "isolation" in h:
        lines += ["## Cost of process isolation (`active` middle, its runtime in workers against in-process)", ""]
        for exp, what, spec in (("ping", "added µs", ".1f"), ("flood", "capsules/s", ",.0f")):
            part = h["isolation"].get(exp)
            if not part:
                continue
            lines += [f"{exp} at {part['size']} bytes ({part['topology']}):", "",
                      f"| runtime | {what} in-process | trials' range | {what} in a worker | trials' range | × in-process | "
                      "differs? | note |", "|---|---:|---:|---:|---:|---:|---|---|"]
            for rt in _order(set(part["cells"])):
                c = part["cells"][rt]
                # a flagged added latency is noise in the tables: so is its ratio here
                hidden = exp == "ping" and c["note"]
                ratio = "noise" if hidden else _fmt(c["ratio"], ".2f")
                sig = None if hidden else c["significant"]
                verdict(f"{exp} at {part['size']} B on {part['topology']}: {rt} in a worker vs in-process ({ratio}×)", sig)
                note = (c["note"] or "").split(":", 1)[0]
                lines.append(f"| {rt} | {_fmt(c['in_process'], spec)} | {_range(c['in_process_spread'], spec, trials)} | "
                             f"{_fmt(c['process'], spec)} | {_range(c['spread'], spec, trials)} | {ratio} | {_sig(sig)} | {note} |")
            lines.append("")
        lines += ["Where a worker's crossing goes, and what it costs with workers that sleep or poll: pan's "
                  "`docs/isolation.md`.", ""]
    lines += ["## What this run can tell", ""]
    if trials <= 1:
        lines += ["One trial per cell: the run has no spread to set a difference against, so it can tell no difference "
                  "from noise. Repeat it with `--trials 3` or more before reading one.", ""]
    else:
        lines += [f"At this run's noise level ({trials} trials per cell), these differences are significant (the trials' "
                  "ranges are apart):", ""]
        lines += [f"- {s}" for s in significant] or ["- none"]
        lines += ["", "These are within noise (the ranges overlap): the run cannot tell them apart.", ""]
        lines += [f"- {s}" for s in within] or ["- none"]
        lines.append("")
    lines += ["## All results (medians; spread = lowest–highest trial)", "", "```", format_results(rows, trials, flags), "```", ""]
    if flags:
        lines += ["## Flagged cells", "", "Read these medians as noise or with the caveat named, not as results:", ""]
        lines += [f"- {line}" for line in flag_lines(flags)] + [""]
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
        quick = bool(doc["meta"].get("quick"))
        figures = [os.path.relpath(p, base) for p in draw_all(doc["results"], plot_dir, quick=quick, trials=run_trials(doc), flags=doc["meta"].get("flags"))]
    text = render_report(doc, figures)
    if output:
        Path(output).write_text(text)
        print(f"wrote {output}")
    else:
        print(text)
    return 0
