"""The conformance kit's runner (``pan_runtime.testing.kit``): every check has an outer time
limit and runs in a worker process, so a runtime that hangs or crashes fails that check,
with what it wrote to standard error, and the run goes on with a fresh worker. Skips follow
the isolation level a runtime declares, not its name. The misbehaving runtimes are in
``tests/kit_runtimes.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pan_runtime.errors import PanError
from pan_runtime.testing import Kit, run_conformance
from pan_runtime.testing.checks import check_ids

TESTS = Path(__file__).resolve().parent
PLUGIN = ["kit_runtimes"]


@pytest.fixture(autouse=True)
def plugin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports ``kit_runtimes`` from this folder."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_check_that_hangs_fails_at_the_time_limit_and_the_next_runs_in_a_fresh_worker():
    with Kit("loops", timeout=3, plugin_modules=PLUGIN) as kit:
        quick = kit.run("forward")  # loops has no reference protocols: a failure that returns at once
        assert quick.outcome == "failed" and "no reference protocols for runtime 'loops'" in quick.detail
        first_worker = kit.pid
        assert first_worker is not None
        spin = kit.run("spin")
        assert spin.outcome == "failed", spin
        assert "no answer within the time limit of 3 s; the worker was ended" in spin.detail
        assert spin.seconds >= 3
        assert kit.pid is None and _gone(first_worker)
        again = kit.run("badargs")  # a fresh worker, which hangs in turn
        assert again.outcome == "failed" and "time limit" in again.detail
        assert kit.pid is None


def test_a_crash_is_a_failure_with_the_runtimes_own_words_and_skips_follow_isolation():
    with Kit("aborts", timeout=120, plugin_modules=PLUGIN) as kit:
        spin, raise_ = kit.run("spin"), kit.run("raise")
        # aborts is not named native: the skip comes from its isolation level
        for r in (spin, raise_):
            assert r.outcome == "skipped" and r.detail.startswith("isolation none:"), r
        crash = kit.run("badargs")
        assert crash.outcome == "failed", crash
        assert "the worker process died during the check (killed by SIGABRT)" in crash.detail
        assert "aborts: the code took the process down" in crash.detail
        dep = kit.run("dep")  # the next check runs in a fresh worker (and crashes it in turn)
        assert dep.outcome == "failed" and "SIGABRT" in dep.detail


def test_a_runtime_that_contains_code_but_declares_no_limit_fails_the_budget_case_without_running_it():
    with Kit("unlimited", timeout=120, plugin_modules=PLUGIN) as kit:
        r = kit.run("spin")
        assert r.outcome == "failed"
        assert "declares no limit that stops a run" in r.detail and "isolation guarded" in r.detail
        assert kit.pid is not None  # nothing hung: the worker is still there


def test_run_conformance_refuses_what_is_not_installed_and_unknown_checks():
    with pytest.raises(PanError, match="no runtime named 'nosuch'"):
        run_conformance("nosuch")
    with pytest.raises(PanError, match="no reference runtime named 'nosuch'"):
        run_conformance("wasm", reference="nosuch")
    with Kit("wasm") as kit, pytest.raises(PanError, match="no conformance check 'warp'"):
        kit.run("warp")
    with pytest.raises(PanError, match="time limit"):
        Kit("wasm", timeout=0)


def test_every_check_passes_on_a_builtin_runtime_with_progress_reported():
    seen = []
    results = run_conformance("restricted_py", progress=seen.append)
    assert [r.check for r in results] == check_ids() == [r.check for r in seen]
    assert {r.kind for r in results} == {"protocol", "case", "differential"}
    assert [r for r in results if r.outcome != "passed"] == []


def test_the_kit_runs_a_runtime_in_process_isolation_where_its_faults_are_contained():
    """In worker processes the node kills what loops and survives what aborts: the checks run
    to an answer in the same kit worker, which the in-process runs above cannot."""
    with Kit("loops", timeout=120, plugin_modules=PLUGIN, isolation="process") as kit:
        spin = kit.run("spin")
        assert spin.outcome == "passed", spin  # both capsules killed_budget, the node forwards on
        assert kit.pid is not None
    with Kit("aborts", timeout=120, plugin_modules=PLUGIN, isolation="process") as kit:
        raise_ = kit.run("raise")
        assert raise_.outcome == "passed", raise_  # the abort is the capsule's fault, not the node's
        first = kit.pid
        assert first is not None
        crash = kit.run("badargs")
        assert "the worker process died" not in crash.detail, crash
        assert kit.pid == first
    with pytest.raises(PanError, match="isolation must be"):
        Kit("wasm", isolation="elsewhere")
