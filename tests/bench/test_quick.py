"""``pan bench --quick`` end to end: every runtime, inproc and udp; JSON, plots and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_helpers import run_bench

from pan_runtime.bench.report import headline, render_report
from pan_runtime.bench.results import validate_document

RUNTIMES = ("native", "wasm", "jvm", "restricted_py")


def test_quick_run_on_inproc_and_udp_with_every_runtime(tmp, tmp_path):
    """One size (the quick run's two are ``make_plan``'s, in test_options): every cell of a
    size runs the same code, and the suite's time is dear."""
    out = tmp_path / "quick.json"
    plots = tmp_path / "plots"
    r = run_bench("--quick", "--experiment", "dispatch,ping,flood", "--topology", "inproc,udp", "--size", "1500",
                  "--runtime", ",".join(RUNTIMES), "--json", str(out), "--plot", str(plots), "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    validate_document(doc)
    rows = doc["results"]
    m = doc["meta"]
    assert m["placement"]["mode"] == "onecpu"
    assert set(m["versions"]["runtimes"]) >= set(RUNTIMES)
    assert m["options"]["plan"]["sizes"] == [1500]

    def cells(exp, topo, metric):
        return {(x["config"], x["runtime"], x["size"]) for x in rows if (x["experiment"], x["topology"], x["metric"]) == (exp, topo, metric)}

    size = 1500
    for rt in RUNTIMES:
        assert ("active", rt, size) in cells("dispatch", "inproc", "dispatch_us")
        for config in ("none", "active", "activecopy"):
            assert (config, rt, size) in cells("ping", "inproc", "rtt_us")
            assert (config, rt, size) in cells("flood", "inproc", "capsules_per_s")
        for config in ("none", "cforw", "active"):
            assert (config, rt, size) in cells("ping", "udp", "rtt_us")
            assert (config, rt, size) in cells("flood", "udp", "mbit_per_s")
        assert ("active", rt, size) in cells("ping", "udp", "added_us")
    # the middle pan node forwarded every ping and flood capsule through its fast path
    shares = {(x["experiment"], x["config"], x["runtime"], x["size"]): x["value"]
              for x in rows if x["metric"] == "fast_share" and x["stat"] == "min" and x["topology"] == "udp"}
    assert {(e, "active", rt, size) for e in ("ping", "flood") for rt in RUNTIMES} <= set(shares)
    assert all(v > 0.9 for v in shares.values()), shares
    # overhead relative to cforw on udp (no passive there), wherever cforw's own added latency is above zero
    ix = {(x["config"], x["runtime"], x["size"], x["metric"]): x["value"]
          for x in rows if x["topology"] == "udp" and x["stat"] == "median"}
    pct = {k: v for k, v in ix.items() if k[3] == "overhead_pct"}
    assert pct
    for (config, rt, size, _), v in pct.items():
        base = ix[("cforw", rt, size, "added_us")]
        assert base > 0 and abs(v - (ix[(config, rt, size, "added_us")] - base) / base * 100) < 1e-6
    # jvm: collections counted, and round trips without the samples a collection touched
    assert ("none", "jvm", 1500) in cells("ping", "inproc", "gc_pauses")
    assert ("active", "jvm-nogc", 1500) in cells("ping", "inproc", "rtt_us")
    for x in rows:
        if x["metric"] in ("rtt_us", "dispatch_us", "capsules_per_s", "mbit_per_s"):
            assert x["value"] > 0, x
    # terminal table and notes
    assert "ping (round trip" in r.stdout and "flood (throughput" in r.stdout
    assert "ping/flood udp passive: kernel IP forwarding needs" in r.stdout
    # figures, one per kind and topology
    names = {p.name for p in plots.iterdir()}
    assert {"dispatch-inproc.png", "rtt-udp.png", "added-udp.png", "flood-mbit-udp.png", "flood-cps-inproc.png"} <= names
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())
    # the report quotes the headline figures
    h = headline(rows)
    assert h["dispatch"]["size"] == 1500 and h["dispatch"]["vs_native"]["native"] == 1.0
    assert h["added"]["topology"] == "udp"
    assert h["flood"]["cells"]["cforw native"]["of_cforw"] == 1.0
    text = render_report(doc)
    assert "## Per-capsule dispatch at 1500 bytes" in text and "Java code objects cost 3–5×" in text
    # no process, socket or temporary directory left behind
    assert list(tmp.iterdir()) == []


def test_report_command_renders_markdown_and_figures(tmp, tmp_path):
    out = tmp_path / "d.json"
    r = run_bench("--quick", "--runtime", "null,native", "--size", "1500", "--json", str(out), "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stderr
    md = tmp_path / "report.md"
    r = run_bench("report", str(out), "-o", str(md), "--plot", str(tmp_path / "fig"), tmp=tmp)
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert text.startswith("# pan bench report")
    assert "| native | " in text and "![dispatch-inproc](fig/dispatch-inproc.png)" in text
    r = run_bench("report", str(tmp_path / "nope.json"), tmp=tmp)
    assert r.returncode == 2 and "no such file" in r.stderr


#: keeps one CPU busy at the lowest priority for at most two minutes
BURN = "import os, time\nos.nice(19)\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"


def _cpu_ticks(pid: int) -> int:
    """Clock ticks of CPU ``pid`` has used."""
    return sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])


def test_a_run_on_a_loaded_machine_flags_its_noisy_cells_instead_of_printing_them(tmp, tmp_path):
    """Other work on every CPU while a run measures: every cell records the share of the
    machine that work used and is flagged as run on a busy machine, and an added latency at
    or below zero appears in the flags, never as a result in a table or the report."""
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(len(os.sched_getaffinity(0)))]
    try:
        while not all(_cpu_ticks(b.pid) for b in burners):  # each burning before the run starts
            time.sleep(0.05)
        out = tmp_path / "loaded.json"
        # cells of some 2000 pings: long enough windows for the CPU clock's ticks
        r = run_bench("--quick", "--experiment", "ping", "--topology", "udp", "--runtime", "native", "--size", "1500",
                      "--count", "2000", "--json", str(out), "--quiet", tmp=tmp)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    m, rows = doc["meta"], doc["results"]
    assert m["quick"] is True and len(m["load"]["start"]) == 3 and len(m["load"]["end"]) == 3
    assert r.stdout.startswith("QUICK RUN")
    cells = {(x["topology"], x["config"]) for x in rows if x["metric"] == "rtt_us"}
    shares = {(x["topology"], x["config"]): x["value"] for x in rows if x["metric"] == "others_cpu"}
    assert set(shares) == cells and all(v > 0.25 for v in shares.values()), shares
    busy = {k for k, v in m["flags"].items() if v.startswith("busy machine")}
    assert busy == {f"ping {t} {c} native 1500 others_cpu" for t, c in cells}
    assert "busy machine during" in r.stdout
    for x in rows:
        if x["metric"] == "added_us" and x["stat"] == "median" and x["value"] <= 0:
            key = f"ping {x['topology']} {x['config']} native 1500 added_us"
            assert "at or below zero" in m["flags"][key]
            assert f"{x['value']:.1f}" not in r.stdout.split("flagged cells")[0]
    report = run_bench("report", str(out), tmp=tmp)
    assert report.returncode == 0 and "> **QUICK RUN**" in report.stdout and "busy machine during" in report.stdout


ISO_RUNTIMES = ("native",)


def test_isolation_is_a_dimension_of_the_cells(tmp, tmp_path):
    """``--isolation in_process,process``: each runtime's cells twice, side by side, the
    middle running it in worker processes for ``RUNTIME/process`` (its workers counted), on
    inproc and udp, in the table, the JSON, the figures and the report (dispatch and ping:
    flood takes the same path through the plan, and the suite's time is dear). One runtime:
    the dimension is the plan's, the same for every runtime, and each runtime's code in
    workers has its own tests (conformance with ``--isolation process``, the supervisor's)."""
    out = tmp_path / "iso.json"
    plots = tmp_path / "plots"
    r = run_bench("--quick", "--experiment", "dispatch,ping", "--topology", "inproc,udp", "--size", "1500",
                  "--runtime", ",".join(ISO_RUNTIMES), "--isolation", "in_process,process", "--json", str(out),
                  "--plot", str(plots), "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    validate_document(doc)
    rows = doc["results"]
    assert doc["meta"]["options"]["plan"]["isolations"] == ["in_process", "process"]

    def cells(exp, topo, metric):
        return {(x["config"], x["runtime"]) for x in rows if (x["experiment"], x["topology"], x["metric"]) == (exp, topo, metric)}

    workers = {(x["experiment"], x["topology"], x["config"], x["runtime"]): x["value"]
               for x in rows if x["metric"] == "middle_workers" and x["stat"] == "median"}
    for rt in ISO_RUNTIMES:
        for label in (rt, f"{rt}/process"):
            assert ("active", label) in cells("dispatch", "inproc", "dispatch_us")
            for topo, configs in (("inproc", ("none", "active", "activecopy")), ("udp", ("none", "cforw", "active"))):
                for config in configs:
                    assert (config, label) in cells("ping", topo, "rtt_us")
                assert ("active", label) in cells("ping", topo, "added_us")
        # the middle ran the process cells' code in workers: one per code object it ran
        assert workers[("dispatch", "inproc", "active", f"{rt}/process")] >= 1
        for topo in ("inproc", "udp"):
            assert workers[("ping", topo, "active", f"{rt}/process")] >= 1, workers
    assert not any(k[3] in ISO_RUNTIMES for k in workers), "in-process cells have no workers"
    assert {x["isolation"] for x in rows if x["runtime"].startswith(tuple(f"{rt}/process" for rt in ISO_RUNTIMES))} == {"process"}
    assert {x["isolation"] for x in rows if x["runtime"] in ISO_RUNTIMES} == {"in_process"}
    # the in-process middle took its C fast path (the process middle's share counts what C wrote into its workers' rings)
    shares = {(x["experiment"], x["runtime"]): x["value"]
              for x in rows if x["metric"] == "fast_share" and x["stat"] == "median" and x["config"] == "active"}
    assert all(shares[(e, rt)] > 0.9 for e in ("ping",) for rt in ISO_RUNTIMES), shares
    assert "native/process" in r.stdout
    assert not [x for x in rows if x["metric"] == "worker_woke_share"]  # workers that sleep are woken by design
    # the ping table sets each process row's added latency against its in-process row's
    (added,) = [x["value"] for x in rows if (x["experiment"], x["topology"], x["config"], x["runtime"], x["metric"],
                                            x["stat"]) == ("ping", "udp", "active", "native/process", "added_us", "median")]
    (own,) = [x["value"] for x in rows if (x["experiment"], x["topology"], x["config"], x["runtime"], x["metric"],
                                          x["stat"]) == ("ping", "udp", "active", "native", "added_us", "median")]
    ping_table = r.stdout.split("ping (round trip")[1].split("\n\n")[0]
    line = next(ln for ln in ping_table.splitlines() if ln.split()[:3] == ["udp", "active", "native/process"])
    assert "vs in-process" in ping_table and (f"{added / own:.2f}x" in line.split() or "noise" in line.split()), line
    names = {p.name for p in plots.iterdir()}
    assert {"dispatch-inproc.png", "rtt-udp.png", "rtt-inproc.png"} <= names
    text = render_report(doc)
    assert "| native/process | " in text
    cost = text.split("## Cost of process isolation", 1)[1].split("\n## ", 1)[0]
    assert "ping at 1500 bytes (udp)" in cost
    (row,) = [ln for ln in cost.splitlines() if ln.startswith("| native |")]
    # one trial: no difference can be told, or (a cell the run flagged, e.g. an added latency at
    # or below zero on a loaded machine) the ratio is noise and nothing is claimed
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[6] == "unknown (1 trial)" or cols[5] == "noise", row
    assert list(tmp.iterdir()) == []


def test_process_cells_with_workers_polling_on_a_cpu_apart(tmp, tmp_path):
    """``--worker-poll-us``: the process cells' middle gives its workers a CPU the placement
    leaves it (limits.worker_cpus) and lets them poll (worker_poll_us); the run says so in its
    header and its JSON, and the ping goes through."""
    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("[allowed-skip] one CPU: no CPU apart from the middle's")
    out = tmp_path / "poll.json"
    r = run_bench("--quick", "--experiment", "ping", "--topology", "udp", "--config", "none,active", "--size", "1500",
                  "--runtime", "native", "--isolation", "process", "--worker-poll-us", "2000", "--json", str(out),
                  "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    validate_document(doc)
    plan = doc["meta"]["options"]["plan"]
    cpu = sorted(os.sched_getaffinity(0))[1]  # onecpu: the middle on the first, its workers on the second
    assert plan["worker_poll_us"] == 2000 and plan["worker_cpu"] == cpu
    assert f"the middle workers poll 2000 µs on CPU {cpu}" in r.stdout
    added = [x for x in doc["results"] if x["metric"] == "added_us" and x["runtime"] == "native/process"]
    assert added and added[0]["value"] > 0, added
    # how many of the active middle's batches found its polling worker asleep, flagged when most did
    (woke,) = [x["value"] for x in doc["results"] if (x["metric"], x["stat"], x["config"]) == ("worker_woke_share", "median", "active")]
    assert 0.0 <= woke <= 1.0
    slept = "ping udp active native/process 1500 worker_woke_share"
    assert (slept in doc["meta"]["flags"]) == (woke > 0.5), (woke, doc["meta"]["flags"])
    assert list(tmp.iterdir()) == []


def test_in_process_cells_beside_a_busy_loop_on_the_polling_workers_cpu(tmp, tmp_path):
    """``--busy-worker-cpu``: the in-process cells run while a loop keeps the polling workers'
    CPU busy (the control); the run says so, in its header and its JSON."""
    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("[allowed-skip] one CPU: no CPU apart from the middle's")
    out = tmp_path / "busy.json"
    r = run_bench("--quick", "--experiment", "ping", "--topology", "udp", "--config", "none,active", "--size", "1500",
                  "--runtime", "native", "--isolation", "in_process,process", "--worker-poll-us", "2000",
                  "--busy-worker-cpu", "--json", str(out), "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    validate_document(doc)
    cpu = sorted(os.sched_getaffinity(0))[1]
    assert doc["meta"]["options"]["plan"]["busy_worker_cpu"] is True
    assert f"the in-process ping and flood cells ran beside a busy loop on CPU {cpu} (" in r.stdout
    assert doc["meta"]["busy_loop_cpu_s"] > 0  # it ran (and only beside the in-process cells)
    added = {x["runtime"] for x in doc["results"] if x["metric"] == "added_us"}
    assert {"native", "native/process"} <= added
    assert list(tmp.iterdir()) == []
