"""The compiler: load jobs in child processes, bounded in number, time and memory, never
waited for; outcomes are bytes or a refusal naming why. Real jobs (the wasm runtime's
compile), real processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import wasmtime

from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.net.compiler import Compiler, Outcome
from pan_runtime.net.lifetime import child_env
from pan_runtime.plugin.loadjob import LoadJob
from pan_runtime.plugin.loadlimits import LoadLimits
from pan_runtime.testing.wasmgen import many_functions, nested_blocks
from pan_wasm.compile import engine_settings, make_config

SETTINGS = engine_settings("epoch", 512 << 10)


def job(payload: bytes, limits: LoadLimits, target: str = "pan_wasm.compile:compile_module") -> LoadJob:
    return LoadJob(target, payload, {"engine": SETTINGS, "limits": dataclasses.asdict(limits), "who": "test module"})


def finish(compiler: Compiler, outcomes: dict[bytes, Outcome], n: int, timeout: float = 120) -> None:
    """Poll (as a loop would) until ``n`` outcomes are in; a hang guard, not a deadline."""
    end = time.monotonic() + timeout
    while len(outcomes) < n and time.monotonic() < end:
        compiler.poll()
        time.sleep(0.005)
    assert len(outcomes) == n, (outcomes, compiler.info())


def collect(outcomes: dict[bytes, Outcome], key: bytes):  # type: ignore[no-untyped-def]
    return lambda outcome: outcomes.__setitem__(key, outcome)


def test_a_compiled_module_comes_back_serialized_and_loads_in_an_engine_of_the_same_settings():
    limits = LoadLimits()
    compiler = Compiler(limits)
    outcomes: dict[bytes, Outcome] = {}
    try:
        compiler.submit(b"a", job(many_functions(5), limits), collect(outcomes, b"a"))
        assert compiler.running == 1 and compiler.busy
        finish(compiler, outcomes, 1)
        artifact = outcomes[b"a"]
        assert isinstance(artifact, bytes)
        module = wasmtime.Module.deserialize(wasmtime.Engine(make_config(SETTINGS)), artifact)
        assert {e.name for e in module.exports} == {"memory", "accept"}
        assert compiler.counters["compiled"] == 1 and not compiler.busy
    finally:
        compiler.close()


@pytest.mark.parametrize(
    ("payload", "limits", "reason"),
    [
        (nested_blocks(200), LoadLimits(code_nesting=100), FaultReason.TOO_DEEP),
        (many_functions(5), LoadLimits(compile_time_ms=1), FaultReason.COMPILE_TIMEOUT),
        # a time limit no load reaches: the memory limit must be what stops it
        (many_functions(60_000), LoadLimits(code_functions=100_000, compile_memory=256 << 20, compile_time_ms=600_000),
         FaultReason.COMPILE_MEMORY),
    ],
    ids=["refused_by_the_job", "out_of_time", "out_of_memory"],
)
def test_a_job_that_cannot_finish_is_refused_with_its_reason(payload, limits, reason):
    compiler = Compiler(limits)
    outcomes: dict[bytes, Outcome] = {}
    try:
        compiler.submit(b"k", job(payload, limits), collect(outcomes, b"k"))
        finish(compiler, outcomes, 1)
        outcome = outcomes[b"k"]
        assert isinstance(outcome, CodeObjectError) and outcome.reason is reason, outcome
        assert not compiler.busy
    finally:
        compiler.close()


def test_a_job_that_crashes_is_compile_failed():
    limits = LoadLimits()
    compiler = Compiler(limits)
    outcomes: dict[bytes, Outcome] = {}
    try:
        compiler.submit(b"k", job(b"", limits, target="pan_wasm.compile:no_such_function"), collect(outcomes, b"k"))
        finish(compiler, outcomes, 1)
        assert outcomes[b"k"].reason is FaultReason.COMPILE_FAILED  # type: ignore[union-attr]
        assert compiler.counters["failed"] == 1
    finally:
        compiler.close()


def test_jobs_beyond_compile_jobs_wait_their_turn_and_a_cancelled_one_never_reports():
    limits = LoadLimits(compile_jobs=1)
    compiler = Compiler(limits)
    outcomes: dict[bytes, Outcome] = {}
    try:
        for key in (b"1", b"2", b"3"):
            compiler.submit(key, job(many_functions(3), limits), collect(outcomes, key))
        assert compiler.info()["running"] == 1 and compiler.info()["waiting"] == 2
        assert compiler.cancel(b"2")
        finish(compiler, outcomes, 2)
        assert set(outcomes) == {b"1", b"3"} and all(isinstance(o, bytes) for o in outcomes.values())
        assert compiler.counters["started"] == 2 and compiler.counters["cancelled"] == 1
    finally:
        compiler.close()


def test_close_kills_the_compiler_process():
    limits = LoadLimits(code_functions=300_000, compile_time_ms=600_000, compile_memory=4 << 30)
    compiler = Compiler(limits)
    compiler.submit(b"k", job(many_functions(200_000), limits), lambda _outcome: pytest.fail("reported after close"))
    proc = compiler._running[b"k"].proc
    assert proc is not None and proc.poll() is None
    compiler.close()
    assert proc.poll() == -signal.SIGKILL
    assert not compiler.busy


def test_the_compiler_process_dies_with_the_node(tmp_path):
    """A node killed outright (SIGKILL: no cleanup runs) leaves no compiler process behind,
    and no file of its job (its temporary directory stays empty)."""
    script = (
        "import sys, time\n"
        "from pan_runtime.net.compiler import Compiler\n"
        "from pan_runtime.plugin.loadlimits import LoadLimits\n"
        "from pan_runtime.plugin.loadjob import LoadJob\n"
        "from pan_runtime.testing.wasmgen import many_functions\n"
        "from pan_wasm.compile import engine_settings\n"
        "import dataclasses\n"
        "lim = LoadLimits(code_functions=300000, compile_time_ms=600000, compile_memory=4 << 30)\n"
        "c = Compiler(lim)\n"
        "c.submit(b'k', LoadJob('pan_wasm.compile:compile_module', many_functions(200000),\n"
        "    {'engine': engine_settings('epoch', 512 << 10), 'limits': dataclasses.asdict(lim)}), print)\n"
        "print(c._running[b'k'].proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    node = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=child_env({**os.environ, "TMPDIR": str(tmp_path)}))
    try:
        assert node.stdout is not None
        child = int(node.stdout.readline())
        assert _alive(child)
    finally:
        node.kill()
        node.wait()
        if node.stdout is not None:
            node.stdout.close()
    end = time.monotonic() + 30
    while _alive(child) and time.monotonic() < end:
        time.sleep(0.02)
    assert not _alive(child), "the compiler process outlived the node"
    assert list(tmp_path.iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    finally:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
