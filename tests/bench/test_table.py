"""The terminal tables of a run (``pan_runtime.bench.table``): each median with its trials'
spread, and a flagged number printed as noise, never as a result."""

from __future__ import annotations

from bench_helpers import loaded_run

from pan_runtime.bench.noise import flag_cells
from pan_runtime.bench.table import format_results


def _row(text: str, *words: str) -> list[str]:
    """The one table row holding every word in ``words``, split into words."""
    (line,) = [ln for ln in text.splitlines() if all(w in ln.split() for w in words)]
    return line.split()


def test_spread_sits_next_to_every_median_and_negative_latencies_are_not_printed():
    rows = loaded_run()
    text = format_results(rows, 3, flag_cells(rows, 3))
    header = _row(text, "topology", "RTT")
    assert header[4:7] == ["RTT", "µs", "spread"]
    jvm = _row(text, "netns", "active", "jvm")
    assert "600.0–650.0" in jvm and "noise" in jvm
    assert "-444.0" not in text and "-5.0" not in text.replace("-5.0–", "")  # the numbers are in the flags, not the table
    native = _row(text, "netns", "active", "native", "300.0")
    assert native[7] == "50.0" and native[8] == "47.0–53.0" and native[9] == "150%"  # (50 - 20) / 20
    assert "busy" in native
    assert "sender-limited" in _row(text, "netns", "active", "native", "9,900")


def test_one_trial_says_so_instead_of_a_spread():
    rows = loaded_run()
    text = format_results(rows, 1, {})
    assert "1 trial" in " ".join(_row(text, "netns", "active", "native", "300.0"))


def test_capacity_has_its_own_table_baselines_first_and_flags_in_words():
    from bench_helpers import capacity_run

    from pan_runtime.bench.noise import cell_key

    flags = {cell_key("capacity", "netns", "passive", "-", 1500, "capacity_kpps"): "generator-limited: all that was offered"}
    text = format_results(capacity_run(), 3, flags)
    header = _row(text, "topology", "middle", "kpps")
    assert header[:5] == ["topology", "middle", "size", "kpps", "spread"]
    passive = _row(text, "netns", "passive", "1500")
    assert passive[3] == "130.0" and passive[4] == "117.0–136.5" and passive[5] == "1560" and "generator-limited" in passive
    assert passive[6:8] == ["-", "-"]  # the kernel forwards in no process of its own
    native = _row(text, "netns", "active", "native", "1500")
    assert native[4:10] == ["69.0", "62.1–72.5", "828", "7.50", "2.000", "0.020%"]
    lines = [ln.split()[1:3] for ln in text.splitlines() if ln.startswith("netns") and " 1500 " in ln]
    assert [w[0] if w[0] != "active" else " ".join(w) for w in lines] == ["passive", "cbatch", "cforw", "active native",
                                                                          "active wasm"]


def test_a_runtime_in_process_isolation_is_a_row_of_its_own_set_against_its_in_process_row():
    from pan_runtime.bench.results import Result

    rows = [Result("dispatch", "inproc", "active", rt, 1500, "dispatch_us", "median", v)
            for rt, v in (("native", 10.0), ("native/process", 40.0), ("wasm", 20.0), ("wasm/process", 30.0))]
    text = format_results(rows, 1)
    assert _row(text, "config", "runtime")[-3:] == ["vs", "in-process", "note"]
    # (the spread of one trial is the two words "1 trial")
    assert _row(text, "native/process")[6:8] == ["4.00x", "4.00x"]  # against native, and against native in-process
    assert _row(text, "wasm/process")[6:8] == ["3.00x", "1.50x"]
    assert _row(text, "wasm")[6:8] == ["2.00x", "-"]
    assert {r.isolation for r in rows} == {"in_process", "process"} and rows[1].isolation == "process"
    assert "vs in-process" not in format_results(rows[:1], 1)
