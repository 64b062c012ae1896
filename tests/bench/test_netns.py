"""The ``netns`` topology (we are root here): every configuration, cleanup after a run and
after an interrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bench_helpers import ROOT, RUN_LIMIT_S, BenchRun, bench_namespaces, run_bench

from pan_runtime.bench.mininet_session import LOCK_FD_ENV, MininetSession, read_sysctls
from pan_runtime.bench.results import validate_document


def test_quick_netns_run_measures_every_configuration(tmp, tmp_path):
    out = tmp_path / "n.json"
    r = run_bench("--quick", "--experiment", "ping,flood", "--topology", "netns", "--runtime", "native,restricted_py",
                  "--size", "1500", "--json", str(out), "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    validate_document(doc)
    got = {(x["config"], x["runtime"], x["metric"]) for x in doc["results"]}
    for rt in ("native", "restricted_py"):
        for config in ("none", "passive", "cforw", "active"):
            assert (config, rt, "rtt_us") in got
            assert (config, rt, "capsules_per_s") in got
        for config in ("passive", "cforw", "active"):
            assert (config, rt, "added_us") in got
    # overhead relative to passive, where passive's own added latency is above zero (on veth
    # pairs kernel forwarding costs next to nothing, so it may be lost in noise)
    ix = {(x["config"], x["runtime"], x["metric"]): x["value"] for x in doc["results"] if x["stat"] == "median"}
    for (config, rt, metric), v in ix.items():
        if metric == "overhead_pct":
            base = ix[("passive", rt, "added_us")]
            assert base > 0 and abs(v - (ix[(config, rt, "added_us")] - base) / base * 100) < 1e-6
    assert bench_namespaces(r.pid) == []
    assert list(tmp.iterdir()) == []


def _bench_processes(marker: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if marker.encode() in cmd:
            pids.append(int(d))
    return pids


def _interrupt(tmp, sig: int) -> BenchRun:
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "pan_runtime.cli.main", "bench", "--experiment", "ping", "--topology", "netns",
         "--runtime", "native", "--size", "1500", "--count", "1000000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        # SIGINT as a terminal's shell gives it: a suite started in the background of a script
        # inherits it ignored, and so would the run (it would never see the signal sent below)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # wait until the namespaces exist and the nodes are up (their application sockets exist),
    # as long as the run is alive: a busy machine may take its time
    deadline = time.monotonic() + RUN_LIMIT_S
    while p.poll() is None and time.monotonic() < deadline:
        socks = list(tmp.glob("pan-bench-*/*.sock"))
        if len(socks) >= 7 and bench_namespaces(p.pid):
            break
        time.sleep(0.1)
    else:
        p.kill()
        raise AssertionError(f"the run never got going (exit {p.poll()}): {p.communicate()[1]}")
    time.sleep(0.5)
    assert _bench_processes(str(tmp)), "the nodes should be running now"
    p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        p.kill()  # its nodes die with it (their parent-death signal)
        p.communicate()
        raise AssertionError(f"the run went on {RUN_LIMIT_S:.0f} s after signal {sig}") from None
    return BenchRun(p.args, p.returncode, out, err, p.pid)


def test_an_interrupted_run_leaves_nothing_behind(tmp):
    r = _interrupt(tmp, signal.SIGINT)
    assert r.returncode == 130, r.stderr
    assert "interrupted" in r.stderr
    assert bench_namespaces(r.pid) == []
    assert _bench_processes(str(tmp)) == []
    assert list(tmp.iterdir()) == []  # no sockets, configurations or temporary directories


def test_a_terminated_run_leaves_nothing_behind(tmp):
    r = _interrupt(tmp, signal.SIGTERM)
    assert r.returncode == 130, r.stderr
    assert bench_namespaces(r.pid) == []
    assert _bench_processes(str(tmp)) == []
    assert list(tmp.iterdir()) == []


def test_mininet_runs_the_line_and_restores_its_sysctls_or_says_why_not(tmp, tmp_path):
    from pan_runtime.bench.testbed import topology_unavailable

    why = topology_unavailable("mininet")
    # this test's own Mininet session, handed to the run: no other Mininet on the machine
    # (another test session's lab or bench) changes the sysctls between the two readings
    session = MininetSession() if why is None else None
    try:
        before = read_sysctls()
        out = tmp_path / "m.json"
        env = {LOCK_FD_ENV: str(session.fd)} if session is not None and session.fd is not None else {}
        r = run_bench("--quick", "--experiment", "ping", "--topology", "mininet", "--runtime", "native",
                      "--size", "1500", "--config", "none,passive,active", "--json", str(out), "--quiet", tmp=tmp,
                      env=env, pass_fds=tuple(int(v) for v in env.values()))
        after = read_sysctls()
    finally:
        if session is not None:
            session.release()  # the run restores what its Mininet changed; this only held the lock
    if why is not None:  # Debian's mininet package is not installed on this machine
        assert r.returncode == 2 and f"topology mininet is unavailable: {why}" in r.stderr
        return
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    got = {(x["config"], x["metric"]) for x in doc["results"] if x["topology"] == "mininet"}
    assert {("none", "rtt_us"), ("passive", "added_us"), ("active", "added_us")} <= got
    assert after == before  # Mininet's raised limits are put back
    assert list(tmp.iterdir()) == []
