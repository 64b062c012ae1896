"""The paper's figures (3-8) and a dispatch figure, drawn as PNG files with matplotlib.

One file per figure and topology, log axes as in the paper. Points that cannot sit on a
log axis (an added latency at or below zero: the middle cost less than the noise) are left
out and said so in the figure's note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pan_runtime.errors import PanError

from .table import index

__all__ = ["check_matplotlib", "draw_all", "FIGURES"]

#: file stem -> (experiment, metric, title, y label)
FIGURES = {
    "dispatch": ("dispatch", "dispatch_us", "Per-capsule dispatch time at the middle node", "µs per capsule"),
    "rtt": ("ping", "rtt_us", "Round-trip time of ping capsules (Fig. 3)", "round trip (µs)"),
    "added": ("ping", "added_us", "Latency added by the middle node (Fig. 4)", "added latency (µs)"),
    "overhead": ("ping", "overhead_us", "Overhead relative to passive or cforw (Fig. 5)", "overhead (µs)"),
    "overhead-pct": ("ping", "overhead_pct", "Percent overhead relative to the forwarding baseline (Fig. 6)", "overhead (%)"),
    "flood-cps": ("flood", "capsules_per_s", "Flood throughput (Fig. 7)", "capsules per second"),
    "flood-mbit": ("flood", "mbit_per_s", "Flood throughput (Fig. 8)", "Mbit/s"),
}


def check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PanError("--plot needs matplotlib: pip install 'pan-runtime[bench]'") from None


def _series(rows: list[dict[str, Any]], exp: str, metric: str, topo: str) -> dict[str, list[tuple[int, float]]]:
    ix = index(rows)
    if metric == "overhead_us":
        # Fig. 5: added latency above the forwarding baseline, in µs
        out: dict[str, list[tuple[int, float]]] = {}
        for (e, t, config, rt, size, m, s), v in ix.items():
            if e != "ping" or t != topo or m != "added_us" or s != "median":
                continue
            base_cfg = "passive" if (e, t, "passive", rt, size, m, s) in ix else "cforw"
            base = ix.get((e, t, base_cfg, rt, size, m, s))
            if base is None or config in (base_cfg, "none"):
                continue
            out.setdefault(f"{config} {rt} (vs {base_cfg})", []).append((size, v - base))
        return out
    out = {}
    for (e, t, config, rt, size, m, s), v in ix.items():
        if e == exp and t == topo and m == metric and s == "median":
            out.setdefault(f"{config} {rt}", []).append((size, v))
    return out


_COLORS = {"native": "tab:blue", "wasm": "tab:orange", "jvm": "tab:red", "jvm-nogc": "tab:pink",
           "restricted_py": "tab:green", "null": "tab:gray", "bare": "black"}
_LINES = {"none": ":", "passive": "-.", "cforw": "--", "active": "-", "activecopy": (0, (5, 1, 1, 1))}
_MARKS = {"none": ".", "passive": "v", "cforw": "s", "active": "o", "activecopy": "D"}


def _style(config: str, runtime: str) -> dict[str, Any]:
    """Colour by runtime, line and marker by configuration, so a figure reads at a glance."""
    return {"color": _COLORS.get(runtime, "tab:purple"), "linestyle": _LINES.get(config, "-"),
            "marker": _MARKS.get(config, "o"), "markersize": 3.5, "linewidth": 1.2}


def draw_all(rows: list[dict[str, Any]], directory: str | Path) -> list[Path]:
    """Draw every figure the rows have data for into ``directory``; returns the files written."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    topologies = sorted({r["topology"] for r in rows})
    for stem, (exp, metric, title, ylabel) in FIGURES.items():
        for topo in topologies:
            series = _series(rows, exp, metric, topo)
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(8.5, 5.5))
            dropped = 0
            sizes: set[int] = set()
            for label, pts in sorted(series.items()):
                pts = sorted(pts)
                good = [(x, y) for x, y in pts if y > 0]
                dropped += len(pts) - len(good)
                sizes.update(x for x, _ in good)
                if good:
                    config, rt = label.split()[:2]
                    ax.plot([x for x, _ in good], [y for _, y in good], label=label, **_style(config, rt))
            ax.set_xscale("log")
            ax.set_yscale("log")
            if sizes:
                ax.set_xticks(sorted(sizes))
                ax.set_xticklabels([str(x) for x in sorted(sizes)], rotation=45, fontsize=7)
                ax.minorticks_off()
            ax.set_xlabel("packet size (bytes, incl. IP and UDP headers)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title} — {topo}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
            if dropped:
                fig.text(0.01, 0.01, f"{dropped} point(s) at or below zero not drawn on the log axis", fontsize=7)
            path = d / f"{stem}-{topo}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written
