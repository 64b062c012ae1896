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


def test_ping_flood_and_capacity_set_each_process_row_against_its_in_process_row():
    """The cost of containment as the issue's bars read it, printed by the run itself: the
    added latency, the flood's capsules/s and the capacity of ``RUNTIME/process`` over
    ``RUNTIME``'s in the same cell; an added latency the table calls noise makes its ratio noise."""
    from pan_runtime.bench.noise import cell_key
    from pan_runtime.bench.results import Result

    rows = []
    for rt, added, cps, kpps in (("native", 12.0, 26000.0, 400.0), ("native/process", 30.0, 25000.0, 200.0),
                                 ("wasm", 30.0, 17000.0, 380.0), ("wasm/process", 42.0, 16150.0, 95.0)):
        rows += [Result("ping", "udp", "active", rt, 1500, "added_us", "median", added),
                 Result("ping", "udp", "active", rt, 1500, "rtt_us", "median", 200 + 2 * added),
                 Result("flood", "udp", "active", rt, 1500, "capsules_per_s", "median", cps),
                 Result("capacity", "netns", "active", rt, 1500, "capacity_kpps", "median", kpps)]
    rows.append(Result("ping", "udp", "none", "native", 1500, "rtt_us", "median", 200.0))
    text = format_results(rows, 3)
    assert "vs in-process = a RUNTIME/process row's added latency over RUNTIME's" in text
    ping = _row(text, "udp", "active", "native/process", "260.0")
    assert ping[-1] == "2.50x" and _row(text, "udp", "active", "wasm/process", "284.0")[-1] == "1.40x"
    assert _row(text, "udp", "active", "native", "224.0")[-1] == "-"
    assert _row(text, "udp", "active", "wasm/process", "16,150")[-1] == "0.95x"
    assert _row(text, "netns", "active", "native/process", "200.0")[-1] == "0.50x"
    assert _row(text, "netns", "active", "wasm/process", "95.0")[-1] == "0.25x"
    flags = {cell_key("ping", "udp", "active", "wasm", 1500, "added_us"): "added latency at or below zero"}
    flagged = format_results(rows, 3, flags)
    assert _row(flagged, "udp", "active", "wasm/process", "284.0")[-1] == "noise"  # its own 42.0 stays: not flagged
    assert "42.0" in _row(flagged, "udp", "active", "wasm/process", "284.0")
    # a flagged flood figure is printed with its note, and so is its ratio
    limited = {cell_key("flood", "udp", "active", "wasm/process", 1500, "capsules_per_s"): "sender-limited: as fast as none"}
    assert _row(format_results(rows, 3, limited), "udp", "active", "wasm/process", "16,150")[-2:] == ["0.95x", "sender-limited"]
    # a cell whose polling workers were mostly asleep says so in its note
    slept = {cell_key("ping", "udp", "active", "native/process", 1500, "worker_woke_share"): "workers slept: 97% ..."}
    assert _row(format_results(rows, 3, slept), "udp", "active", "native/process", "260.0")[-2:] == ["workers", "slept"]
    # without a process row there is no such column
    plain = [r for r in rows if not r.runtime.endswith("/process")]
    assert "vs in-process" not in format_results(plain, 3)
