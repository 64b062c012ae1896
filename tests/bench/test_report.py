"""``pan bench report`` (``pan_runtime.bench.report``): a reader can act on it. Each median
comes with its trials' range, the report says which differences are significant at the
run's noise level, names the flagged cells instead of quoting their numbers, and marks a
quick run."""

from __future__ import annotations

import copy

from bench_helpers import loaded_run, rows_of

from pan_runtime.bench.noise import flag_cells
from pan_runtime.bench.report import headline, render_report
from pan_runtime.bench.results import document, meta
from pan_runtime.bench.runner import Outcome, derive


def _doc(trials: int = 3, quick: bool = False) -> dict:
    out = Outcome(results=[r for r in loaded_run() if r.metric in ("rtt_us", "capsules_per_s", "others_cpu")])
    out.results += rows_of({
        ("ping", "netns", "cforw", "native", 1500, "rtt_us"): (270.0, 268.0, 272.0),
        ("ping", "netns", "none", "wasm", 1500, "rtt_us"): (200.0, 190.0, 210.0),
        ("ping", "netns", "cforw", "wasm", 1500, "rtt_us"): (260.0, 250.0, 270.0),
        ("ping", "netns", "active", "wasm", 1500, "rtt_us"): (266.0, 256.0, 280.0),
    })
    derive(out)
    flags = flag_cells(out.results, trials)
    m = meta({"plan": {"trials": trials, "quick": quick}}, quick=quick, flags=flags,
             load={"start": [3.0, 2.5, 2.0], "end": [4.1, 3.0, 2.2]})
    return document(m, out.results)


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]


def test_a_loaded_runs_report_flags_its_noisy_cells_instead_of_quoting_negative_latencies():
    text = render_report(_doc())
    added = _table_rows(text, "## Latency added by the middle node (netns)")
    jvm = next(r for r in added if r.startswith("| active jvm |"))
    assert jvm.split("|")[2].strip() == "noise" and "-444" not in jvm
    for row in added[1:]:  # added, cforw and passive latencies: no negative value quoted as a result
        cells = [c.strip() for c in row.split("|")]
        assert not any(cells[i].startswith("-") for i in (2, 4, 7)), row
    assert "-444.0 µs: at or below zero" in text.split("## Flagged cells", 1)[1]
    assert "Other work used 60%–60% of the machine's CPUs" in text and "4.1/3.0/2.2 at the end" in text


def test_the_report_says_which_differences_are_significant_at_the_runs_noise_level():
    doc = _doc()
    h = headline(doc["results"], 3, doc["meta"]["flags"])
    native = h["added"]["sizes"][1500]["active native"]
    assert native["spread"] == (47.0, 53.0) and native["vs_cforw_significant"] == "yes"
    text = render_report(doc)
    row = next(r for r in _table_rows(text, "## Latency added by the middle node") if r.startswith("| active native |"))
    assert [c.strip() for c in row.split("|")[2:7]] == ["50.0", "47.0–53.0", "35.0", "1.43", "yes"]
    can_tell = text.split("## What this run can tell", 1)[1].split("\n## ", 1)[0]
    significant, within = can_tell.split("These are within noise", 1)
    assert "added latency at 1500 B on netns: active native vs cforw (1.43×)" in significant
    assert "flood at 1500 B on netns: active native vs cforw (0.71)" in significant
    assert "added latency at 1500 B on netns: active wasm vs cforw (1.10×)" in within
    assert "the kernel node added a fixed ~20 µs" in text  # beside the paper's figures


def test_a_quick_run_is_marked_and_claims_nothing():
    text = render_report(_doc(trials=1, quick=True))
    assert text.splitlines()[2].startswith("> **QUICK RUN**")
    assert "One trial per cell: the run has no spread" in text
    assert "| yes |" not in text


def test_a_file_from_before_flags_and_spreads_were_recorded_still_renders_with_its_flags():
    doc = _doc()
    old = copy.deepcopy(doc)
    del old["meta"]["flags"], old["meta"]["quick"], old["meta"]["load"]
    old["results"] = [r for r in old["results"] if r["stat"] == "median" and r["metric"] != "others_cpu"]
    text = render_report(old)
    assert "-444.0 µs: at or below zero" in text and "QUICK RUN" not in text


def test_a_run_with_process_isolation_reports_the_cost_of_containment_per_runtime():
    """``--isolation in_process,process``: the report sets each runtime's worker cells against
    its in-process cells (added latency and flood), with the trials' ranges and whether the
    difference is significant, and names it among what the run can tell."""
    out = Outcome(results=rows_of({
        ("ping", "udp", "none", "native", 1500, "rtt_us"): (200.0, 199.0, 201.0),
        ("ping", "udp", "active", "native", 1500, "rtt_us"): (228.0, 226.0, 230.0),
        ("ping", "udp", "none", "native/process", 1500, "rtt_us"): (200.0, 199.0, 201.0),
        ("ping", "udp", "active", "native/process", 1500, "rtt_us"): (280.0, 276.0, 284.0),
        ("ping", "udp", "none", "wasm", 1500, "rtt_us"): (200.0, 199.0, 201.0),
        ("ping", "udp", "active", "wasm", 1500, "rtt_us"): (260.0, 250.0, 270.0),
        ("ping", "udp", "none", "wasm/process", 1500, "rtt_us"): (200.0, 199.0, 201.0),
        ("ping", "udp", "active", "wasm/process", 1500, "rtt_us"): (266.0, 256.0, 280.0),
        ("flood", "udp", "active", "native", 1500, "capsules_per_s"): (26000.0, 25800.0, 26400.0),
        ("flood", "udp", "active", "native/process", 1500, "capsules_per_s"): (24700.0, 24500.0, 25000.0),
    }))
    derive(out)
    flags = flag_cells(out.results, 3)
    doc = document(meta({"plan": {"trials": 3}}, flags=flags), out.results)
    iso = headline(doc["results"], 3, flags)["isolation"]
    assert iso["ping"]["topology"] == "udp" and iso["ping"]["size"] == 1500
    native = iso["ping"]["cells"]["native"]
    assert (native["in_process"], native["process"], native["ratio"]) == (14.0, 40.0, 40.0 / 14.0)
    assert native["significant"] == "yes" and iso["ping"]["cells"]["wasm"]["significant"] == "no (within noise)"
    assert iso["flood"]["cells"]["native"]["ratio"] == 24700.0 / 26000.0 and "wasm" not in iso["flood"]["cells"]
    text = render_report(doc)
    rows = _table_rows(text, "## Cost of process isolation")
    ping_native = next(r for r in rows if r.startswith("| native |") and "14.0" in r)
    assert [c.strip() for c in ping_native.split("|")[2:8]] == ["14.0", "12.5–15.5", "40.0", "37.5–42.5", "2.86", "yes"]
    flood_native = next(r for r in rows if r.startswith("| native |") and "26,000" in r)
    assert [c.strip() for c in flood_native.split("|")[6:8]] == ["0.95", "yes"]
    can_tell = text.split("## What this run can tell", 1)[1].split("\n## ", 1)[0]
    significant, within = can_tell.split("These are within noise", 1)
    assert "ping at 1500 B on udp: native in a worker vs in-process (2.86×)" in significant
    assert "ping at 1500 B on udp: wasm in a worker vs in-process (1.10×)" in within
    # a run without process cells has no such section
    assert "isolation" not in headline(_doc()["results"], 3) and "Cost of process isolation" not in render_report(_doc())
