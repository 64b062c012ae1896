"""Statistics (``pan_runtime.node.stats``): the counters, their sums per runtime, and the
node's report as data and as text."""

import pyfunc_runtime as pf

from pan_runtime.net.application import Application
from pan_runtime.node import pni
from pan_runtime.node.node import Node
from pan_runtime.node.stats import CodeStats, format_table
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import default_plugins, load_plugins

PLUGINS = load_plugins(extra=[nullrt, pf])

pf.FUNCS.update({"done": lambda host, env: pni.VERDICT_DONE, "drop": lambda host, env: pni.VERDICT_DROP})
DONE, DROP = pf.code("done"), pf.code("drop")


def run_some(n: Node) -> None:
    n.install(DONE)
    n.install(DROP)
    app = Application(n)
    for _ in range(3):
        app.send(DONE, b"x")
    app.send(DROP, b"x")
    app.send(b"\x09" * 32, b"no such code")
    n.process()


def test_statistics_report_node_code_and_runtime_counters():
    with Node(1, plugins=PLUGINS) as n:
        run_some(n)
        s = n.statistics()
        assert s["node"] == str(n.address) and s["injected"] == 5 and s["drops"] == {"no_code": 1}
        assert s["code"][DONE.hex_name]["done"] == 3 and s["code"][DROP.hex_name]["drops"] == {"code_drop": 1}
        assert s["runtimes"]["pyfunc"]["capsules_in"] == 4 and s["runtimes"]["pyfunc"]["done"] == 3
        assert s["cache"]["entries"] == 2 and s["queue"] == 0 and s["quarantined"] == []


def test_runtime_totals_sum_the_code_objects_of_each_runtime():
    with Node(1, plugins=PLUGINS) as n:
        run_some(n)
        totals = n.runtime_totals()
        assert set(totals) == {"pyfunc"}
        assert totals["pyfunc"].capsules_in == 4 and totals["pyfunc"].dropped == 1
        assert n.code_stats()[DONE.hex_name]["label"] == DONE.short_name


def test_a_runtimes_own_counters_join_its_totals_and_a_failing_one_is_left_out(monkeypatch):
    with Node(1, plugins=PLUGINS) as n:
        run_some(n)
        monkeypatch.setattr(n.runtime("pyfunc"), "statistics", lambda: {"gc_pauses": 3})
        assert n.statistics()["runtimes"]["pyfunc"]["gc_pauses"] == 3

        def broken():
            raise RuntimeError("counter gone")

        monkeypatch.setattr(n.runtime("pyfunc"), "statistics", broken)
        assert "gc_pauses" not in n.statistics()["runtimes"]["pyfunc"]


def test_jvm_counters_join_the_node_statistics():
    from pan_runtime.cli.protocols import reference_code

    plugins = default_plugins()
    with Node(1, plugins=plugins) as n:
        n.install(reference_code("jvm", "forward", plugins))
        stats = n.statistics()["runtimes"]["jvm"]
        assert isinstance(stats["gc_pauses"], int) and stats["capsules_in"] == 0


def test_counters_kept_elsewhere_are_folded_in_before_reading():
    with Node(1, plugins=PLUGINS) as n:
        n.counter_sources.append(lambda: setattr(n.stats, "received", n.stats.received + 10))
        assert n.statistics()["received"] == 10


def test_format_statistics_prints_totals_drops_and_one_row_per_code_object():
    with Node(1, plugins=PLUGINS, name="n1") as n:
        run_some(n)
        text = n.format_statistics()
        head, drops, header, _, *rows = text.splitlines()
        assert head == "node n1: received 0, injected 5, sent 0, delivered 0"
        assert drops == "node drops: no_code=1"
        assert header.split()[:3] == ["code", "runtime", "in"] and len(rows) == 2
        assert any(r.split()[:3] == [DONE.short_name, "pyfunc", "3"] for r in rows)


def test_code_stats_merge_and_mean_time():
    a, b = CodeStats(capsules_in=2, time_ns=4000), CodeStats(capsules_in=2, time_ns=0, max_time_ns=9)
    a.drops["x"] += 1
    a.merge(b)
    d = a.as_dict()
    assert d["capsules_in"] == 4 and d["time_us_mean"] == 1.0 and d["time_us_max"] == 0.009 and d["dropped"] == 1


def test_format_table_aligns_columns():
    assert format_table([["a", "bbb"]], ["h1", "h"]) == "h1  h  \n--  ---\na   bbb"
