"""Runs a plan: every experiment, topology, configuration, runtime and size it names, in an
order that lets drift of a shared machine hit all runtimes alike, and turns the trials
into result rows (the median trial kept, and the lowest and highest trial beside it) plus
the derived metrics of the paper's figures, the share of the machine other work used
during each cell, and the flagged cells (``noise.py``).
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from pan_runtime.errors import PanError

from .busyloop import BusyLoop, busy_cpu
from .dispatch import dispatch_experiment
from .inproc import PORT, Trial, inproc_trials, reference_set
from .load import OthersShare
from .noise import flag_cells
from .options import LAB_ONLY, LAB_PREFIX, Plan, cell_runtime, config_unsupported, min_size, split_cell
from .results import Result, summarize

__all__ = ["Outcome", "run_plan", "derive", "NOGC_SUFFIX"]

#: a jvm runtime's figures with the samples during which a collection ran left out
NOGC_SUFFIX = "-nogc"


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    #: what did not run, and why ("ping netns cforw jvm 128": "...")
    skipped: dict[str, str] = field(default_factory=dict)
    #: what ran and failed, and how
    failed: dict[str, str] = field(default_factory=dict)
    #: flood cells whose receiver counted fewer capsules than were sent (fraction lost)
    loss: dict[str, float] = field(default_factory=dict)
    #: machine-wide sysctls a topology changed while it ran (restored since): topology -> name -> values
    sysctls: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    #: cells a reader would be misled by (``noise.flag_cells``): cell -> why
    flags: dict[str, str] = field(default_factory=dict)
    #: capacity cells flagged by the search (at its top, generator-limited, stray datagrams)
    capacity_flags: dict[str, str] = field(default_factory=dict)
    #: how the capacity experiment counted system calls ("perf", "strace" or why not)
    syscall_method: str = ""
    #: capacity middles with several fast-path threads: capsules each finished in C
    capacity_threads: dict[str, list[int]] = field(default_factory=dict)
    #: the same middles: their node lock's hold time over their CPU time (the serial share)
    capacity_serial: dict[str, float] = field(default_factory=dict)
    #: each ping cell's per-trial median round trips, in the order the trials ran (trial t of
    #: every configuration ran in the same round): (topology, config, runtime, size) -> values
    rounds: dict[tuple[str, str, str, int], list[float]] = field(default_factory=dict)
    #: ``--busy-worker-cpu``: the loops that kept the workers' CPU busy beside in-process cells
    busy_loops: list[BusyLoop] = field(default_factory=list)

    @property
    def busy_cpu_s(self) -> float:
        """The CPU time (s) the busy loops took, all of them ended."""
        return sum(b.cpu_s for b in self.busy_loops)


def _median_of_trials(trials: list[list[float]]) -> dict[str, float]:
    """Each stat as the median over trials of that stat within a trial, and the lowest and
    highest of the trials' medians (``trial_min``, ``trial_max``)."""
    per = [summarize(t) for t in trials if t]
    out = {k: statistics.median(p[k] for p in per) for k in per[0]}
    out["trial_min"] = min(p["median"] for p in per)
    out["trial_max"] = max(p["median"] for p in per)
    return out


def _one_per_trial(samples: list[float]) -> dict[str, float]:
    """Stats of one sample per trial: the median and its spread (no p99 of a handful)."""
    s = {k: v for k, v in summarize(samples).items() if k != "p99"}
    s["trial_min"], s["trial_max"] = s["min"], s["max"]
    return s


class _Recorder:
    def __init__(self, out: Outcome):
        self.out = out

    def add(self, exp: str, topo: str, config: str, runtime: str, size: int, metric: str, stats: dict[str, float]) -> None:
        for stat, value in stats.items():
            self.out.results.append(Result(exp, topo, config, runtime, size, metric, stat, float(value)))

    def others(self, exp: str, topo: str, config: str, runtime: str, size: int, share: float | None) -> None:
        """The share of the machine other work used while the cell ran."""
        if share is not None:
            self.add(exp, topo, config, runtime, size, "others_cpu", {"median": share})

    def trials(self, exp: str, topo: str, config: str, runtime: str, size: int, trials: list[Trial]) -> None:
        if exp == "ping":
            self.add(exp, topo, config, runtime, size, "rtt_us", _median_of_trials([t.samples for t in trials]))
            self.out.rounds[(topo, config, runtime, size)] = [statistics.median(t.samples) for t in trials if t.samples]
            clean = [t.clean for t in trials if t.clean is not None]
            if clean and all(clean):
                self.add(exp, topo, config, runtime + NOGC_SUFFIX, size, "rtt_us", _median_of_trials(clean))
                self.out.rounds[(topo, config, runtime + NOGC_SUFFIX, size)] = [statistics.median(c) for c in clean]
        else:
            cps = [t.samples[0] for t in trials]
            s = _one_per_trial(cps)
            self.add(exp, topo, config, runtime, size, "capsules_per_s", s)
            self.add(exp, topo, config, runtime, size, "mbit_per_s", {k: v * size * 8 / 1e6 for k, v in s.items()})
            worst = max(t.loss for t in trials)
            if worst > 0:
                self.out.loss[f"{exp} {topo} {config} {runtime} {size}"] = worst
        gcs = [t.gc_pauses for t in trials if t.gc_pauses is not None]
        if gcs:
            self.add(exp, topo, config, runtime, size, "gc_pauses", {"median": statistics.median(gcs), "max": max(gcs)})
        workers = [t.workers for t in trials if t.workers is not None]
        if workers:
            self.add(exp, topo, config, runtime, size, "middle_workers", {"median": statistics.median(workers), "min": min(workers)})
        shares = [t.fast_share for t in trials if t.fast_share is not None]
        if shares:
            self.add(exp, topo, config, runtime, size, "fast_share", {"median": statistics.median(shares), "min": min(shares)})
        woke = [t.woke_share for t in trials if t.woke_share is not None]
        if woke:
            self.add(exp, topo, config, runtime, size, "worker_woke_share", {"median": statistics.median(woke), "max": max(woke)})


def run_plan(plan: Plan, available: list[str], progress: Callable[[str], None] | None = None) -> Outcome:
    """Run every cell of ``plan`` with the ``available`` runtimes (others are in ``plan.skipped``)."""
    out = Outcome()
    rec = _Recorder(out)
    runtimes = [r for r in plan.runtimes if r in available or r in ("null", "bare")]

    def attempt(key: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except PanError as exc:
            out.failed[key] = str(exc)
        except Exception as exc:  # a runtime's own error (an engine that failed): named, and the run goes on
            out.failed[key] = f"{type(exc).__name__}: {exc}"

    if "dispatch" in plan.experiments:
        for size in plan.sizes:
            for config in (c for c in plan.configs if c in ("active", "activecopy")):
                for rt in plan.cell_runtimes(runtimes):
                    def one(rt: str = rt, size: int = size, config: str = config) -> None:
                        load = OthersShare()
                        load.start()
                        workers: list[int] = []
                        samples = dispatch_experiment(
                            rt, size, count=plan.counts["dispatch"], trials=plan.trials, batch=plan.batch,
                            warmup=plan.warmup, copy=config == "activecopy", progress=progress, workers=workers,
                        )
                        rec.add("dispatch", "inproc", config, rt, size, "dispatch_us", _one_per_trial(samples))
                        rec.others("dispatch", "inproc", config, rt, size, load.stop())
                        if workers:
                            rec.add("dispatch", "inproc", config, rt, size, "middle_workers", {"median": workers[0]})

                    attempt(f"dispatch inproc {config} {rt} {size}", one)
    _run_labs(plan, runtimes, out, rec, progress)
    if "capacity" in plan.experiments:
        _run_capacity(plan, [r for r in runtimes if r not in ("null", "bare")], out, rec, progress)
    socket_exps = [e for e in plan.experiments if e in ("ping", "flood")]
    if not socket_exps or all(t.startswith(LAB_PREFIX) for t in plan.topologies):
        out.flags = {**flag_cells(out.results, plan.trials), **out.capacity_flags}
        return out
    node_rts = [r for r in runtimes if r not in ("null", "bare")]
    for r in runtimes:
        if r in ("null", "bare"):
            out.skipped[f"ping/flood {r}"] = "a dispatch baseline: it has no ping or flood protocol"
    codes = {}
    for r in node_rts:
        def build(r: str = r) -> None:
            codes[r] = reference_set(r)

        attempt(f"build {r}", build)
    node_rts = [r for r in node_rts if r in codes]
    for topo in plan.topologies:
        if topo in plan.skipped_topologies or topo.startswith(LAB_PREFIX):
            continue
        if topo == "inproc":
            _run_inproc(plan, socket_exps, plan.cell_runtimes(node_rts), rec, attempt, progress)
        else:
            for isolation in plan.isolations:  # a middle per isolation: its runtimes run one way
                _run_sockets(plan, topo, socket_exps, node_rts, codes, rec, attempt, progress, isolation)
    derive(out)
    out.flags = {**flag_cells(out.results, plan.trials), **out.capacity_flags}
    return out


def _run_capacity(plan: Plan, runtimes: list[str], out: Outcome, rec: _Recorder,
                  progress: Callable[[str], None] | None) -> None:
    """The capacity experiment on every socket topology of the plan (``capacity.py``)."""
    from .capacity import run_capacity

    for topo in plan.topologies:
        if topo in plan.skipped_topologies:
            continue
        why = config_unsupported("capacity", topo, "active")
        if why:
            out.skipped[f"capacity {topo}"] = why
            continue
        for isolation in plan.isolations:
            try:
                got = run_capacity(plan, topo, runtimes, rec.add, out.failed, out.skipped, progress, isolation)
            except PanError as exc:
                out.failed[f"capacity {topo}" + (" process" if isolation == "process" else "")] = str(exc)
                continue
            out.capacity_flags.update(got.flags)
            out.syscall_method = got.syscall_method
            out.capacity_threads.update(got.threads)
            out.capacity_serial.update(got.serial)


def _run_labs(plan: Plan, runtimes: list[str], out: Outcome, rec: _Recorder, progress: Callable[[str], None] | None) -> None:
    """The experiments on ``lab:FILE`` topologies (``pan_runtime.lab.experiments``)."""
    for topo in plan.topologies:
        for e in LAB_ONLY:
            if e in plan.experiments and not topo.startswith(LAB_PREFIX):
                out.skipped[f"{e} {topo}"] = config_unsupported(e, topo, "") or ""
    labs = [t for t in plan.topologies if t.startswith(LAB_PREFIX) and t not in plan.skipped_topologies]
    if not labs:
        return
    if "process" in plan.isolations:
        out.skipped[f"{'/'.join(e for e in plan.experiments if e in LAB_ONLY) or 'lab'} process"] = (
            "a lab has no single middle: its nodes run their runtimes in-process (--isolation process "
            "applies to the middle of dispatch, ping, flood and capacity)"
        )
    from pan_runtime.lab.experiments import LAB_EXPERIMENTS, run_lab

    exps = [e for e in plan.experiments if e in LAB_EXPERIMENTS]
    if not exps:
        return
    node_rts = [r for r in runtimes if r not in ("null", "bare")]
    for topo in labs:
        try:
            run_lab(plan, topo, node_rts, rec.add, out.failed, progress)
        except PanError as exc:
            out.failed[f"{'/'.join(exps)} {topo}"] = str(exc)


def _cells(plan: Plan, exps: list[str], topo: str, rec: _Recorder) -> list[tuple[str, str]]:
    """(config, reason-or-empty) pairs for ``topo``; unsupported ones noted once as skipped."""
    cells = []
    for config in plan.configs:
        reasons = {e: config_unsupported(e, topo, config) for e in exps}
        if all(reasons.values()):
            rec.out.skipped[f"{'/'.join(exps)} {topo} {config}"] = next(iter(reasons.values())) or ""
            continue
        cells.append((config, ""))
    return cells


def _size_ok(exp: str, size: int, key: str, rec: _Recorder) -> bool:
    if size < min_size(exp):
        rec.out.skipped[key] = f"a {exp} capsule needs at least {min_size(exp)} bytes"
        return False
    return True


def _run_inproc(plan, exps, runtimes, rec, attempt, progress) -> None:  # type: ignore[no-untyped-def]
    """Every configuration of a (size, runtime, experiment) side by side, a trial of each in turn."""
    configs = [c for c, _ in _cells(plan, exps, "inproc", rec)]
    for size in plan.sizes:
        for rt in runtimes:
            for exp in exps:
                mine = [c for c in configs if not config_unsupported(exp, "inproc", c)]
                if not mine or not all([_size_ok(exp, size, f"{exp} inproc {c} {rt} {size}", rec) for c in mine]):
                    continue

                def one(exp: str = exp, rt: str = rt, size: int = size, mine: list[str] = mine) -> None:
                    # built before the window: a compiler's time comes back as this process's
                    # reaped children's, and would read as the cell's own work
                    reference_set(split_cell(rt)[0])
                    load = OthersShare()
                    load.start()
                    by_config = inproc_trials(exp, rt, mine, size, count=plan.counts[exp], trials=plan.trials,
                                              warmup=plan.warmup, progress=progress)
                    share = load.stop()
                    for config, trials in by_config.items():
                        rec.trials(exp, "inproc", config, rt, size, trials)
                        rec.others(exp, "inproc", config, rt, size, share)

                attempt(f"{exp} inproc {'/'.join(mine)} {rt} {size}", one)


def _run_sockets(plan, topo, exps, runtimes, codes, rec, attempt, progress, isolation="in_process") -> None:  # type: ignore[no-untyped-def]
    """Every configuration runs side by side on one testbed; cells interleave them. The
    middle ``pan node`` runs ``runtimes`` in ``isolation``; the cells are named for it
    (``cell_runtime``), baselines included, so each isolation's cells are complete."""
    from .configuration import copy_on_send_unsupported, start_configuration
    from .sockets import socket_flood, socket_ping
    from .testbed import make_testbed

    copy_why = copy_on_send_unsupported()
    tag = "/".join(exps)
    with make_testbed(topo, plan.placement) as bed, contextlib.ExitStack() as stack:
        changed = getattr(bed, "sysctl_changes", None)
        if changed:
            rec.out.sysctls[topo] = {k: {"before": b, "during": d} for k, (b, d) in changed.items()}
        runs = []
        for config, _ in _cells(plan, exps, topo, rec):
            why = bed.config_unavailable(config) or (copy_why if config == "activecopy" else None)
            if why:
                rec.out.skipped[f"{tag} {topo} {config}"] = why
                continue
            if progress:
                progress(f"{topo}: starting {config}" + (" (middle in process isolation)" if isolation == "process" else ""))
            try:
                runs.append(stack.enter_context(start_configuration(bed, config, runtimes, max(plan.sizes), plan.threads,
                                                                    isolation, worker_poll=plan.worker_poll,
                                                                    thread_cpus=plan.thread_cpus)))
            except PanError as exc:
                rec.out.failed[f"{tag} {topo} {config}"] = str(exc)
        if not runs:
            return
        ok = []
        # the control for polling workers: their CPU kept as busy while the in-process cells run
        busy = stack.enter_context(busy_cpu(plan.worker_cpu if plan.busy_worker_cpu and isolation == "in_process" else None))
        if busy:
            rec.out.busy_loops.append(busy)  # its CPU time is filled in as it ends
        load = OthersShare(lambda: [p.pid for run in runs for p in run.procs] + ([busy.pid] if busy else []))
        for rt in runtimes:
            try:
                for run in runs:
                    run.install_everywhere(codes[rt])
                ok.append(rt)
            except PanError as exc:
                rec.out.failed[f"{tag} {topo} {cell_runtime(rt, isolation)}"] = f"installing the reference protocols: {exc}{_own_words(runs)}"
        flow = 0
        for size in plan.sizes:
            for rt in ok:
                try:
                    for run in runs:
                        run.use_runtime(codes[rt], PORT)
                except PanError as exc:
                    rec.out.failed[f"{tag} {topo} {cell_runtime(rt, isolation)} {size}"] = f"{exc}{_own_words(runs)}"
                    continue
                for exp in exps:
                    if not _size_ok(exp, size, f"{exp} {topo} {cell_runtime(rt, isolation)} {size}", rec):
                        continue
                    flow += 100
                    kw = dict(count=plan.counts[exp], trials=plan.trials, warmup=plan.warmup, progress=progress)
                    load.start()
                    try:
                        if exp == "ping":
                            by_config, failed = socket_ping(runs, rt, codes[rt], size, **kw)
                        else:
                            by_config, failed = socket_flood(runs, rt, codes[rt], size, flow_base=flow, **kw)
                    except PanError as exc:
                        rec.out.failed[f"{exp} {topo} {cell_runtime(rt, isolation)} {size}"] = f"{exc}{_own_words(runs)}"
                        continue
                    share = load.stop()
                    cell = cell_runtime(rt, isolation)
                    for config, trials in by_config.items():
                        if isolation == "process":
                            up = next((r.middle_workers(rt) for r in runs if r.config == config), None)
                            for t in trials:
                                t.workers = up
                        rec.trials(exp, topo, config, cell, size, trials)
                        rec.others(exp, topo, config, cell, size, share)
                    for config, why in failed.items():
                        own = _own_words([r for r in runs if r.config == config])
                        rec.out.failed[f"{exp} {topo} {config} {cell} {size}"] = f"{why}{own}"


def _own_words(runs: list) -> str:  # type: ignore[type-arg]
    """What the configurations' processes wrote to standard error so far (a runtime's own
    error: a JVM that did not start says why there), to append to a failure."""
    said = []
    for run in runs:
        for p in run.procs:
            tail = p.stderr_tail()
            if tail:
                said.append(f"{p.name}: {tail}")
    return ("; its processes said: " + " | ".join(said)) if said else ""


def _paired(mine: list[float] | None, theirs: list[float] | None) -> list[float] | None:
    """Per-round differences of two cells' trial values, when both ran the same rounds."""
    if not mine or not theirs or len(mine) != len(theirs):
        return None
    return [a - b for a, b in zip(mine, theirs, strict=True)]


def derive(out: Outcome) -> None:
    """Add ``added_us`` (half the round trip above ``none``) and ``overhead_pct`` (above the
    forwarding baseline: ``passive`` where it was measured, else ``cforw``), each with a range
    over the trials (``trial_min``, ``trial_max``). Where both cells' trials ran in the same
    rounds (configurations side by side, a trial of each in turn), the range is that of the
    per-round differences, in which drift of the machine common to a round cancels; else the
    widest range the two cells' ranges allow. An overhead is left out where its baseline's
    added latency, or that range, is not above zero (``noise.py`` flags it)."""
    rtt: dict[tuple[str, str, str, int], dict[str, float]] = {}
    for r in out.results:
        if r.experiment == "ping" and r.metric == "rtt_us" and r.stat in ("median", "trial_min", "trial_max"):
            rtt.setdefault((r.topology, r.config, r.runtime, r.size), {})[r.stat] = r.value
    added: dict[tuple[str, str, str, int], dict[str, float]] = {}
    rounds: dict[tuple[str, str, str, int], list[float]] = {}
    for (topo, config, rt, size), v in rtt.items():
        none = rtt.get((topo, "none", rt, size))
        if config == "none" or none is None or "median" not in v or "median" not in none:
            continue
        a = {"median": (v["median"] - none["median"]) / 2}
        paired = _paired(out.rounds.get((topo, config, rt, size)), out.rounds.get((topo, "none", rt, size)))
        if paired:
            rounds[(topo, config, rt, size)] = per = [d / 2 for d in paired]
            a["trial_min"], a["trial_max"] = min(*per, a["median"]), max(*per, a["median"])
        elif {"trial_min", "trial_max"} <= set(v) & set(none):
            a["trial_min"] = (v["trial_min"] - none["trial_max"]) / 2
            a["trial_max"] = (v["trial_max"] - none["trial_min"]) / 2
        added[(topo, config, rt, size)] = a
        for stat, value in a.items():
            out.results.append(Result("ping", topo, config, rt, size, "added_us", stat, value))
    for (topo, config, rt, size), a in added.items():
        base_cfg = "passive" if (topo, "passive", rt, size) in added else "cforw"
        base = added.get((topo, base_cfg, rt, size))
        if config == base_cfg or base is None or base["median"] <= 0 or base.get("trial_min", 1.0) <= 0:
            continue
        pct = {"median": (a["median"] - base["median"]) / base["median"] * 100}
        mine, theirs = rounds.get((topo, config, rt, size)), rounds.get((topo, base_cfg, rt, size))
        if mine and theirs and len(mine) == len(theirs) and min(theirs) > 0:
            per = [(x - y) / y * 100 for x, y in zip(mine, theirs, strict=True)]
            pct["trial_min"], pct["trial_max"] = min(*per, pct["median"]), max(*per, pct["median"])
        elif "trial_min" in a and "trial_min" in base:
            corners = [x / y for x in (a["trial_min"], a["trial_max"]) for y in (base["trial_min"], base["trial_max"])]
            pct["trial_min"], pct["trial_max"] = (min(corners) - 1) * 100, (max(corners) - 1) * 100
        for stat, value in pct.items():
            out.results.append(Result("ping", topo, config, rt, size, "overhead_pct", stat, value))
