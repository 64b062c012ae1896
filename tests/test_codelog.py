"""Lines code objects write with ``pni_log`` (``pan_runtime.node.codelog``): one line each,
rate-limited per code object and across them, what was not written counted and said."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.application import Application
from pan_runtime.net.daemon import prometheus_text
from pan_runtime.node.codelog import CodeLog
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.node.stats import format_statistics, statistics
from pan_runtime.node.trust import CodeOrigin
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins

SOURCES = Path(__file__).parent / "log_sources"
CHATTY = {"native": "chatty.c", "wasm": "chatty.c", "jvm": "Chatty.java", "restricted_py": "chatty.py"}
FORGED = b"chatty line\n2026-01-01 00:00:00 pan.node ERROR forged\x1b[31m"


#: each of a capsule's 100 calls crosses a worker's channel in process isolation: the budget
#: is a hang guard, not a deadline (a loaded machine took a jvm capsule past the default 50 ms)
_HANG_GUARD = Budget(time_ms=60_000)


class _Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


def _code(n: int) -> CodeObject:
    plugins = default_plugins()
    return plugins.builders.find("restricted_py", ".py").build(
        BuildRequest([SOURCES / "chatty.py"], "restricted_py", [], [], f"chatty-{n}"))


def _records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("pan.test.codelog")]


def test_a_code_objects_lines_past_its_burst_are_counted_and_its_next_line_says_so(caplog):
    clock = _Clock()
    log = CodeLog(logging.getLogger("pan.test.codelog"), clock, per_s=10, burst=20, total_per_s=1000)
    code = _code(0)
    with caplog.at_level(logging.INFO, logger="pan.test.codelog"):
        written = [log.write(logging.WARNING, code, b"hello") for _ in range(25)]
        assert written.count(True) == 20 and log.suppressed == 5
        clock.ns += 300_000_000  # 0.3 s: three lines' worth of refill
        assert [log.write(logging.WARNING, code, b"again") for _ in range(4)] == [True, True, True, False]
    lines = [r.getMessage() for r in _records(caplog)]
    assert len(lines) == 23
    assert lines[20].endswith("again (5 more lines of it were not written)") and lines[21].endswith("again")
    assert log.suppressed == 6


def test_many_code_objects_together_are_held_to_the_nodes_bound(caplog):
    log = CodeLog(logging.getLogger("pan.test.codelog"), _Clock(), per_s=10, burst=20, total_per_s=30)
    with caplog.at_level(logging.INFO, logger="pan.test.codelog"):
        written = [log.write(logging.INFO, _code(n), b"one line each") for n in range(50)]
    assert written.count(True) == 30 and log.suppressed == 20 and len(_records(caplog)) == 30


def test_a_message_is_one_line_whatever_the_code_puts_in_it(caplog):
    log = CodeLog(logging.getLogger("pan.test.codelog"), _Clock())
    with caplog.at_level(logging.INFO, logger="pan.test.codelog"):
        assert log.write(logging.ERROR, _code(0), FORGED + b"x" * 5000)
    (record,) = _records(caplog)
    text = record.getMessage()
    assert "\n" not in text and "\x1b" not in text and "\\n2026-01-01" in text and "\\x1b[31m" in text
    assert len(text) < 1100  # cut to MAX_TEXT characters after the code's label


@pytest.mark.parametrize("isolation", ["in_process", "process"])
@pytest.mark.parametrize("runtime", sorted(CHATTY))
def test_code_that_logs_in_a_loop_writes_its_burst_and_the_node_counts_the_rest(runtime, isolation, caplog):
    """Every runtime, in the node's process and in a worker (whose calls the node answers):
    capsules of a code object writing 100 lines each leave the node's log 20 lines of it,
    each one line, the rest counted."""
    src = SOURCES / CHATTY[runtime]
    plugins = default_plugins()
    code = plugins.builders.find(runtime, src.suffix).build(BuildRequest([src], runtime, [], [], "chatty"))
    with caplog.at_level(logging.WARNING, logger="pan.code"), \
            Node(1, plugins=plugins, config=NodeConfig(isolation={runtime: isolation}, budget=_HANG_GUARD)) as node:
        node.host.code_log.clock = _Clock()  # time stands still: no refill, whatever the load
        entry = node.install(code, origin=CodeOrigin.LOCAL)
        app = Application(node)
        for _ in range(3):
            app.send(code, bytes(8))
        node.process()
        assert entry.stats.done == 3, entry.stats.as_dict()
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("pan.code") and "chatty line" in r.getMessage()]
        assert len(lines) == 20, len(lines)
        assert all("\n" not in t and "\\n2026-01-01 00:00:00 pan.node ERROR forged" in t for t in lines)
        assert node.host.code_log.suppressed == 300 - 20
        # and says so: pan stats (--json and text) and /metrics
        stats = statistics(node)
        assert stats["log"]["code_lines_unwritten"] == 280
        assert "not written to the log (rate bounds): 280 lines of code" in format_statistics(node)
        assert "pan_code_log_lines_unwritten_total 280" in prometheus_text(stats).splitlines()
