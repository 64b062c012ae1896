"""``pan conformance RUNTIME``: run the conformance kit on an installed runtime.

Every check (``pan_runtime.testing.checks``: the reference protocols, pan's shipped cases and
the differential comparison with a reference runtime) runs in a worker process under a time
limit (``pan_runtime.testing.kit``); the table says which passed, failed (and how) or were
skipped (and why). The exit status is 0 when none failed, 1 when some did, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from pan_runtime.errors import PanError
from pan_runtime.testing.kit import DEFAULT_TIMEOUT_S, CheckResult, run_conformance

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``pan conformance`` on the ``pan`` parser."""
    s = sub.add_parser("conformance", help="run the conformance kit on an installed runtime (docs/writing-a-runtime.md)")
    s.add_argument("runtime", nargs="?", help="the runtime to check (as `pan runtimes` names it)")
    s.add_argument("--reference", default="native", help="the runtime the differential checks compare with (default native)")
    s.add_argument("--check", action="append", metavar="ID", help="only this check (repeatable); --list names them")
    s.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"outer time limit of one check in seconds (default {DEFAULT_TIMEOUT_S:g})")
    s.add_argument("--plugin", action="append", metavar="MODULE",
                   help="also load this plugin module (a runtime not installed as a package yet)")
    s.add_argument("--isolation", choices=("in_process", "process"), default=None,
                   help="run the runtime's code in the node's process or in worker processes (docs/isolation.md); "
                        "default: the node's default")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.add_argument("--list", action="store_true", help="list the checks and exit")
    s.set_defaults(fn=_cmd_conformance)


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    def show(r: CheckResult) -> None:
        if not quiet:
            print(f"  {r.check}: {r.outcome} ({r.seconds:.1f} s)", file=sys.stderr, flush=True)

    return show


def _cmd_conformance(args: argparse.Namespace) -> int:
    from pan_runtime.node.stats import format_table
    from pan_runtime.testing.checks import CHECKS

    if args.list:
        print(format_table([[c.id, c.kind, c.description] for c in CHECKS.values()], ["check", "kind", "what it checks"]))
        return 0
    if not args.runtime:
        raise PanError("name the runtime to check (`pan runtimes` lists them), or --list the checks")
    results = run_conformance(args.runtime, reference=args.reference, checks=args.check, timeout=args.timeout,
                              plugin_modules=args.plugin or (), progress=_progress(args.json), isolation=args.isolation)
    failed = [r for r in results if r.outcome == "failed"]
    if args.json:
        print(json.dumps({"runtime": args.runtime, "reference": args.reference, "isolation": args.isolation, "results": [r.as_dict() for r in results]},
                         indent=2))
        return 1 if failed else 0
    rows = [[r.check, r.kind, r.outcome, f"{r.seconds:.1f}", r.detail.splitlines()[0] if r.outcome == "skipped" and r.detail else ""]
            for r in results]
    how = f", isolation {args.isolation}" if args.isolation else ""
    print(f"pan conformance {args.runtime} (differential checks against {args.reference}{how})\n")
    print(format_table(rows, ["check", "kind", "outcome", "s", "why skipped"]))
    for r in failed:
        print(f"\n{r.check} failed:\n  " + r.detail.replace("\n", "\n  "))
    counts = {o: sum(r.outcome == o for r in results) for o in ("passed", "failed", "skipped")}
    print(f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if failed else 0
