"""Running a plan (``pan_runtime.bench.runner``): a cell that fails shows the runtime's own
error, whatever it raised, and the run goes on; socket cells append what the configuration's
processes wrote to standard error."""

from __future__ import annotations

import argparse
import sys
import time
from types import SimpleNamespace

from pan_runtime.bench import runner
from pan_runtime.bench.options import make_plan
from pan_runtime.bench.testbed import LoopbackTestbed


def _plan(**kw: object):  # type: ignore[no-untyped-def]
    args = dict(experiment="dispatch", topology="inproc", config="active", runtime="native,wasm", size="1500", batch=1,
                count=20, trials=2, warmup=0, placement="free", quick=False)
    args.update(kw)
    return make_plan(argparse.Namespace(**args), {"native": None, "wasm": None})


def test_an_engines_own_exception_fails_its_cell_with_its_words_and_the_run_goes_on(monkeypatch):
    real = runner.dispatch_experiment

    def engine_fails(rt: str, *a: object, **kw: object) -> list[float]:
        if rt == "wasm":
            raise RuntimeError("Fatal error occurred")  # what JPype says when a JVM cannot start, say
        return real(rt, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "dispatch_experiment", engine_fails)
    out = runner.run_plan(_plan(count=5000), ["native", "wasm"])  # long enough for the clock to tick
    assert out.failed == {"dispatch inproc active wasm 1500": "RuntimeError: Fatal error occurred"}
    native = {(r.stat): r.value for r in out.results if r.runtime == "native" and r.metric == "dispatch_us"}
    assert native["trial_min"] <= native["median"] <= native["trial_max"]
    assert any(r.metric == "others_cpu" and r.runtime == "native" for r in out.results)


def test_a_socket_cells_failure_carries_what_its_processes_said():
    with LoopbackTestbed("free") as bed:
        proc = bed.spawn("middle", [sys.executable, "-c", "import sys, time\nsys.stderr.write('jvm: Could not reserve "
                                                          "enough space for object heap\\n')\nsys.stderr.flush()\ntime.sleep(30)"],
                         "pan node (active middle)")
        deadline = time.monotonic() + 60
        while "Could not reserve" not in proc.stderr_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        words = runner._own_words([SimpleNamespace(procs=[proc])])
        assert words == "; its processes said: pan node (active middle): jvm: Could not reserve enough space for object heap"
        assert proc.popen.poll() is None  # reading did not wait for the process
