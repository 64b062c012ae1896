"""The figures (``pan_runtime.bench.plots``): small multiples, one panel per runtime (per
configuration for dispatch), labelled log ticks, and a quick run saying so in its title."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_helpers import loaded_run

from pan_runtime.bench.plots import draw_all, figure_panels, log_ticks
from pan_runtime.bench.results import Result


@pytest.mark.parametrize(("lo", "hi"), [(5.5, 9.5), (30.0, 700.0), (1.2, 12.0), (9100.0, 17400.0), (6.1, 6.9), (0.3, 4000.0)])
def test_a_log_axis_gets_at_least_two_labelled_round_ticks_inside_the_data(lo, hi):
    ticks = log_ticks(lo, hi)
    assert len(ticks) >= 2 and ticks == sorted(ticks)
    assert all(lo * 0.97 <= t <= hi * 1.03 for t in ticks)
    if hi / lo > 1.5:
        assert len(ticks) >= 3
    assert all(float(f"{t:.2g}") == t for t in ticks)  # round values a reader can read off


def test_figures_have_a_panel_per_runtime_and_dispatch_a_panel_per_configuration():
    rows = [r.__dict__ for r in loaded_run()]
    rows += [Result("dispatch", "inproc", c, rt, 1500, "dispatch_us", "median", 6.0).__dict__
             for c in ("active", "activecopy") for rt in ("native", "wasm", "null")]
    assert figure_panels(rows, "rtt", "netns") == ["native", "jvm"]
    assert figure_panels(rows, "added", "netns") == ["native", "jvm"]
    assert figure_panels(rows, "dispatch", "inproc") == ["active", "activecopy"]
    assert figure_panels(rows, "flood-cps", "inproc") == []


def test_every_figure_is_written_and_a_quick_run_says_so(tmp_path: Path):
    rows = [r.__dict__ for r in loaded_run()]
    written = draw_all(rows, tmp_path / "full", trials=3)
    assert {p.name for p in written} == {"rtt-netns.png", "added-netns.png", "overhead-netns.png", "overhead-pct-netns.png",
                                         "flood-cps-netns.png"}
    quick = draw_all(rows, tmp_path / "quick", quick=True, trials=1)
    for path in quick:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"QUICK RUN" in data  # in the title, and in the file's Title text chunk
    assert not any(b"QUICK RUN" in p.read_bytes() for p in written)


def test_capacity_gets_one_figure_per_topology_with_a_line_per_middle(tmp_path: Path):
    from bench_helpers import capacity_run

    from pan_runtime.bench.plots import capacity_lines

    rows = [r.__dict__ for r in capacity_run()]
    lines = capacity_lines(rows, "netns", "capacity_kpps")
    assert set(lines) == {"passive", "cbatch", "cforw", "active native", "active wasm"}
    assert [p[0] for p in sorted(lines["cbatch"])] == [128, 1500]
    assert sorted(lines["cbatch"])[1] == pytest.approx((1500, 84.0, 75.6, 88.2))
    assert set(capacity_lines(rows, "netns", "syscalls_per_capsule")) == {"cbatch", "cforw", "active native", "active wasm"}
    written = draw_all(rows, tmp_path, trials=3)
    assert [p.name for p in written] == ["capacity-netns.png"]
    assert written[0].stat().st_size > 0
