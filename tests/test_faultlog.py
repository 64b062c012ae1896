"""Faults of code objects in the log (``pan_runtime.node.faultlog``): a WARNING with the code's
label and the fault's message, at most one per code object per interval and a bounded number
across code objects, one line each whatever the code put in its message."""

from __future__ import annotations

import logging

import pytest

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import RuntimeFault
from pan_runtime.net.application import Application
from pan_runtime.net.network import ManualClock
from pan_runtime.node.faultlog import MAX_MESSAGE, FaultLog
from pan_runtime.node.node import Node
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.resources import cases_dir
from pan_runtime.testing import build_case

RAISE = cases_dir() / "raise"  # the kit's shipped case
MESSAGE = {"restricted_py": "accept refuses this capsule", "jvm": "accept refuses this capsule", "wasm": "trap"}


def _faults(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "faulted" in r.getMessage()]


@pytest.mark.parametrize("runtime", ["restricted_py", "wasm", "jvm"])  # native: a trap ends the process
def test_a_fault_is_logged_with_the_label_and_the_message_at_most_once_per_interval(runtime, caplog):
    code = build_case(RAISE, runtime, default_plugins())
    clock = ManualClock()
    caplog.set_level(logging.WARNING, logger="pan.node")
    with Node("10.0.0.1:7", clock=clock, name="n1") as node:
        node.install(code)
        app = Application(node)
        for _ in range(3):
            app.send(code, b"x")
        node.process()
        lines = _faults(caplog)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"n1: code {code.short_name} ({runtime}) faulted [")
        assert MESSAGE[runtime] in lines[0].lower()
        assert node.cache.peek(code.name).stats.errors == 3  # every fault is counted all the same
        clock.advance(10_000_000_000)
        app.send(code, b"x")
        node.process()
        lines = _faults(caplog)
        assert len(lines) == 2 and lines[1].endswith("(2 more faults of it since the last warning)")


def _fault_of(text: str) -> RuntimeFault:
    return RuntimeFault(text, "code_error")


def test_faults_of_many_code_objects_are_bounded_and_messages_are_one_line(caplog):
    clock = ManualClock()
    log = logging.getLogger("pan.test.faultlog")
    caplog.set_level(logging.WARNING, logger="pan.test.faultlog")
    faults = FaultLog(log, clock, burst=5)
    codes = [CodeObject.create("restricted_py", f"# {i}".encode(), meta={"label": f"c{i}"}) for i in range(8)]
    written = [faults.note("n", c, "restricted_py", _fault_of("x")) for c in codes]
    assert written == [True] * 5 + [False] * 3 and faults.unlogged == 3
    clock.advance(10_000_000_000)
    assert faults.note("n", codes[7], "restricted_py", _fault_of("line one\nWARNING forged\x1b[2J" + "y" * 1000))
    line = caplog.records[-1].getMessage()
    assert "\n" not in line and "\x1b" not in line and "line one\\nWARNING forged\\x1b[2J" in line
    assert len(line) < MAX_MESSAGE + 100


def test_no_line_when_warnings_are_off(caplog):
    log = logging.getLogger("pan.test.faultlog.off")
    log.setLevel(logging.ERROR)
    faults = FaultLog(log, ManualClock())
    assert not faults.note("n", CodeObject.create("x", b""), "x", _fault_of("x"))
    assert not caplog.records
