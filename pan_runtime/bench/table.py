"""The terminal tables of a run: one per experiment, each median with the spread of its
trials beside it, the ratios a reader wants, and a note where a cell is flagged
(``noise.py``): a flagged added latency or overhead is not printed as a result."""

from __future__ import annotations

from typing import Any

from pan_runtime.node.stats import format_table

from .noise import cell_key, spread_text
from .options import PROCESS_SUFFIX
from .results import Result, index

__all__ = ["format_results", "index"]


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _note(flags: dict[str, str], cell: tuple[str, str, str, str, int], metrics: tuple[str, ...]) -> str:
    """Short words for the cell's flags (the full reasons are listed under the tables)."""
    words = []
    for m in metrics:
        why = flags.get(cell_key(*cell, m), "")
        if why:
            word = why.split(":", 1)[0] if why.startswith(("sender-limited", "busy machine", "within noise",
                                                           "workers slept")) else "noise"
            words.append(word if m != "overhead_pct" else f"overhead {word}")
    return ", ".join(dict.fromkeys(words))


def format_results(results: list[Result] | list[dict[str, Any]], trials: int = 1, flags: dict[str, str] | None = None) -> str:
    """The tables of ``results`` from a run of ``trials`` trials per cell, with ``flags``."""
    ix = index(results)
    flags = flags or {}
    cells = sorted({k[:5] for k in ix}, key=lambda k: (k[0], k[1], k[2], k[4], k[3]))
    parts = []
    disp = [c for c in cells if c[0] == "dispatch"]
    if disp:
        rows = []
        base = "native" if any(c[3] == "native" for c in disp) else "null"
        # with --isolation in_process,process: each RUNTIME/process row against RUNTIME's
        isolated = _isolated(disp)
        for cell in disp:
            exp, topo, config, rt, size = cell
            v = ix.get((*cell, "dispatch_us", "median"))
            ref = ix.get((exp, topo, config, base, size, "dispatch_us", "median"))
            row = [config, rt, str(size), _f(v, "{:.3f}"), spread_text(ix, cell, "dispatch_us", trials, "{:.3f}"),
                   _f(v / ref if v and ref else None, "{:.2f}x")]
            if isolated:
                row.append(_vs_in_process(ix, cell, "dispatch_us"))
            rows.append([*row, _note(flags, cell, ("others_cpu",))])
        head = ["config", "runtime", "size", "median µs", "spread µs", f"vs {base}", *(["vs in-process"] if isolated else []), "note"]
        parts.append("dispatch (in-process, µs per capsule at the middle node; spread = lowest–highest trial)\n"
                     + format_table(rows, head))
    ping = [c for c in cells if c[0] == "ping"]
    if ping:
        rows = []
        isolated = _isolated(ping)
        for cell in ping:
            exp, topo, config, rt, size = cell

            def g(m: str, s: str = "median", cell: tuple[str, str, str, str, int] = cell) -> float | None:
                return ix.get((*cell, m, s))

            added_flag = cell_key(*cell, "added_us") in flags
            pct_flag = cell_key(*cell, "overhead_pct") in flags
            rows.append([topo, config, rt, str(size), _f(g("rtt_us")), spread_text(ix, cell, "rtt_us", trials),
                         _f(g("rtt_us", "p99")),
                         "noise" if added_flag else _f(g("added_us")),
                         "-" if g("added_us") is None else spread_text(ix, cell, "added_us", trials),
                         "noise" if pct_flag else _f(g("overhead_pct"), "{:.0f}%"),
                         *([_vs_in_process(ix, cell, "added_us", flags)] if isolated else []),
                         _note(flags, cell, ("added_us", "overhead_pct", "others_cpu", "worker_woke_share"))])
        parts.append("ping (round trip and the middle node's added latency = (RTT - RTT of none) / 2; "
                     "spread = lowest–highest trial" + (_VS_IN_PROCESS % "added latency" if isolated else "") + ")\n"
                     + format_table(rows, ["topology", "config", "runtime", "size", "RTT µs", "spread", "p99 µs",
                                           "added µs", "added spread", "overhead",
                                           *(["vs in-process"] if isolated else []), "note"]))
    flood = [c for c in cells if c[0] == "flood"]
    if flood:
        rows = []
        isolated = _isolated(flood)
        for cell in flood:
            exp, topo, config, rt, size = cell

            def g(m: str, s: str = "median", cell: tuple[str, str, str, str, int] = cell) -> float | None:
                return ix.get((*cell, m, s))

            rows.append([topo, config, rt, str(size), _f(g("capsules_per_s"), "{:,.0f}"),
                         spread_text(ix, cell, "capsules_per_s", trials, "{:,.0f}"), _f(g("mbit_per_s")),
                         _f(g("gc_pauses"), "{:.0f}"),
                         *([_vs_in_process(ix, cell, "capsules_per_s")] if isolated else []),
                         _note(flags, cell, ("capsules_per_s", "others_cpu", "worker_woke_share"))])
        parts.append("flood (throughput the receiver counted; spread = lowest–highest trial"
                     + (_VS_IN_PROCESS % "capsules/s" if isolated else "") + ")\n"
                     + format_table(rows, ["topology", "config", "runtime", "size", "capsules/s", "spread", "Mbit/s", "GCs",
                                           *(["vs in-process"] if isolated else []), "note"]))
    cap = [c for c in cells if c[0] == "capacity"]
    if cap:
        parts.append(_capacity_table(ix, cap, trials, flags))
    return "\n\n".join(parts)


#: how a table with ``vs in-process`` says what the column is
_VS_IN_PROCESS = "; vs in-process = a RUNTIME/process row's %s over RUNTIME's"


def _isolated(cells: list[tuple[str, str, str, str, int]]) -> bool:
    """Whether ``cells`` hold runtimes in process isolation (``--isolation ...,process``)."""
    return any(c[3].endswith(PROCESS_SUFFIX) for c in cells)


def _vs_in_process(ix: dict[Any, float], cell: tuple[str, str, str, str, int], metric: str,
                   hidden: dict[str, str] | None = None) -> str:
    """A ``RUNTIME/process`` cell's median ``metric`` over the same cell's with ``RUNTIME``
    in-process (the cost of containment, side by side in one run); ``-`` for other rows and
    where either is missing. ``hidden``: the flags under which the table prints ``noise`` for
    the figure itself (ping's added latency); the ratio of such a figure is noise too. Other
    flagged figures are printed with their note, and so is their ratio."""
    exp, topo, config, rt, size = cell
    if not rt.endswith(PROCESS_SUFFIX):
        return "-"
    own = (exp, topo, config, rt[: -len(PROCESS_SUFFIX)], size)
    if hidden and (cell_key(*cell, metric) in hidden or cell_key(*own, metric) in hidden):
        return "noise"
    v, base = ix.get((*cell, metric, "median")), ix.get((*own, metric, "median"))
    return _f(v / base if v and base else None, "{:.2f}x")


#: the middles of the capacity table, in the order of the issue's table: kernel, C, Python, pan
_MIDDLE_ORDER = ("none", "passive", "cbatch", "cforw", "active", "activecopy")


def _middle(config: str, runtime: str) -> str:
    return config if runtime == "-" else f"{config} {runtime}"


def _capacity_table(ix: dict[Any, float], cells: list[tuple[str, str, str, str, int]], trials: int,
                    flags: dict[str, str]) -> str:
    """Capacity per middle: kpps with its spread, Mbit/s, the middle's CPU and system calls
    per forwarded capsule, the loss of the highest passing trial."""
    from .options import BUILTIN_ORDER

    def order(c: tuple[str, str, str, str, int]) -> tuple[object, ...]:
        rt = BUILTIN_ORDER.index(c[3]) if c[3] in BUILTIN_ORDER else len(BUILTIN_ORDER)
        cfg = _MIDDLE_ORDER.index(c[2]) if c[2] in _MIDDLE_ORDER else len(_MIDDLE_ORDER)
        return (c[1], c[4], cfg, rt, c[3])

    rows = []
    isolated = _isolated(cells)
    for cell in sorted(cells, key=order):
        exp, topo, config, rt, size = cell

        def g(m: str, s: str = "median", cell: tuple[str, str, str, str, int] = cell) -> float | None:
            return ix.get((*cell, m, s))

        why = flags.get(cell_key(*cell, "capacity_kpps"), "")
        note = ", ".join(w.split(":", 1)[0] for w in why.split("; ") if w)
        busy = _note(flags, cell, ("others_cpu",))
        rows.append([topo, _middle(config, rt), str(size), _f(g("capacity_kpps")),
                     spread_text(ix, cell, "capacity_kpps", trials), _f(g("mbit_per_s"), "{:.0f}"),
                     _f(g("cpu_us_per_capsule"), "{:.2f}"), _f(g("syscalls_per_capsule"), "{:.3f}"),
                     _f(g("loss_pct"), "{:.3f}%"),
                     *([_vs_in_process(ix, cell, "capacity_kpps")] if isolated else []),
                     ", ".join(x for x in (note, busy) if x)])
    return ("capacity (highest rate forwarded with loss under the threshold, median of the searches; spread = "
            "lowest–highest search; CPU and system calls of the middle process per forwarded capsule"
            + (_VS_IN_PROCESS % "kpps" if isolated else "") + ")\n"
            + format_table(rows, ["topology", "middle", "size", "kpps", "spread", "Mbit/s", "CPU µs/capsule",
                                  "syscalls/capsule", "loss", *(["vs in-process"] if isolated else []), "note"]))
