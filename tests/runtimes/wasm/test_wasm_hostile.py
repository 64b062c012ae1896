"""Hostile modules: each is contained with the right fault, and the runtime goes on working."""

from __future__ import annotations

import time

import pytest
from wasm_helpers import BUDGET, FORWARD_WAT, make_env, wat_code

from pan_runtime.errors import BudgetExceeded, CodeObjectError, RuntimeFault
from pan_runtime.node.env import Budget
from pan_wasm.runtime import WasmRuntime

LOOP_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (loop $spin (br $spin))
    i32.const 0))
"""

GROW_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (block $full
      (loop $more
        (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more)))
    (memory.size)))
"""

RECURSE_WAT = """
(module
  (memory (export "memory") 1)
  (func $deep (param i64) (result i64)
    (i64.add (call $deep (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "accept") (param i32 i32) (result i32)
    (i32.wrap_i64 (call $deep (i64.const 0)))))
"""

OOB_LOAD_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (i32.load (i32.const 70000))))
"""

OOB_STORE_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (i32.store (i32.const -4) (i32.const 1))
    i32.const 2))
"""


def check_forward_still_works(runtime, host, run):
    loaded = runtime.load(wat_code(FORWARD_WAT), [], host)
    assert run(loaded) == 2


def test_infinite_loop_is_stopped_by_the_epoch_budget(runtime, host, run):
    loaded = runtime.load(wat_code(LOOP_WAT), [], host)
    started = time.perf_counter()
    with pytest.raises(BudgetExceeded) as info:
        run(loaded, budget=Budget(time_ms=15.0))
    elapsed = time.perf_counter() - started
    assert info.value.reason == "budget"
    assert "budget of 15.0 ms" in str(info.value)
    assert elapsed >= 0.010  # not before the budget (how long after is the machine's business)
    assert loaded.needs_reset
    loaded.reset()
    assert not loaded.needs_reset
    with pytest.raises(BudgetExceeded):  # still a loop after the reset, still contained
        run(loaded, budget=Budget(time_ms=5.0))
    check_forward_still_works(runtime, host, run)


def test_infinite_loop_is_stopped_by_fuel(fuel_runtime, host):
    loaded = fuel_runtime.load(wat_code(LOOP_WAT), [], host)
    env = make_env(loaded.code, bytes(32), Budget(fuel=100_000))
    host.current = env
    with pytest.raises(BudgetExceeded) as info:
        loaded.accept(env)
    assert info.value.reason == "budget"
    assert "100000 fuel" in str(info.value)
    forward = fuel_runtime.load(wat_code(FORWARD_WAT), [], host)
    assert forward.accept(env) == 2


def test_fuel_budget_lets_bounded_work_finish(fuel_runtime, host):
    loaded = fuel_runtime.load(wat_code(GROW_WAT), [], host)
    env = make_env(loaded.code, bytes(32), Budget(fuel=100_000, memory_bytes=1 << 20))
    host.current = env
    assert loaded.accept(env) == 16  # pages: 64 KiB + 15 x 64 KiB = 1 MiB


def test_unbounded_memory_grow_stops_at_the_ceiling(runtime, host, run):
    loaded = runtime.load(wat_code(GROW_WAT), [], host)
    pages = run(loaded, budget=Budget(time_ms=1000.0, memory_bytes=2 << 20))
    assert pages == 32  # memory.grow returned -1 once the store limit was reached
    assert loaded.memory_size == 2 << 20
    assert not loaded.needs_reset  # a refused grow is not a fault
    check_forward_still_works(runtime, host, run)


def test_runtime_ceiling_wins_over_a_larger_budget(host):
    rt = WasmRuntime({"max_memory_bytes": 1 << 20})
    try:
        loaded = rt.load(wat_code(GROW_WAT), [], host)
        env = make_env(loaded.code, bytes(8), Budget(time_ms=1000.0, memory_bytes=64 << 20))
        host.current = env
        assert loaded.accept(env) == 16
    finally:
        rt.close()


def test_initial_memory_above_the_ceiling_is_refused_at_load(host):
    rt = WasmRuntime({"max_memory_bytes": 1 << 20})
    try:
        big = FORWARD_WAT.replace('(memory (export "memory") 1)', '(memory (export "memory") 64)')
        with pytest.raises(CodeObjectError, match="cannot instantiate"):
            rt.load(wat_code(big), [], host)
    finally:
        rt.close()


def test_deep_recursion_traps_with_reason_stack(runtime, host, run):
    loaded = runtime.load(wat_code(RECURSE_WAT), [], host)
    with pytest.raises(RuntimeFault) as info:
        run(loaded)
    assert info.value.reason == "stack"
    assert not isinstance(info.value, BudgetExceeded)
    assert loaded.needs_reset
    loaded.reset()
    check_forward_still_works(runtime, host, run)


@pytest.mark.parametrize("wat", [OOB_LOAD_WAT, OOB_STORE_WAT], ids=["load", "store"])
def test_out_of_bounds_access_traps_with_reason_oob(runtime, host, run, wat):
    loaded = runtime.load(wat_code(wat), [], host)
    with pytest.raises(RuntimeFault) as info:
        run(loaded)
    assert info.value.reason == "oob"
    assert "out of bounds" in str(info.value)
    check_forward_still_works(runtime, host, run)


def test_unreachable_is_a_trap(runtime, host, run):
    loaded = runtime.load(
        wat_code(
            '(module (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) unreachable))'
        ),
        [],
        host,
    )
    with pytest.raises(RuntimeFault) as info:
        run(loaded)
    assert info.value.reason == "trap"
    assert "unreachable" in str(info.value)


@pytest.mark.parametrize(
    ("imports", "named"),
    [
        ('(import "pan_pni_1" "format_disk" (func (param i32) (result i32)))', "pan_pni_1.format_disk"),
        ('(import "env" "abort" (func))', "env.abort"),
        (
            '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
            "wasi_snapshot_preview1.fd_write",
        ),
        ('(import "pan_pni_1" "seg_length" (func (param i32) (result i32)))', "pan_pni_1.seg_length"),
        ('(import "pan_pni_1" "node_mtu" (memory 1))', "pan_pni_1.node_mtu"),
    ],
    ids=["unknown-call", "foreign-module", "wasi", "wrong-type", "not-a-function"],
)
def test_imports_outside_the_spec_are_refused_naming_them(runtime, host, run, imports, named):
    text = f'(module {imports} (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) i32.const 2))'
    if "(memory 1)" in imports:
        text = text.replace('(memory (export "memory") 1)', '(export "memory" (memory 0))')
    with pytest.raises(CodeObjectError, match=f"import {named}"):
        runtime.load(wat_code(text), [], host)
    check_forward_still_works(runtime, host, run)


def test_malformed_module_is_refused(runtime, host, run):
    good = bytes(wat_code(FORWARD_WAT).payload)
    from pan_runtime.data.codeobj import CodeObject

    for payload, pattern in [
        (good[: len(good) // 2], "not a valid WebAssembly module"),
        (good[:5], "not a WebAssembly 1.0 module .truncated"),
        (b"\x7fELF" + bytes(60), "bad magic"),
        (good[:8] + b"\xff" * 24, "not a valid WebAssembly module"),
    ]:
        with pytest.raises(CodeObjectError, match=pattern):
            runtime.load(CodeObject.create("wasm", payload), [], host)
    assert runtime.cache.stats.compiled == 0
    check_forward_still_works(runtime, host, run)


def test_oversized_module_is_refused_before_compiling(host):
    rt = WasmRuntime({"max_module_bytes": 4096})
    try:
        pad = "".join(f'(data (i32.const {i * 64}) "{"x" * 60}")' for i in range(80))
        big = wat_code(
            FORWARD_WAT.replace('(memory (export "memory") 1)', f'(memory (export "memory") 1) {pad}')
        )
        assert len(big.payload) > 4096
        with pytest.raises(CodeObjectError, match="more than max_module_bytes=4096"):
            rt.load(big, [], host)
        assert rt.cache.stats.compiled == 0
        assert rt.load(wat_code(FORWARD_WAT), [], host).accept(make_env(big, bytes(8), BUDGET)) == 2
    finally:
        rt.close()


def test_missing_memory_or_accept_is_refused(runtime, host):
    with pytest.raises(CodeObjectError, match="linear memory"):
        runtime.load(
            wat_code('(module (func (export "accept") (param i32 i32) (result i32) i32.const 2))'), [], host
        )
    with pytest.raises(CodeObjectError, match="does not export entry point 'accept'"):
        runtime.load(wat_code('(module (memory (export "memory") 1))'), [], host)
    with pytest.raises(CodeObjectError, match="export 'accept' has type"):
        runtime.load(
            wat_code(
                '(module (memory (export "memory") 1) (func (export "accept") (result i32) i32.const 2))'
            ),
            [],
            host,
        )


def test_start_function_that_spins_is_refused_at_load(runtime, host, run):
    text = """
    (module (memory (export "memory") 1)
      (func $spin (loop $l (br $l)))
      (start $spin)
      (func (export "accept") (param i32 i32) (result i32) i32.const 2))
    """
    with pytest.raises(CodeObjectError, match="budget"):
        runtime.load(wat_code(text), [], host)
    check_forward_still_works(runtime, host, run)


def test_table_limits_hold_at_load_and_after_a_budget_change(runtime, host, run):
    big = FORWARD_WAT.replace(
        '(memory (export "memory") 1)', '(memory (export "memory") 1) (table 70000 funcref)'
    )
    with pytest.raises(CodeObjectError, match="cannot instantiate"):
        runtime.load(wat_code(big), [], host)
    grower = runtime.load(
        wat_code(
            """(module (memory (export "memory") 1) (table $t 1 funcref)
                 (func (export "accept") (param i32 i32) (result i32)
                   (table.grow $t (ref.null func) (i32.const 70000))))"""
        ),
        [],
        host,
    )
    assert run(grower, budget=Budget(time_ms=30.0, memory_bytes=3 << 20)) == -1
