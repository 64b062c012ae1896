"""``pan bench``: compare runtimes on the paper's experiments, measured side by side in one run.

Experiments ``dispatch`` (per-capsule time inside one node), ``ping`` (round trip, and the
middle node's added latency), ``flood`` (throughput) and ``capacity`` (the highest rate a
middle forwards with loss under a threshold); configurations ``none``, ``passive``,
``cforw``, ``cbatch`` (capacity only), ``active``, ``activecopy``; topologies ``inproc``, ``udp``, ``netns``,
``mininet``. ``docs/bench.md`` explains the run, the JSON and how to read the figures;
``pan bench report FILE.json`` renders a run as Markdown next to the paper's figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import PanError

from .dispatch import dispatch_experiment
from .options import CONFIGS, EXPERIMENTS, PLACEMENTS, SINKS, TOPOLOGIES, make_plan
from .results import Result

if TYPE_CHECKING:
    from .options import Plan
    from .runner import Outcome

__all__ = ["Result", "add_arguments", "main", "dispatch_experiment", "threads_line"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``pan bench`` (and its ``report`` subcommand) on ``p``."""
    p.add_argument("--experiment", help=f"comma-separated: {', '.join(EXPERIMENTS)} (default dispatch)")
    p.add_argument("--topology", help=f"comma-separated: {', '.join(TOPOLOGIES)}, or lab:FILE (a pan lab topology file; default inproc)")
    p.add_argument("--lab-backend", choices=("netns", "mininet"), default="netns",
                   help="what builds lab:FILE topologies: network namespaces (default) or Mininet")
    p.add_argument("--config", help=f"comma-separated: {', '.join(CONFIGS)} (default all that the topology has)")
    p.add_argument("--runtime", help="comma-separated runtimes (default: every available runtime with reference "
                                     "protocols; dispatch also takes the baselines null and bare)")
    p.add_argument("--isolation", help="comma-separated: in_process, process: how the middle node runs the runtimes' "
                                       "code; both: each runtime's cells twice, side by side (default in_process)")
    p.add_argument("--size", help="comma-separated IP packet sizes in bytes (default 128,156,512,1024,1500,1504,2048,8192)")
    p.add_argument("--batch", type=int, default=1, help="largest batch the node hands a runtime in dispatch (default 1)")
    p.add_argument("--count", type=int, help="capsules per trial (default: dispatch 2000, ping 300, flood 4000)")
    p.add_argument("--trials", type=int, help="trials per cell, the median kept (default 3; capacity: searches per cell)")
    p.add_argument("--warmup", type=int, help="untimed trials before the timed ones (default 1)")
    p.add_argument("--duration", type=float, help="capacity: seconds per trial (default 1.0)")
    p.add_argument("--loss", type=float, help="capacity: the loss a passing trial may have, in percent (default 0.1)")
    p.add_argument("--steps", type=int, help="capacity: trials per search at most (default 8)")
    p.add_argument("--top-rate", type=float, help="capacity: the highest rate tried, capsules/s (default 1000000)")
    p.add_argument("--threads", type=int, default=1,
                   help="fast-path threads of every pan node (limits.threads; default 1)")
    p.add_argument("--pin-threads", action="store_true",
                   help="the middle's fast-path thread I runs on the I-th of the middle's CPUs (free: the machine's; "
                        "limits.thread_cpus), so the scheduler cannot put two threads on one CPU")
    p.add_argument("--flows", type=int, default=1,
                   help="capacity: source ports the generator sends from toward a pan middle, which learns "
                        "each as a neighbour (default 1; the kernel spreads flows over threads, not one flow)")
    p.add_argument("--drain", type=int, metavar="N",
                   help="capacity: instead of the paced search, stop the middle, queue N capsules in its "
                        "sockets, let it go and time how fast it forwards them (the middle alone on the CPUs)")
    p.add_argument("--sink", default="gro", choices=SINKS,
                   help="capacity: how the sink reads (gro: with UDP_GRO, so a middle's GSO messages arrive "
                        "whole; plain: one datagram a read, as a receiver without GRO; default gro)")
    p.add_argument("--worker-poll-us", type=int, default=0, metavar="US",
                   help="with --isolation process: the middle's workers run on a CPU the middle does not run on "
                        "and poll their rings US µs after each batch (limits.worker_cpus, worker_poll_us): "
                        "containment without wake-ups, at the price of that CPU (default 0: they sleep)")
    p.add_argument("--busy-worker-cpu", action="store_true",
                   help="with --worker-poll-us and --isolation in_process,process: the in-process ping and flood cells run "
                        "beside a busy loop on the polling workers' CPU, so both mechanisms are measured with "
                        "that CPU occupied (a control: a busy second vCPU slows the first one's wake-ups)")
    p.add_argument("--placement", default="onecpu", help=f"{', '.join(PLACEMENTS)}: which CPUs the hosts run on (default onecpu)")
    p.add_argument("--json", metavar="FILE", help="write results as JSON")
    p.add_argument("--plot", metavar="DIR", help="draw the paper's figures as PNG files into DIR (needs matplotlib)")
    p.add_argument("--quick", action="store_true", help="a smoke run under a minute: few capsules, one trial, two sizes")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    sub = p.add_subparsers(dest="bench_command", metavar="[report]")
    r = sub.add_parser("report", help="render a bench JSON file as a Markdown report next to the paper's figures")
    r.add_argument("file", help="a JSON file from `pan bench --json`")
    r.add_argument("-o", "--output", help="write the report here (default: standard output)")
    r.add_argument("--plot", dest="report_plot", metavar="DIR", help="also draw the figures into DIR and link them")


def _known_runtimes() -> tuple[dict[str, str | None], dict[str, dict[str, str]], set[str]]:
    """Every runtime (None or why it is unavailable), their versions, and those with reference protocols."""
    from pan_runtime.cli.protocols import has_reference_sources
    from pan_runtime.plugin.plugins import default_plugins

    plugins = default_plugins()
    infos = plugins.runtime_infos()
    known = {i.name: (None if i.available else (i.reason or "unavailable")) for i in infos}
    return known, {i.name: dict(i.versions) for i in infos}, {n for n in known if has_reference_sources(n, plugins)}


class _Progress:
    def __init__(self, quiet: bool):
        self.on = not quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, text: str) -> None:
        if self.on:
            sys.stderr.write(("\r\033[K" + text) if self.tty else text + "\n")
            sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _load(avg: list[float] | None) -> str:
    return "unknown" if avg is None else "/".join(f"{x:.1f}" for x in avg)


def threads_line(label: str, per: list[int], serial: float | None, pinned: bool) -> str:
    """The line under a capacity table for a middle's fast-path threads: what each finished
    in C, the node lock's share of its CPU time, and a warning when several were not pinned."""
    return (f"capacity {label}: capsules each fast-path thread finished in C over the run: "
            + " / ".join(str(n) for n in per)
            + (f"; the node's lock held {serial:.0%} of its CPU time (the part that stays one thread at a time)"
               if serial is not None else "")
            + ("; the threads were not pinned, and the scheduler can put two on one CPU (--pin-threads)"
               if len(per) > 1 and not pinned else ""))


def _pinned_words(plan: Plan) -> str:
    """The header's words for ``--pin-threads``: the CPUs the middle's threads take in turn."""
    if not plan.thread_cpus:
        return ""
    return f"; the middle's threads pinned to CPUs {', '.join(map(str, plan.thread_cpus))} in turn"


def _busy_words(plan: Plan, outcome: Outcome) -> str:
    """The header's words for ``--busy-worker-cpu``: where the loop ran, and how much it ran."""
    if not plan.busy_worker_cpu:
        return ""
    return (f"; the in-process ping and flood cells ran beside a busy loop on CPU {plan.worker_cpu} "
            f"({outcome.busy_cpu_s:.1f} s of CPU)")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(args: argparse.Namespace) -> int:
    """``pan bench``: check everything, run, print the table, write JSON and plots."""
    if getattr(args, "bench_command", None) == "report":
        from .report import report_main

        return report_main(args.file, args.output, args.report_plot)
    from .load import loadavg
    from .placement import cpus_for, pin_self
    from .results import document, meta, write_json
    from .runner import run_plan
    from .table import format_results
    from .testbed import topology_unavailable

    known, versions, with_protocols = _known_runtimes()
    plan = make_plan(args, known, with_protocols)
    for topo in plan.topologies:
        why = topology_unavailable(topo)
        if why:
            plan.skipped_topologies[topo] = why
    if plan.skipped_topologies and len(plan.skipped_topologies) == len(plan.topologies):
        raise PanError("; ".join(f"topology {t} is unavailable: {w}" for t, w in plan.skipped_topologies.items()))
    if args.plot:
        from .plots import check_matplotlib

        check_matplotlib()
    available = [r for r in plan.runtimes if known.get(r) is None]
    progress = _Progress(args.quiet)
    old_term = signal.signal(signal.SIGTERM, _terminate)
    affinity = pin_self(plan.placement, "sender")
    load_start = loadavg()
    try:
        outcome = run_plan(plan, available, progress)
    finally:
        os.sched_setaffinity(0, affinity)
        signal.signal(signal.SIGTERM, old_term)
        progress.done()
    load_end = loadavg()
    header = (f"{', '.join(plan.experiments)}; {plan.trials} trial(s) per cell (median kept, spread = lowest–highest "
              f"trial) after {plan.warmup} warm-up; placement {plan.placement}; {plan.threads} fast-path thread(s) per node"
              f"{f', {plan.flows} flows' if plan.flows > 1 else ''}"
              f"{_pinned_words(plan)}"
              f"{f'; the middle workers poll {plan.worker_poll_us} µs on CPU {plan.worker_cpu}' if plan.worker_poll_us else ''}"
              f"{_busy_words(plan, outcome)}"
              f"{f'; sink {plan.sink}' if 'capacity' in plan.experiments else ''}; load average {_load(load_start)} at the "
              f"start, {_load(load_end)} at the end")
    if plan.quick:
        header = f"QUICK RUN (a smoke test: {plan.trials} trial(s), few capsules; not a measurement)\n{header}"
    print(header)
    print(format_results(outcome.results, plan.trials, outcome.flags) or "(no results)")
    if any(t.startswith("lab:") for t in plan.topologies):
        from pan_runtime.lab.experiments import format_lab_results

        print("\non labs (medians):\n" + (format_lab_results(outcome.results) or "(no results)"))
    if outcome.syscall_method:
        print(f"\ncapacity: system calls of the middle counted with {outcome.syscall_method} over one more trial at "
              "each search's capacity; CPU time (the middle's threads' run time, /proc/PID/task/*/schedstat) over the "
              "highest passing trial")
    for label, per in outcome.capacity_threads.items():
        print(threads_line(label, per, outcome.capacity_serial.get(label), bool(plan.thread_cpus)))
    if outcome.flags:
        from .noise import flag_lines

        print("\nflagged cells (read these medians as noise or with the caveat named, not as results):")
        for line in flag_lines(outcome.flags):
            print(f"  {line}")
    notes = {**plan.skipped, **{f"topology {t}": w for t, w in plan.skipped_topologies.items()}, **outcome.skipped}
    if notes:
        print("\nnot run:")
        for k, why in notes.items():
            print(f"  {k}: {why}")
    if outcome.loss:
        print("\nflood cells with loss (fraction of data capsules not counted):")
        for k, v in outcome.loss.items():
            print(f"  {k}: {v:.1%}")
    for topo, changed in outcome.sysctls.items():
        print(f"\n{topo} raised machine-wide sysctls while it ran (restored since):")
        for k, v in changed.items():
            print(f"  {k}: {v['before']} -> {v['during']}")
    if outcome.failed:
        print("\nfailed:")
        for k, why in outcome.failed.items():
            print(f"  {k}: {why}")
    if args.json:
        m = meta(
            {k: v for k, v in vars(args).items() if k not in ("fn",)} | {"plan": plan.options()},
            runtime_versions=versions,
            threads=plan.threads,
            flows=plan.flows,
            capacity_threads=outcome.capacity_threads,
            capacity_serial=outcome.capacity_serial,
            placement={"mode": plan.placement, "cpus": {r: sorted(cpus_for(plan.placement, r) or []) for r in ("sender", "middle", "receiver")}},
            skipped=notes,
            failed=outcome.failed,
            loss=outcome.loss,
            sysctls=outcome.sysctls,
            quick=plan.quick,
            load={"start": load_start, "end": load_end},
            flags=outcome.flags,
            **({"syscall_method": outcome.syscall_method} if outcome.syscall_method else {}),
            **({"busy_loop_cpu_s": round(outcome.busy_cpu_s, 2)} if plan.busy_worker_cpu else {}),
        )
        write_json(args.json, document(m, outcome.results))
        print(f"wrote {args.json}")
    if args.plot:
        from .plots import draw_all

        for path in draw_all([r.__dict__ for r in outcome.results], args.plot, quick=plan.quick, trials=plan.trials,
                              flags=outcome.flags):
            print(f"wrote {path}")
    return 1 if outcome.failed else 0
