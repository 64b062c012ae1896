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
