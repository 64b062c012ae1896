"""Figures of lab experiments from a bench JSON file: how long a new code object took to
reach every node (``spread``), the latency per hop along the longest path (``path``) and how
long distance-vector routing took to agree again after a link went down and came back
(``converge``), per runtime and lab. ``python -m pan_runtime.lab.plots RUN.json DIR`` writes them as PNG files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pan_runtime.bench.plots import check_matplotlib
from pan_runtime.bench.results import read_json

__all__ = ["draw_lab", "main"]

#: (experiment, metric, axis label, file name)
FIGURES = (
    ("spread", "spread_ms", "time until every node has the code (ms)", "lab-spread.png"),
    ("path", "per_hop_us", "latency per hop, one way (µs)", "lab-path.png"),
    ("converge", "converge_down_ms", "dv tables agree after link down (ms)", "lab-converge-down.png"),
    ("converge", "converge_up_ms", "dv tables agree after link up (ms)", "lab-converge-up.png"),
)


def draw_lab(results: list[dict[str, Any]], folder: str | Path) -> list[Path]:
    """One grouped bar chart per figure with data (labs side by side, a bar per runtime)."""
    check_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for exp, metric, label, name in FIGURES:
        rows = [r for r in results if r["experiment"] == exp and r["metric"] == metric and r["topology"].startswith("lab:")]
        med = {(r["topology"], r["config"], r["runtime"]): r["value"] for r in rows if r["stat"] == "median"}
        if not med:
            continue
        labs = sorted({(t, c) for t, c, _ in med})
        runtimes = sorted({rt for _, _, rt in med})
        width = 0.8 / len(runtimes)
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, rt in enumerate(runtimes):
            xs = [j + i * width for j in range(len(labs))]
            ax.bar(xs, [med.get((t, c, rt), 0.0) for t, c in labs], width, label=rt)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labs))])
        ax.set_xticklabels([f"{t[4:]}\n{c}" for t, c in labs])
        ax.set_ylabel(label)
        ax.set_title(f"{exp} (median)")
        ax.legend()
        fig.tight_layout()
        path = Path(folder) / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out


def main(argv: list[str]) -> int:
    doc = read_json(argv[0])
    for p in draw_lab(doc["results"], argv[1]):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
