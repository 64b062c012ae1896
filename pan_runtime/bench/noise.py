"""Which numbers of a run a reader can act on: spread, significance and flagged cells.

Every cell keeps the lowest and highest of its trials' values (stats ``trial_min`` and
``trial_max``) beside the median. Two cells differ *significantly at the run's noise level*
when those ranges do not overlap; with one trial per cell there is no range and nothing can
be called significant. A cell is *flagged* (``meta.flags``: cell -> reason) when a reader
would be misled by its median alone:

* an added latency at or below zero, or whose range reaches zero (the middle node cost
  less than the noise);
* an overhead whose baseline (``passive`` or ``cforw``) is at or below zero, or within noise
  of it, so the percentage has no meaning; or whose difference to the baseline is within
  the spread;
* a flood cell as fast as the direct link (``none``, within noise): it measures the sender,
  not the middle; or significantly faster than it, which only noise can make;
* a cell during which other work used much of the machine (``others_cpu``, ``load.py``);
* a cell whose middle's workers were to poll (``--worker-poll-us``) but had mostly gone to
  sleep when its batches came (``worker_woke_share``): each was woken from its own CPU, which
  on a virtual machine costs more than the crossing it was to save.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .load import BUSY_SHARE
from .results import index

#: above this share of its batches finding the polling worker asleep, a cell is flagged
ASLEEP_SHARE = 0.5

__all__ = ["cell_key", "flag_cells", "flag_lines", "interval", "significance", "spread_text"]

Key = tuple[str, str, str, str, int]


def cell_key(exp: str, topo: str, config: str, runtime: str, size: int, metric: str) -> str:
    """How ``meta.flags`` and the other per-cell notes name a cell."""
    return f"{exp} {topo} {config} {runtime} {size} {metric}"


def interval(ix: dict[Any, float], cell: Key, metric: str) -> tuple[float, float] | None:
    """The cell's (lowest, highest) trial value of ``metric``, if the run recorded them."""
    lo, hi = ix.get((*cell, metric, "trial_min")), ix.get((*cell, metric, "trial_max"))
    return (lo, hi) if lo is not None and hi is not None else None


def spread_text(ix: dict[Any, float], cell: Key, metric: str, trials: int, fmt: str = "{:.1f}") -> str:
    """``lo–hi`` over the trials, ``1 trial`` when there is no spread to show, ``-`` without data."""
    if trials <= 1:
        return "1 trial"
    r = interval(ix, cell, metric)
    return "-" if r is None else f"{fmt.format(r[0])}–{fmt.format(r[1])}"


def significance(a: tuple[float, float] | None, b: tuple[float, float] | None, trials: int) -> str:
    """``"yes"`` when the two trial ranges are apart, ``"no (within noise)"`` when they overlap,
    ``"unknown (1 trial)"`` without ranges."""
    if trials <= 1 or a is None or b is None:
        return "unknown (1 trial)" if trials <= 1 else "unknown (no spread recorded)"
    return "yes" if a[1] < b[0] or b[1] < a[0] else "no (within noise)"


def _fmt(r: tuple[float, float]) -> str:
    return f"{r[0]:.1f}…{r[1]:.1f}"


def flag_cells(rows: Iterable[Any], trials: int) -> dict[str, str]:
    """The flagged cells of a run's result rows (see the module docstring), with the reason."""
    ix = index(rows)
    cells = sorted({k[:5] for k in ix})
    flags: dict[str, str] = {}
    for cell in cells:
        exp, topo, config, rt, size = cell
        if exp == "ping" and (v := ix.get((*cell, "added_us", "median"))) is not None:
            r = interval(ix, cell, "added_us")
            if v <= 0:
                flags[cell_key(*cell, "added_us")] = (
                    f"{v:.1f} µs: at or below zero, the middle measured faster than the direct link: noise, not a result")
            elif r is not None and trials > 1 and r[0] <= 0:
                flags[cell_key(*cell, "added_us")] = f"{v:.1f} µs but the trials range {_fmt(r)} µs reaches zero: within noise"
        if exp == "ping" and config not in ("none", "passive", "cforw"):
            base_cfg = "passive" if (exp, topo, "passive", rt, size, "added_us", "median") in ix else "cforw"
            base_cell = (exp, topo, base_cfg, rt, size)
            base = ix.get((*base_cell, "added_us", "median"))
            if base is not None:
                br = interval(ix, base_cell, "added_us")
                key = cell_key(*cell, "overhead_pct")
                if base <= 0:
                    flags[key] = f"no overhead: the {base_cfg} baseline added {base:.1f} µs, at or below zero (noise)"
                elif br is not None and trials > 1 and br[0] <= 0:
                    flags[key] = f"no overhead: the {base_cfg} baseline's trials range {_fmt(br)} µs reaches zero"
                elif trials > 1:
                    mine = interval(ix, cell, "added_us")
                    if significance(mine, br, trials).startswith("no"):
                        flags[key] = (f"within noise: added {_fmt(mine)} µs against {base_cfg} {_fmt(br)} µs "  # type: ignore[arg-type]
                                      "(the trials' ranges overlap)")
        if exp == "flood" and config in ("cforw", "active", "activecopy"):
            none_cell = (exp, topo, "none", rt, size)
            v, n = ix.get((*cell, "capsules_per_s", "median")), ix.get((*none_cell, "capsules_per_s", "median"))
            if v is not None and n is not None and n > 0:
                key = cell_key(*cell, "capsules_per_s")
                sig = significance(interval(ix, cell, "capsules_per_s"), interval(ix, none_cell, "capsules_per_s"), trials)
                if sig == "yes" and v > n:
                    flags[key] = (f"{v:,.0f}/s, faster than the direct link (none, {n:,.0f}/s) that it adds a hop to: "
                                  "the direct link's cell was disturbed (noise)")
                elif sig.startswith("no") or (trials <= 1 and abs(v - n) <= 0.1 * n):
                    flags[key] = ("sender-limited: as fast as the direct link (none), so this measures the sending "
                                  "application, not what the middle can forward")
        woke = ix.get((*cell, "worker_woke_share", "median"))
        if woke is not None and woke > ASLEEP_SHARE:
            flags[cell_key(*cell, "worker_woke_share")] = (
                f"workers slept: {woke:.0%} of the batches found the polling worker asleep and woke it from its "
                "CPU; --worker-poll-us is shorter than the gaps between this cell's capsules, raise it")
        share = ix.get((*cell, "others_cpu", "median"))
        if share is not None and share > BUSY_SHARE:
            flags.setdefault(cell_key(*cell, "others_cpu"),
                             f"busy machine: other work used {share:.0%} of the CPUs while this cell ran")
    return flags


def flag_lines(flags: dict[str, str]) -> list[str]:
    """The flags as lines for a reader: each noisy cell with its reason, then the
    sender-limited flood cells and the busy-machine cells in one line each (every cell is
    named in ``meta.flags``)."""
    busy = {k: v for k, v in flags.items() if k.endswith(" others_cpu")}
    sender = [k.rsplit(" ", 1)[0] for k, v in flags.items() if v.startswith("sender-limited")]
    lines = [f"{k}: {v}" for k, v in flags.items() if k not in busy and not v.startswith("sender-limited")]
    if sender:
        lines.append(f"sender-limited, as fast as the direct link (none), so they measure the sending application, "
                     f"not what the middle can forward: {', '.join(sender)}")
    if busy:
        shares = sorted(int(v.split("used ", 1)[1].split("%", 1)[0]) for v in busy.values() if "used " in v)
        span = f"{shares[0]}–{shares[-1]}%" if shares else "much"
        lines.append(f"busy machine during {len(busy)} cell(s): other work used {span} of the CPUs while they ran "
                     "(each is named in meta.flags and marked in the tables)")
    return lines
