"""Which cells of a run a reader can act on (``pan_runtime.bench.noise``): the cells a median
alone would mislead about are flagged with the reason, and two cells differ significantly
only where their trials' ranges are apart."""

from __future__ import annotations

from bench_helpers import loaded_run, rows_of

from pan_runtime.bench.noise import cell_key, flag_cells, flag_lines, significance, spread_text
from pan_runtime.bench.results import Result, index
from pan_runtime.bench.runner import Outcome, derive


def test_a_loaded_runs_negative_latencies_and_meaningless_overheads_are_flagged():
    flags = flag_cells(loaded_run(), trials=3)
    # jvm: the direct link's bad trial makes active look 444 µs faster than no middle at all
    assert flags[cell_key("ping", "netns", "active", "jvm", 1500, "added_us")].startswith("-444.0 µs: at or below zero")
    assert flags[cell_key("ping", "netns", "passive", "jvm", 1500, "added_us")].startswith("-5.0 µs: at or below zero")
    assert flags[cell_key("ping", "netns", "active", "jvm", 1500, "overhead_pct")].startswith(
        "no overhead: the passive baseline added -5.0 µs")
    # native: clean trials, a real added latency and overhead: nothing to flag there
    for metric in ("added_us", "overhead_pct"):
        assert cell_key("ping", "netns", "active", "native", 1500, metric) not in flags
    assert flags[cell_key("ping", "netns", "active", "native", 1500, "others_cpu")] == (
        "busy machine: other work used 60% of the CPUs while this cell ran")
    # flood: active as fast as the direct link measures the sender; cforw faster than it is noise
    assert flags[cell_key("flood", "netns", "active", "native", 1500, "capsules_per_s")].startswith("sender-limited")
    assert "faster than the direct link" in flags[cell_key("flood", "netns", "cforw", "native", 1500, "capsules_per_s")]


def test_a_range_that_reaches_zero_is_within_noise_and_overlapping_ranges_are_not_significant():
    rows = rows_of({
        ("ping", "udp", "none", "wasm", 156, "rtt_us"): (100.0, 90.0, 130.0),
        ("ping", "udp", "cforw", "wasm", 156, "rtt_us"): (150.0, 140.0, 160.0),
        ("ping", "udp", "active", "wasm", 156, "rtt_us"): (160.0, 120.0, 170.0),
    })
    out = Outcome(results=rows)
    derive(out)
    flags = flag_cells(out.results, trials=3)
    assert "reaches zero: within noise" in flags[cell_key("ping", "udp", "active", "wasm", 156, "added_us")]
    assert flags[cell_key("ping", "udp", "active", "wasm", 156, "overhead_pct")] == (
        "within noise: added -5.0…40.0 µs against cforw 5.0…35.0 µs (the trials' ranges overlap)")
    assert significance((1.0, 2.0), (3.0, 4.0), 3) == "yes"
    assert significance((1.0, 3.5), (3.0, 4.0), 3) == "no (within noise)"
    assert significance((1.0, 1.0), (3.0, 3.0), 1) == "unknown (1 trial)"


def test_one_trial_shows_no_spread_and_flags_only_what_a_single_value_shows():
    out = Outcome(results=[Result("ping", "udp", c, "native", 156, "rtt_us", "median", v)
                           for c, v in (("none", 100.0), ("cforw", 90.0), ("active", 130.0))])
    derive(out)
    flags = flag_cells(out.results, trials=1)
    assert set(flags) == {cell_key("ping", "udp", "cforw", "native", 156, "added_us"),
                          cell_key("ping", "udp", "active", "native", 156, "overhead_pct")}
    assert spread_text(index(out.results), ("ping", "udp", "active", "native", 156), "rtt_us", 1) == "1 trial"


def test_flag_lines_name_each_noisy_cell_and_sum_up_the_rest():
    lines = flag_lines(flag_cells(loaded_run(), trials=3))
    assert any(line.startswith("ping netns active jvm 1500 added_us: -444.0 µs") for line in lines)
    assert lines[-2].startswith("sender-limited, as fast as the direct link") and "flood netns active native 1500" in lines[-2]
    assert lines[-1].startswith("busy machine during 1 cell(s): other work used 60–60% of the CPUs")


def test_process_cells_whose_polling_workers_were_asleep_are_flagged_with_what_to_change():
    """``--worker-poll-us`` shorter than the gaps between a cell's capsules: its workers had gone
    to sleep and were woken from their own CPU, which the run says instead of letting the
    figure pass for a polling worker's; half or fewer asleep is not flagged."""
    rows = [Result("ping", "udp", "active", "native/process", 1500, "worker_woke_share", "median", 0.97),
            Result("flood", "udp", "active", "native/process", 1500, "worker_woke_share", "median", 0.5)]
    flags = flag_cells(rows, trials=3)
    why = flags[cell_key("ping", "udp", "active", "native/process", 1500, "worker_woke_share")]
    assert why.startswith("workers slept: 97% of the batches") and "raise it" in why, why
    assert cell_key("flood", "udp", "active", "native/process", 1500, "worker_woke_share") not in flags
