"""The paper's figures (3-8) and a dispatch figure, drawn as PNG files with matplotlib.

One file per figure and topology, drawn as small multiples: one panel per runtime (its
configurations as lines), or for ``dispatch`` one panel per configuration (the runtimes as
lines), all panels on one y scale. Every point has an error bar from the lowest to the
highest trial, every axis labelled ticks a value can be read off. Round trips, throughput
and dispatch times use log axes as in the paper; added latency and overheads a linear one
with the zero line, because noise can push them below zero: such points, and every point
``noise.flag_cells`` flags, are drawn as crosses. A ``--quick`` run says so in every title.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from pan_runtime.errors import PanError

from .noise import cell_key, flag_cells
from .options import PROCESS_SUFFIX
from .results import index

__all__ = ["check_matplotlib", "draw_all", "figure_panels", "FIGURES", "log_ticks"]

#: file stem -> (experiment, metric, title, y label, log y axis)
FIGURES = {
    "dispatch": ("dispatch", "dispatch_us", "Per-capsule dispatch time at the middle node", "µs per capsule", True),
    "rtt": ("ping", "rtt_us", "Round-trip time of ping capsules (Fig. 3)", "round trip (µs)", True),
    "added": ("ping", "added_us", "Latency added by the middle node (Fig. 4)", "added latency (µs)", False),
    "overhead": ("ping", "overhead_us", "Overhead relative to passive or cforw (Fig. 5)", "overhead (µs)", False),
    "overhead-pct": ("ping", "overhead_pct", "Percent overhead relative to the forwarding baseline (Fig. 6)", "overhead (%)", False),
    "flood-cps": ("flood", "capsules_per_s", "Flood throughput (Fig. 7)", "capsules per second", True),
    "flood-mbit": ("flood", "mbit_per_s", "Flood throughput (Fig. 8)", "Mbit/s", True),
}
RUNTIME_ORDER = ("native", "wasm", "jvm", "jvm-nogc", "restricted_py", "null", "bare")
CONFIG_ORDER = ("none", "passive", "cbatch", "cforw", "active", "activecopy")

#: (size, median, low, high, flag): flag "" or "noise" or "sender" (drawn as a cross or a ring)
Point = tuple[int, float, float | None, float | None, str]


def check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PanError("--plot needs matplotlib: pip install 'pan-runtime[bench]'") from None


def _order(names: set[str], order: tuple[str, ...]) -> list[str]:
    """``names`` in ``order``; a runtime in process isolation (``native/process``) right after
    the same runtime in-process."""
    def key(n: str) -> tuple[int, str, str]:
        base, isolation = _split(n)
        return (order.index(base) if base in order else len(order), base if base not in order else "", isolation)

    return sorted(names, key=key)


def _split(name: str) -> tuple[str, str]:
    """(runtime, isolation) of a cell's runtime; the ``-nogc`` suffix stays on the runtime."""
    if PROCESS_SUFFIX in name:
        return name.replace(PROCESS_SUFFIX, ""), "process"
    return name, "in_process"


def _series(rows: list[dict[str, Any]], exp: str, metric: str, topo: str, flags: dict[str, str]) -> dict[tuple[str, str], list[Point]]:
    """(config, runtime) -> points of ``metric`` on ``topo``."""
    ix = index(rows)
    out: dict[tuple[str, str], list[Point]] = {}
    for (e, t, config, rt, size, m, s), v in ix.items():
        if s != "median" or t != topo:
            continue
        cell = (e, t, config, rt, size)
        if metric == "overhead_us":
            # Fig. 5: added latency above the forwarding baseline, in µs
            if e != "ping" or m != "added_us":
                continue
            base_cfg = "passive" if (e, t, "passive", rt, size, m, s) in ix else "cforw"
            base = ix.get((e, t, base_cfg, rt, size, m, s))
            if base is None or config in (base_cfg, "none"):
                continue
            a_lo, a_hi = ix.get((*cell, m, "trial_min")), ix.get((*cell, m, "trial_max"))
            b_lo, b_hi = ix.get((e, t, base_cfg, rt, size, m, "trial_min")), ix.get((e, t, base_cfg, rt, size, m, "trial_max"))
            lo = a_lo - b_hi if a_lo is not None and b_hi is not None else None
            hi = a_hi - b_lo if a_hi is not None and b_lo is not None else None
            noisy = cell_key(*cell, "overhead_pct") in flags or cell_key(*cell, "added_us") in flags
            out.setdefault((config, rt), []).append((size, v - base, lo, hi, "noise" if noisy else ""))
            continue
        if e != exp or m != metric:
            continue
        why = flags.get(cell_key(*cell, "overhead_pct" if metric == "overhead_pct" else metric), "")
        if e == "flood":
            why = flags.get(cell_key(*cell, "capsules_per_s"), "")
        flag = "sender" if why.startswith("sender-limited") else "noise" if why else ""
        out.setdefault((config, rt), []).append((size, v, ix.get((*cell, m, "trial_min")), ix.get((*cell, m, "trial_max")), flag))
    return out


_COLORS = {"none": "tab:gray", "passive": "tab:purple", "cforw": "tab:olive", "active": "tab:blue", "activecopy": "tab:cyan"}
_RT_COLORS = {"native": "tab:blue", "wasm": "tab:orange", "jvm": "tab:red", "jvm-nogc": "tab:pink",
              "restricted_py": "tab:green", "null": "tab:gray", "bare": "black"}
_MARKS = {"none": ".", "passive": "v", "cforw": "s", "active": "o", "activecopy": "D"}


def _round2(v: float) -> float:
    """``v`` to two significant digits."""
    return float(f"{v:.2g}")


def log_ticks(lo: float, hi: float) -> list[float]:
    """Round values between ``lo`` and ``hi`` (> 0) to label a log axis with: powers of ten,
    1-2-5 per decade, or finer when the data spans less than a decade, so that at least three
    are labelled (the data's ends, to two digits, where the span is narrower still)."""
    inside: list[float] = []
    for mantissas, enough in (((1.0,), 4), ((1.0, 2.0, 5.0), 3), ((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0), 3)):
        ticks = []
        for exponent in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
            ticks += [m * 10.0**exponent for m in mantissas]
        inside = [t for t in ticks if lo <= t * (1 + 1e-9) and t <= hi * (1 + 1e-9)]
        if len(inside) >= enough:
            # label the data's ends too where the round values stop well inside them
            ends = [_round2(lo)] if inside[0] > lo * 1.6 else []
            ends += [_round2(hi)] if inside[-1] < hi / 1.6 else []
            return sorted(set(inside) | set(ends))
    ends = [t for t in (_round2(lo), _round2(hi)) if lo * 0.97 <= t <= hi * 1.03]
    return sorted(set(inside) | set(ends)) or [lo, hi]


def _label(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _panels(series: dict[tuple[str, str], list[Point]], by_config: bool) -> list[str]:
    return _order({k[0] if by_config else k[1] for k in series}, CONFIG_ORDER if by_config else RUNTIME_ORDER)


def figure_panels(rows: list[dict[str, Any]], stem: str, topo: str, trials: int = 1) -> list[str]:
    """The panels of figure ``stem`` on ``topo``: runtimes, or configurations for dispatch
    (empty when the run has no data for it)."""
    exp, metric = FIGURES[stem][:2]
    return _panels(_series(rows, exp, metric, topo, flag_cells(rows, trials)), exp == "dispatch")


def draw_all(rows: list[dict[str, Any]], directory: str | Path, *, quick: bool = False, trials: int = 1,
             flags: dict[str, str] | None = None) -> list[Path]:
    """Draw every figure the rows have data for into ``directory``; returns the files written.
    ``flags``: the run's flagged cells beyond those the rows show (the capacity search's)."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    flags = {**flag_cells(rows, trials), **(flags or {})}
    written = []
    topologies = sorted({r["topology"] for r in rows})
    for stem, (exp, metric, title, ylabel, logy) in FIGURES.items():
        for topo in topologies:
            series = _series(rows, exp, metric, topo, flags)
            if not series:
                continue
            by_config = exp == "dispatch"  # dispatch: a panel per configuration, else per runtime
            panels = _panels(series, by_config)
            ncols = 2 if len(panels) == 4 else min(len(panels), 3)
            nrows = math.ceil(len(panels) / ncols)
            fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 1.2), sharey=True, squeeze=False,
                                     layout="constrained")
            # the axis spans the medians: a trial far out (a stall of the machine) must not squash
            # every panel, so an error bar may run off the panel (the note says so)
            medians = [p[1] for pts in series.values() for p in pts]
            bars = [v for pts in series.values() for p in pts for v in p[2:4] if v is not None]
            positive = [y for y in medians if y > 0]
            sizes = sorted({p[0] for pts in series.values() for p in pts})
            hidden = 0
            handles: dict[str, Any] = {}
            marked: set[str] = set()
            for i, panel in enumerate(panels):
                ax = axes[i // ncols][i % ncols]
                lines = [(k, pts) for k, pts in series.items() if (k[0] if by_config else k[1]) == panel]
                rts = _order({k[1] for k, _ in lines}, RUNTIME_ORDER)
                lines.sort(key=lambda kp: (CONFIG_ORDER.index(kp[0][0]) if kp[0][0] in CONFIG_ORDER else 9, rts.index(kp[0][1])))
                for n, ((config, rt), pts) in enumerate(lines):
                    name = rt if by_config else config
                    # a runtime in process isolation: its in-process colour, dashed
                    color = _RT_COLORS.get(_split(rt)[0], "tab:brown") if by_config else _COLORS.get(config, "tab:brown")
                    dashed = by_config and _split(rt)[1] == "process"
                    pts = sorted(pts)
                    if logy:
                        hidden += sum(1 for p in pts if p[1] <= 0)
                        pts = [p for p in pts if p[1] > 0]
                    if not pts:
                        continue
                    # lines side by side at each size, a little apart, so their error bars do not hide each other
                    xs = [p[0] * 1.025 ** (n - (len(lines) - 1) / 2) for p in pts]
                    ys = [p[1] for p in pts]
                    lo = [max(0.0, p[1] - p[2]) if p[2] is not None and trials > 1 else 0.0 for p in pts]
                    hi = [max(0.0, p[3] - p[1]) if p[3] is not None and trials > 1 else 0.0 for p in pts]
                    if logy:  # an error bar may not reach zero on a log axis
                        lo = [min(low, y * 0.999) for low, y in zip(lo, ys, strict=True)]
                    h = ax.errorbar(xs, ys, yerr=[lo, hi], color=color, marker=_MARKS.get(config, "o"), markersize=4,
                                    linewidth=1.2, capsize=2.5, elinewidth=0.8, label=name, linestyle="--" if dashed else "-")
                    handles.setdefault(name, h)
                    for flag, marker in (("noise", "x"), ("sender", "o")):
                        bad = [(x, p[1]) for x, p in zip(xs, pts, strict=True) if p[4] == flag]
                        if bad:
                            marked.add(flag)
                            ax.plot([x for x, _ in bad], [y for _, y in bad], linestyle="none", marker=marker, markersize=10,
                                    markerfacecolor="none", color="black", markeredgewidth=1.2)
                ax.set_title(panel, fontsize=9)
                ax.set_xscale("log")
                ax.set_xticks(sizes)
                ax.set_xticklabels([str(x) for x in sizes], rotation=45, fontsize=7)
                ax.minorticks_off()
                ax.grid(True, alpha=0.3)
                if not logy:
                    ax.axhline(0.0, color="black", linewidth=0.7)
                if i % ncols == 0:
                    ax.set_ylabel(ylabel, fontsize=8)
                if i // ncols == nrows - 1:
                    ax.set_xlabel("packet size (bytes, IP and UDP headers included)", fontsize=7)
            for j in range(len(panels), nrows * ncols):
                axes[j // ncols][j % ncols].set_visible(False)
            first = axes[0][0]
            if logy and positive:
                first.set_yscale("log")
                lo_y, hi_y = min(positive) / 1.3, max(positive) * 1.3
                ticks = log_ticks(min(positive), max(positive))
                first.set_ylim(lo_y, hi_y)
                first.set_yticks(ticks)
                first.set_yticklabels([_label(t) for t in ticks], fontsize=7)
                first.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            elif medians:
                lo_y, hi_y = min(0.0, *medians), max(0.0, *medians)
                pad = 0.25 * (hi_y - lo_y or 1.0)
                lo_y, hi_y = lo_y - pad, hi_y + pad
                first.set_ylim(lo_y, hi_y)
            else:
                lo_y, hi_y = 0.0, 1.0
            cut = any(v < lo_y or v > hi_y for v in bars)
            for row in axes:
                for ax in row:
                    ax.tick_params(axis="y", labelsize=7)
            head = f"{title} — {topo}"
            if quick:
                head += "\nQUICK RUN: one trial, few capsules — a smoke test, not a measurement"
            fig.suptitle(head, fontsize=10, color="darkred" if quick else "black")
            notes = [f"error bars: lowest to highest of {trials} trials" if trials > 1 else "one trial per point: no error bars"]
            if "noise" in marked:
                notes.append("× flagged as noise (the run's flags say why)")
            if "sender" in marked:
                notes.append("○ sender-limited (as fast as the direct link)")
            if hidden:
                notes.append(f"{hidden} point(s) at or below zero cannot sit on the log axis")
            if cut:
                notes.append("error bars running off a panel are cut (the axis spans the medians)")
            fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False,
                       title="runtime" if by_config else "configuration", title_fontsize=7)
            # the notes as the figure's x label: the layout keeps room for them under the panels
            fig.supxlabel(textwrap.fill("; ".join(notes), 30 * ncols + 40), fontsize=7, x=0.01, ha="left")
            path = d / f"{stem}-{topo}.png"
            fig.savefig(path, dpi=110, metadata={"Title": head.replace("\n", " — ")})
            plt.close(fig)
            written.append(path)
    written += _draw_capacity(rows, d, flags, quick=quick, trials=trials)
    return written


#: the capacity figure's panels: metric, title, log y axis
CAPACITY_PANELS = (
    ("capacity_kpps", "capacity (kpps, loss under the threshold)", True),
    ("cpu_us_per_capsule", "middle's CPU per capsule (µs)", False),
    ("syscalls_per_capsule", "middle's system calls per capsule", True),
)


def capacity_lines(rows: list[dict[str, Any]], topo: str, metric: str) -> dict[str, list[tuple[int, float, float, float]]]:
    """Middle ("cforw", "active native") -> (size, median, lowest, highest) of ``metric`` on ``topo``."""
    ix = index(rows)
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for (e, t, config, rt, size, m, st), v in ix.items():
        if e != "capacity" or t != topo or m != metric or st != "median":
            continue
        lo = ix.get((e, t, config, rt, size, m, "trial_min"), v)
        hi = ix.get((e, t, config, rt, size, m, "trial_max"), v)
        out.setdefault(config if rt == "-" else f"{config} {rt}", []).append((size, v, lo, hi))
    return out


def _draw_capacity(rows: list[dict[str, Any]], d: Path, flags: dict[str, str], *, quick: bool, trials: int) -> list[Path]:
    """One figure per topology: a panel per measure (capacity, CPU and system calls per
    capsule), a line per middle over the packet size; a ring marks a generator-limited cell."""
    import matplotlib.pyplot as plt

    written = []
    for topo in sorted({r["topology"] for r in rows if r["experiment"] == "capacity"}):
        panels = [(m, title, logy, capacity_lines(rows, topo, m)) for m, title, logy in CAPACITY_PANELS]
        panels = [p for p in panels if p[3]]
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.2), squeeze=False, layout="constrained")
        names = sorted({n for p in panels for n in p[3]}, key=lambda n: (
            CONFIG_ORDER.index(n.split()[0]) if n.split()[0] in CONFIG_ORDER else len(CONFIG_ORDER), n))
        cmap = plt.get_cmap("tab10")
        colors = {n: cmap(i % 10) for i, n in enumerate(names)}
        handles: dict[str, Any] = {}
        limited = False
        for ax, (metric, title, logy, lines) in zip(axes[0], panels, strict=True):
            sizes = sorted({p[0] for pts in lines.values() for p in pts})
            for n, name in enumerate(names):
                pts = sorted(p for p in lines.get(name, []) if not logy or p[1] > 0)
                if not pts:
                    continue
                xs = [p[0] * 1.02 ** (n - (len(names) - 1) / 2) for p in pts]
                ys = [p[1] for p in pts]
                err = [[max(0.0, y - p[2]) for y, p in zip(ys, pts, strict=True)],
                       [max(0.0, p[3] - y) for y, p in zip(ys, pts, strict=True)]] if trials > 1 else None
                if logy and err:
                    err[0] = [min(e, y * 0.999) for e, y in zip(err[0], ys, strict=True)]
                h = ax.errorbar(xs, ys, yerr=err, color=colors[name], marker=_MARKS.get(name.split()[0], "o"),
                                markersize=4, linewidth=1.2, capsize=2.5, elinewidth=0.8, label=name)
                handles.setdefault(name, h)
                config, _, rt = name.partition(" ")
                bad = [(x, y) for x, y, p in zip(xs, ys, pts, strict=True) if flags.get(
                    cell_key("capacity", topo, config, rt or "-", p[0], "capacity_kpps"), "").startswith("generator-limited")]
                if bad and metric == "capacity_kpps":
                    limited = True
                    ax.plot([x for x, _ in bad], [y for _, y in bad], linestyle="none", marker="o", markersize=10,
                            markerfacecolor="none", color="black", markeredgewidth=1.2)
            ax.set_title(title, fontsize=9)
            ax.set_xscale("log")
            ax.set_xticks(sizes)
            ax.set_xticklabels([str(x) for x in sizes], fontsize=7)
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_xlabel("packet size (bytes, IP and UDP headers included)", fontsize=7)
            values = [p[1] for pts in lines.values() for p in pts if p[1] > 0]
            if logy and values:
                ax.set_yscale("log")
                ticks = log_ticks(min(values), max(values))
                ax.set_ylim(min(values) / 1.4, max(values) * 1.4)
                ax.set_yticks(ticks)
                ax.set_yticklabels([_label(t) for t in ticks], fontsize=7)
                ax.yaxis.set_minor_locator(matplotlib_null())
            else:
                ax.set_ylim(bottom=0)
        head = f"Capacity of the middle — {topo}"
        if quick:
            head += "\nQUICK RUN: short searches — a smoke test, not a measurement"
        fig.suptitle(head, fontsize=10, color="darkred" if quick else "black")
        notes = [f"error bars: lowest to highest of {trials} searches" if trials > 1 else "one search per point: no error bars"]
        if limited:
            notes.append("○ generator-limited (the middle forwarded all that was offered)")
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7, frameon=False,
                   title="middle", title_fontsize=7)
        fig.supxlabel(textwrap.fill("; ".join(notes), 120), fontsize=7, x=0.01, ha="left")
        path = d / f"capacity-{topo}.png"
        fig.savefig(path, dpi=110, metadata={"Title": head.replace("\n", " — ")})
        plt.close(fig)
        written.append(path)
    return written


def matplotlib_null() -> Any:
    """A locator that draws no minor ticks."""
    import matplotlib.ticker

    return matplotlib.ticker.NullLocator()
