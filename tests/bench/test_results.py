"""The JSON document: schema, statistics, derived metrics."""

from __future__ import annotations

import copy
import json

import pytest

from pan_runtime.bench.results import (
    SCHEMA,
    Result,
    document,
    meta,
    percentile,
    read_json,
    summarize,
    validate_document,
)
from pan_runtime.bench.runner import Outcome, derive
from pan_runtime.errors import PanError


def _doc() -> dict:
    rows = [Result("ping", "netns", "none", "native", 1500, "rtt_us", "median", 100.0)]
    return document(meta({"quick": True}), rows)


def test_a_document_validates_and_survives_a_round_trip(tmp_path):
    doc = _doc()
    validate_document(doc)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    assert read_json(p) == doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("meta"), "exactly the keys"),
        (lambda d: d["meta"].pop("date"), "meta.date"),
        (lambda d: d["results"][0].update(metric="speed"), "metric 'speed'"),
        (lambda d: d["results"][0].update(stat="p50"), "stat 'p50'"),
        (lambda d: d["results"][0].update(extra=1), "must have the keys"),
        (lambda d: d["results"][0].update(isolation="sandbox"), "isolation 'sandbox' is not one of in_process, process"),
        (lambda d: d["results"][0].update(value=float("nan")), "finite number"),
        (lambda d: d["results"][0].update(size="1500"), "positive integer"),
        (lambda d: d["results"][0].update(runtime=""), "non-empty string"),
    ],
)
def test_validation_names_what_is_wrong(mutate, message):
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(PanError, match=message):
        validate_document(doc)


def test_the_schema_lists_every_metric_and_stat():
    item = SCHEMA["properties"]["results"]["items"]["properties"]
    assert item["metric"]["enum"] == [
        "dispatch_us", "rtt_us", "added_us", "overhead_pct", "capsules_per_s", "mbit_per_s", "gc_pauses", "fast_share",
        "others_cpu", "capacity_kpps", "cpu_us_per_capsule", "syscalls_per_capsule", "loss_pct", "spread_ms", "code_bytes",
        "chunks", "resent", "hops", "per_hop_us", "converge_start_ms", "converge_down_ms", "converge_up_ms", "dv_period_ms",
        "dv_ticks", "middle_workers", "worker_woke_share",
    ]
    assert item["stat"]["enum"] == ["median", "p99", "mean", "min", "max", "trial_min", "trial_max"]
    assert item["isolation"]["enum"] == ["in_process", "process"]
    assert "isolation" not in SCHEMA["properties"]["results"]["items"]["required"]  # files from before it validate


def test_read_json_explains_a_missing_or_broken_file(tmp_path):
    with pytest.raises(PanError, match="no such file"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(PanError, match="not a bench JSON file"):
        read_json(bad)


def test_summary_statistics():
    s = summarize([float(x) for x in range(1, 101)])
    assert s == {"median": 50.5, "p99": 99.0, "mean": 50.5, "min": 1.0, "max": 100.0}
    assert percentile([5.0], 0.99) == 5.0


def test_added_latency_and_overhead_follow_the_paper():
    out = Outcome()
    rtt = {"none": 100.0, "passive": 140.0, "cforw": 180.0, "active": 200.0}
    for config, v in rtt.items():
        out.results.append(Result("ping", "netns", config, "native", 1500, "rtt_us", "median", v))
    out.results.append(Result("ping", "udp", "none", "native", 1500, "rtt_us", "median", 100.0))
    out.results.append(Result("ping", "udp", "cforw", "native", 1500, "rtt_us", "median", 120.0))
    out.results.append(Result("ping", "udp", "active", "native", 1500, "rtt_us", "median", 150.0))
    derive(out)
    got = {(r.topology, r.config, r.metric): r.value for r in out.results if r.metric in ("added_us", "overhead_pct")}
    assert got[("netns", "passive", "added_us")] == 20.0
    assert got[("netns", "active", "added_us")] == 50.0
    assert got[("netns", "active", "overhead_pct")] == pytest.approx(150.0)  # (50 - 20) / 20, relative to passive
    assert got[("netns", "cforw", "overhead_pct")] == pytest.approx(100.0)
    assert ("netns", "passive", "overhead_pct") not in got
    assert got[("udp", "active", "overhead_pct")] == pytest.approx(150.0)  # no passive on udp: relative to cforw


def test_derived_metrics_carry_the_widest_range_the_trials_allow():
    out = Outcome()
    rtt = {"none": (100.0, 96.0, 104.0), "cforw": (180.0, 170.0, 190.0), "active": (200.0, 150.0, 260.0)}
    for config, (med, lo, hi) in rtt.items():
        for stat, v in (("median", med), ("trial_min", lo), ("trial_max", hi)):
            out.results.append(Result("ping", "udp", config, "wasm", 1500, "rtt_us", stat, v))
    derive(out)
    got = {(r.config, r.metric, r.stat): r.value for r in out.results if r.metric in ("added_us", "overhead_pct")}
    assert got[("active", "added_us", "median")] == 50.0
    assert got[("active", "added_us", "trial_min")] == (150.0 - 104.0) / 2  # lowest active against highest none
    assert got[("active", "added_us", "trial_max")] == (260.0 - 96.0) / 2
    assert got[("cforw", "added_us", "trial_min")] == 33.0 and got[("cforw", "added_us", "trial_max")] == 47.0
    assert got[("active", "overhead_pct", "median")] == pytest.approx(25.0)
    assert got[("active", "overhead_pct", "trial_min")] == pytest.approx((23.0 / 47.0 - 1) * 100)
    assert got[("active", "overhead_pct", "trial_max")] == pytest.approx((82.0 / 33.0 - 1) * 100)


def test_no_overhead_against_a_baseline_whose_range_reaches_zero():
    out = Outcome()
    for config, (med, lo, hi) in {"none": (100.0, 90.0, 110.0), "cforw": (120.0, 100.0, 130.0), "active": (160.0, 150.0, 170.0)}.items():
        for stat, v in (("median", med), ("trial_min", lo), ("trial_max", hi)):
            out.results.append(Result("ping", "udp", config, "native", 156, "rtt_us", stat, v))
    derive(out)
    metrics = {(r.config, r.metric) for r in out.results}
    assert ("cforw", "added_us") in metrics and ("active", "added_us") in metrics
    assert ("active", "overhead_pct") not in metrics  # cforw's added range is -5..20 µs: no percentage of that


def test_configurations_measured_in_the_same_rounds_get_the_range_of_their_paired_differences():
    """Trial t of every configuration ran in the same round, so drift of the machine common to a
    round cancels in their difference: the range is that of the per-round differences."""
    out = Outcome()
    rounds = {"none": [100.0, 300.0, 110.0], "cforw": [140.0, 340.0, 150.0], "active": [160.0, 364.0, 170.0]}
    for config, per in rounds.items():
        s = sorted(per)
        for stat, v in (("median", s[1]), ("trial_min", s[0]), ("trial_max", s[2])):
            out.results.append(Result("ping", "udp", config, "native", 1500, "rtt_us", stat, v))
        out.rounds[("udp", config, "native", 1500)] = per
    derive(out)
    got = {(r.config, r.metric, r.stat): r.value for r in out.results if r.metric in ("added_us", "overhead_pct")}
    assert (got[("active", "added_us", "trial_min")], got[("active", "added_us", "trial_max")]) == (30.0, 32.0)
    assert (got[("cforw", "added_us", "trial_min")], got[("cforw", "added_us", "trial_max")]) == (20.0, 20.0)
    assert got[("active", "overhead_pct", "trial_min")] == pytest.approx(50.0)
    assert got[("active", "overhead_pct", "trial_max")] == pytest.approx(60.0)
    # unpaired, the same cells' ranges would allow -70..132 µs: a stall of one round swamped them
    assert got[("active", "added_us", "median")] == 30.0
