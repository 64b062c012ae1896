"""restricted_py's memory and time accounts: per-call and held memory, the CPU time budget,
pace checks in straight-line code, and the limits as runtime options from the node TOML."""

from __future__ import annotations

import pytest

from pan_restricted_py.compiler import compile_source
from pan_restricted_py.runtime import RestrictedPyRuntime
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BudgetExceeded, CodeObjectError, ConfigError, FaultReason
from pan_runtime.net.application import Application
from pan_runtime.net.config import parse_config
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node
from pan_runtime.pni_api import DONE


def accept_body(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"def accept(pni, capsule, length):\n{lines}\n"


ALLOCATE = accept_body("keep = [bytearray(length) for i in range(8)]\nreturn DONE")  # 8 x length bytes


def test_a_call_gets_the_budgets_memory_and_no_more(load, run):
    loaded = load(ALLOCATE)
    assert run(loaded, bytes(256 << 10), budget=Budget(time_ms=1000.0, memory_bytes=4 << 20)) == DONE  # 2 MiB
    with pytest.raises(BudgetExceeded) as info:
        run(loaded, bytes(256 << 10), budget=Budget(time_ms=1000.0, memory_bytes=1 << 20))
    assert info.value.reason is FaultReason.MEMORY_BUDGET
    assert "memory budget of 1048576 bytes" in str(info.value)
    assert not loaded.needs_reset  # a refused call leaves the code as it was
    assert run(loaded, bytes(256), budget=Budget(time_ms=1000.0, memory_bytes=1 << 20)) == DONE


def test_the_runtime_ceiling_wins_over_a_larger_budget(host, run):
    rt = RestrictedPyRuntime({"max_call_memory_bytes": 1 << 20})
    loaded = rt.load(CodeObject.create("restricted_py", ALLOCATE.encode()), [], host)
    with pytest.raises(BudgetExceeded) as info:
        run(loaded, bytes(256 << 10), budget=Budget(time_ms=1000.0, memory_bytes=64 << 20))
    assert info.value.reason is FaultReason.MEMORY_BUDGET


def test_catching_memory_error_does_not_save_the_call(load, run):
    loaded = load(accept_body(
        "keep = []\nwhile True:\n    try:\n        keep.append(bytearray(200000))\n"
        "    except BaseException:\n        return DONE"
    ))
    with pytest.raises(BudgetExceeded) as info:
        run(loaded, budget=Budget(time_ms=1000.0, steps=10**6, memory_bytes=4 << 20))
    assert info.value.reason is FaultReason.MEMORY_BUDGET


def test_what_a_faulted_call_allocated_is_released(load, run):
    loaded = load(accept_body("keep = []\nwhile True:\n    keep.append([length] * 1000)"))
    before = loaded._account.held
    for _ in range(3):
        with pytest.raises(BudgetExceeded, match="memory budget"):
            run(loaded, budget=Budget(time_ms=1000.0, steps=10**6, memory_bytes=2 << 20))
    assert loaded._account.held <= before + (16 << 10)


def test_a_code_object_holding_too_much_between_calls_is_reset(host, run):
    rt = RestrictedPyRuntime({"held_memory_bytes": 1 << 20})
    src = "keep = []\n" + accept_body("keep.append(bytearray(200000))\nreturn len(keep)")
    loaded = rt.load(CodeObject.create("restricted_py", src.encode()), [], host)
    results = []
    with pytest.raises(BudgetExceeded) as info:
        for _ in range(20):
            results.append(run(loaded))
    assert info.value.reason is FaultReason.MEMORY_HELD
    assert results == [1, 2, 3, 4, 5]  # the sixth call took it past 1 MiB
    assert loaded.needs_reset
    loaded.reset()  # what the node does after the fault: the global goes, and its memory
    assert loaded._account.held < 64 << 10
    assert run(loaded) == 1


def test_a_module_body_over_the_held_limit_is_refused(host):
    rt = RestrictedPyRuntime({"held_memory_bytes": 1 << 20})
    src = "table = [bytearray(100000) for i in range(20)]\n" + accept_body("return DONE")
    with pytest.raises(CodeObjectError, match="more than its limit of 1048576"):
        rt.load(CodeObject.create("restricted_py", src.encode()), [], host)


STRAIGHT = "a = [0] * 200000\nb = list(a)\n"


def test_straight_line_code_is_stopped_by_the_time_budget(load, run):
    loaded = load(STRAIGHT + accept_body("x = a == b\n" * 4000 + "return DONE"))
    with pytest.raises(BudgetExceeded, match="time budget of 20 ms"):
        run(loaded, budget=Budget(time_ms=20.0))


def test_a_late_call_cannot_swallow_its_stop(load, run):
    body = "try:\n" + "    x = a == b\n" * 4000 + "except BaseException:\n    return 7\nreturn DONE"
    loaded = load(STRAIGHT + accept_body(body))
    with pytest.raises(BudgetExceeded, match="time budget"):
        run(loaded, budget=Budget(time_ms=20.0))


def test_one_huge_statement_is_refused_at_compile_time():
    def tests(n: int) -> str:
        return accept_body("return int(" + " or ".join(f"length == {i}" for i in range(n)) + ")")

    with pytest.raises(CodeObjectError, match="a statement of 2002 operations, more than 1024"):
        compile_source(tests(2000))
    compile_source(tests(500))


TOML = """
[node]
listen = ["127.0.0.1:0"]
[runtimes.options.restricted_py]
max_items = 1000
held_memory_bytes = 1048576
tick_ms = 1
"""


def test_limits_come_from_the_node_toml():
    cfg = parse_config(TOML)
    with Node("127.0.0.1:7001", config=cfg.node) as node:
        limits = node.runtime("restricted_py").limits
        assert (limits.max_items, limits.held_memory_bytes, limits.tick_ms) == (1000, 1 << 20, 1.0)
        app = Application(node)
        code = CodeObject.create("restricted_py", accept_body("return len('x' * (length * 200))").encode())
        app.install(code)
        app.send(code, bytes(10))  # 2000 items, over max_items
        node.process()
        assert node.cache.peek(code.name).stats.drops == {"guard": 1}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_itmes": 5}, "unknown options"),
        ({"held_memory_bytes": 0}, "held_memory_bytes must be a positive integer"),
        ({"max_items": "many"}, "max_items must be a positive integer"),
        ({"tick_ms": 0}, "tick_ms must be a number of ms"),
    ],
)
def test_bad_options_are_config_errors(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RestrictedPyRuntime(options)
