"""The conformance worker: a process that runs checks for ``pan_runtime.testing.kit``, one at
a time, so that the kit can stop a check that hangs or crashes without losing the run.

Requests are JSON lines on standard input (``{"check": ID}``); answers are JSON lines on the
original standard output, which the worker keeps to itself: anything else written to file
descriptor 1 (an engine, a compiler, the code under test) goes to standard error, which the
kit keeps and shows beside a check that failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "run_one"]


def run_one(check: str, runtime: str, plugins: Any, reference: str) -> dict[str, Any]:
    """Run one check; its outcome (``passed``, ``failed``, ``skipped``), detail and duration."""
    from pan_runtime.errors import PanError
    from pan_runtime.testing.checks import CHECKS, Failure, Skipped

    t0 = time.monotonic()
    try:
        CHECKS[check].run(runtime, plugins, reference)
        outcome, detail = "passed", ""
    except Skipped as exc:
        outcome, detail = "skipped", str(exc)
    except Failure as exc:
        outcome, detail = "failed", str(exc)
    except PanError as exc:
        outcome, detail = "failed", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in the runtime (or the check) is a failure with its traceback
        tb = "".join(traceback.format_exception(exc)[-6:]).rstrip()
        outcome, detail = "failed", f"{type(exc).__name__}: {exc}\n{tb}"
    return {"check": check, "outcome": outcome, "detail": detail, "seconds": round(time.monotonic() - t0, 3)}


def main(argv: Sequence[str] | None = None) -> int:
    from pan_runtime.net.lifetime import die_with_parent

    die_with_parent()
    p = argparse.ArgumentParser(prog="python -m pan_runtime.testing.worker")
    p.add_argument("--runtime", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--plugin", action="append", default=[], help="a plugin module to load besides the entry points")
    args = p.parse_args(argv)
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)

    from pan_runtime.plugin import nullrt
    from pan_runtime.plugin.plugins import load_plugins

    plugins = load_plugins(extra=[nullrt, *(importlib.import_module(m) for m in args.plugin)])
    answers.write(json.dumps({"ready": True, "failures": plugins.failures}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        answers.write(json.dumps(run_one(request["check"], args.runtime, plugins, args.reference)) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process by the kit
    sys.exit(main())
