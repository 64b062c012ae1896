"""Bad input to ``pan bench``: a clear message, exit status 2, nothing started."""

from __future__ import annotations

import os

import pytest
from bench_helpers import bench_namespaces

from pan_runtime.bench.configuration import node_toml
from pan_runtime.bench.options import min_size
from pan_runtime.cli.main import main
from pan_runtime.net.config import parse_config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runtime", "nosuch"], "unknown runtime 'nosuch'"),
        (["--experiment", "warp"], "unknown experiment 'warp'"),
        (["--topology", "ring"], "unknown topology 'ring'"),
        (["--config", "turbo"], "unknown configuration 'turbo'"),
        (["--placement", "wherever"], "unknown placement 'wherever'"),
        (["--size", "20"], "below the smallest capsule"),
        (["--size", "70000"], "above what a datagram can carry"),
        (["--size", "1500,big"], "'big' is not a whole number"),
        (["--experiment", "ping", "--size", "120"], "below the smallest capsule these experiments send (136 bytes"),
        (["--count", "0"], "must be positive"),
        (["--trials", "-1"], "must be positive"),
        (["--batch", "0"], "at least 1"),
        (["--experiment", "capacity", "--loss", "100"], "--loss is a percentage"),
        (["--experiment", "capacity", "--duration", "0"], "--duration must be between"),
        (["--experiment", "capacity", "--steps", "0"], "--steps must be between"),
        (["--experiment", "capacity", "--top-rate", "10"], "--top-rate must be between"),
        (["--experiment", "capacity", "--size", "99"], "below the smallest capsule these experiments send (100 bytes"),
        (["--threads", "0"], "--threads must be 1..64"),
        (["--threads", "65"], "--threads must be 1..64"),
        (["--experiment", "capacity", "--flows", "0"], "--flows must be 1..64"),
        (["--isolation", "sandbox"], "unknown isolation 'sandbox'; known: in_process, process"),
        (["--worker-poll-us", "500"], "--worker-poll-us is for the middle's workers: it needs --isolation process"),
        (["--isolation", "process", "--worker-poll-us", "100001"], "--worker-poll-us must be 1..100000"),
        (["--isolation", "process", "--worker-poll-us", "500", "--placement", "free"],
         "--worker-poll-us needs a CPU the middle does not run on"),
        (["--busy-worker-cpu"], "--busy-worker-cpu is the in-process cells' control for workers that poll"),
        (["--isolation", "process", "--worker-poll-us", "500", "--busy-worker-cpu"],
         "it needs --worker-poll-us and --isolation in_process,process"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(args, message, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("pan bench: error:")
    assert bench_namespaces(os.getpid()) == []  # a refused run makes none


def _without_mininet(monkeypatch):
    import shutil

    from pan_runtime.bench import testbed

    real = shutil.which
    monkeypatch.setattr(testbed.shutil, "which", lambda name: None if name in ("mn", "mnexec") else real(name))


def test_mininet_missing_says_how_to_get_it(monkeypatch, capsys):
    _without_mininet(monkeypatch)
    assert main(["bench", "--experiment", "ping", "--topology", "mininet"]) == 2
    err = capsys.readouterr().err
    assert "topology mininet is unavailable: Mininet is not installed (Debian's `mininet` package" in err


def test_netns_without_root_says_so(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["bench", "--experiment", "ping", "--topology", "netns"]) == 2
    assert "network namespaces need root" in capsys.readouterr().err


def test_an_unavailable_topology_beside_an_available_one_is_skipped_with_its_reason(monkeypatch, capsys):
    _without_mininet(monkeypatch)
    assert main(["bench", "--experiment", "ping", "--topology", "inproc,mininet", "--runtime", "native",
                 "--size", "1500", "--config", "none", "--count", "5", "--trials", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "topology mininet: Mininet is not installed" in out
    assert "inproc    none    native   1500" in out


def test_experiment_minimum_sizes_follow_the_protocol_headers():
    # IP+UDP (28) + capsule header (52) + the protocol's body header
    assert min_size("dispatch") == 28 + 52 + 20
    assert min_size("ping") == 28 + 52 + 56
    assert min_size("flood") == 28 + 52 + 68


def test_sizes_too_small_for_one_experiment_are_skipped_not_faked(capsys):
    assert main(["bench", "--experiment", "dispatch,ping", "--runtime", "native", "--size", "128", "--config", "active",
                 "--count", "5", "--trials", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ping inproc active native 128: a ping capsule needs at least 136 bytes" in out
    assert "active  native   128" in out  # dispatch ran at 128


def test_a_size_too_small_for_one_experiment_skips_its_cells_with_the_reason(tmp_path, capsys):
    out = tmp_path / "run.json"
    args = ["bench", "--experiment", "ping", "--topology", "inproc", "--config", "active", "--runtime", "native"]
    args += ["--size", "128,1500", "--count", "5", "--trials", "1", "--warmup", "0", "--quiet", "--json", str(out)]
    assert main(args) == 0
    import json

    data = json.loads(out.read_text())
    assert data["meta"]["skipped"]["ping inproc active native 128"] == f"a ping capsule needs at least {min_size('ping')} bytes"
    sizes = {r["size"] for r in data["results"]}
    assert sizes == {1500}


def test_capacity_needs_sockets_and_cbatch_is_a_baseline_of_capacity_only(capsys):
    assert main(["bench", "--experiment", "capacity", "--topology", "inproc", "--runtime", "native", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "capacity inproc: capacity runs its generator and sink on sockets" in out
    assert main(["bench", "--experiment", "ping", "--topology", "inproc", "--config", "cbatch,none", "--runtime", "native",
                 "--size", "1500", "--count", "5", "--trials", "1", "--warmup", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ping inproc cbatch: the C batched forwarder is a baseline of the capacity experiment" in out


def test_capacity_settings_and_default_configurations(tmp_path):
    import argparse

    from pan_runtime.bench import add_arguments
    from pan_runtime.bench.options import make_plan

    p = argparse.ArgumentParser()
    add_arguments(p)
    known = {"native": None}
    plan = make_plan(p.parse_args(["--experiment", "capacity", "--loss", "0.5", "--steps", "5", "--duration", "2"]), known)
    assert (plan.loss, plan.steps, plan.duration, plan.top_rate) == (0.005, 5, 2.0, 1_000_000.0)
    assert "cbatch" in plan.configs and plan.sizes == [128, 1500]
    assert plan.options()["capacity"] == {"duration_s": 2.0, "loss": 0.005, "steps": 5, "top_rate": 1_000_000.0}
    ping = make_plan(p.parse_args(["--experiment", "ping"]), known)
    quick = make_plan(p.parse_args(["--quick", "--experiment", "ping"]), known)
    assert quick.quick and (quick.sizes, quick.trials) == ([156, 1500], 1) and ping.trials == 3
    assert "cbatch" not in ping.configs and "capacity" not in ping.options()
    assert (plan.threads, plan.flows) == (1, 1)
    two = make_plan(p.parse_args(["--experiment", "capacity", "--threads", "2", "--flows", "8"]), known)
    assert (two.threads, two.flows) == (2, 8) and two.options()["threads"] == 2 and two.options()["flows"] == 8
    assert two.thread_cpus == [] and "thread_cpus" not in two.options()
    pinned = make_plan(p.parse_args(["--experiment", "capacity", "--threads", "2", "--pin-threads", "--placement", "onecpu"]), known)
    first = min(os.sched_getaffinity(0))
    assert pinned.thread_cpus == [first] and pinned.options()["thread_cpus"] == [first]  # onecpu: the middle's one CPU
    toml = node_toml("m", "127.0.0.1:1", "127.0.0.1:1", tmp_path / "m.sock", [], [], ["native"], 9216, threads=2,
                     thread_cpus=[1, 0])
    assert parse_config(toml).node.thread_cpus == (1, 0)
    assert plan.sink == "gro" and plan.options()["sink"] == "gro" and "sink" not in ping.options()
    plain = make_plan(p.parse_args(["--experiment", "capacity", "--sink", "plain"]), known)
    assert plain.sink == "plain" and plain.options()["sink"] == "plain"
    with pytest.raises(SystemExit):  # argparse names the choices
        p.parse_args(["--experiment", "capacity", "--sink", "fast"])
    assert min_size("capacity") == 28 + 52 + 20
