"""``pan bench --quick`` end to end: every runtime, inproc and udp; JSON, plots and report."""

from __future__ import annotations

import json

from bench_helpers import run_bench

from pan_runtime.bench.report import headline, render_report
from pan_runtime.bench.results import validate_document

RUNTIMES = ("native", "wasm", "jvm", "restricted_py")


def test_quick_run_on_inproc_and_udp_with_every_runtime(tmp, tmp_path):
    out = tmp_path / "quick.json"
    plots = tmp_path / "plots"
    r = run_bench("--quick", "--experiment", "dispatch,ping,flood", "--topology", "inproc,udp",
                  "--runtime", ",".join(RUNTIMES), "--json", str(out), "--plot", str(plots), "--quiet", tmp=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    validate_document(doc)
    rows = doc["results"]
    m = doc["meta"]
    assert m["placement"]["mode"] == "onecpu"
    assert set(m["versions"]["runtimes"]) >= set(RUNTIMES)
    assert m["options"]["plan"]["sizes"] == [156, 1500]

    def cells(exp, topo, metric):
        return {(x["config"], x["runtime"], x["size"]) for x in rows if (x["experiment"], x["topology"], x["metric"]) == (exp, topo, metric)}

    for rt in RUNTIMES:
        for size in (156, 1500):
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
    assert {(e, "active", rt, size) for e in ("ping", "flood") for rt in RUNTIMES for size in (156, 1500)} <= set(shares)
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
