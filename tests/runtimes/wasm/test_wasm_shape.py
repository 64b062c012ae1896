"""A module's shape is checked against the node's load limits before anything compiles it:
each limit refuses with its reason, the body walk decodes every instruction the engine
accepts (so nesting is counted right whatever the immediates), and what pan ships passes."""

from __future__ import annotations

import pytest
import wasmtime
from wasm_helpers import wat_code

from pan_runtime.cli.protocols import PROTOCOLS, reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.plugin.loadlimits import LoadLimits
from pan_runtime.testing.wasmgen import many_functions, many_locals, nested_blocks
from pan_wasm.runtime import WasmRuntime
from pan_wasm.shape import check_bodies, scan


def imports(n: int) -> bytes:
    calls = "".join(f'(import "pan_pni_1" "node_now_ns" (func $n{i} (result i64)))' for i in range(n))
    return bytes(wasmtime.wat2wasm(f'(module {calls} (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) i32.const 2))'))


def exports(n: int) -> bytes:
    names = "".join(f'(export "e{i}" (func 0))' for i in range(n))
    return bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) i32.const 2) {names})'))


CASES = {
    "code_bytes": (many_functions(2000), LoadLimits(code_bytes=4096), FaultReason.CODE_TOO_BIG),
    "code_functions": (many_functions(101), LoadLimits(code_functions=100), FaultReason.TOO_MANY_FUNCTIONS),
    "code_imports": (imports(9), LoadLimits(code_imports=8), FaultReason.TOO_MANY_IMPORTS),
    "code_entries": (exports(40), LoadLimits(code_entries=32), FaultReason.TOO_MANY_ENTRIES),
    "code_locals": (many_locals(1001), LoadLimits(code_locals=1000), FaultReason.TOO_MANY_LOCALS),
    "code_nesting": (nested_blocks(65), LoadLimits(code_nesting=64), FaultReason.TOO_DEEP),
}


@pytest.mark.parametrize(("payload", "limits", "reason"), list(CASES.values()), ids=list(CASES))
def test_each_limit_refuses_before_compiling_with_its_reason(host, payload, limits, reason):
    rt = WasmRuntime()
    rt.load_limits = limits
    try:
        with pytest.raises(CodeObjectError) as refused:
            rt.load(CodeObject.create("wasm", payload), [], host)
        assert refused.value.reason is reason
        assert f"limits.{[k for k, v in CASES.items() if v[2] is reason][0]}" in str(refused.value)
        assert rt.cache.stats.compiled == 0
        rt.load_limits = LoadLimits(code_functions=10_000)  # the same module within the defaults loads
        rt.load(CodeObject.create("wasm", payload), [], host)
        assert rt.cache.stats.compiled == 1
    finally:
        rt.close()


def test_the_cheap_check_reads_only_headers_and_the_body_walk_finds_the_rest():
    deep, limits = nested_blocks(65), LoadLimits(code_nesting=64)
    shape = scan(deep, limits)  # counts only: passes
    assert shape.functions == 2
    with pytest.raises(CodeObjectError) as refused:
        check_bodies(deep, shape, limits)
    assert refused.value.reason is FaultReason.TOO_DEEP
    with pytest.raises(CodeObjectError, match="functions: 200001 is more than limits.code_functions = 10000"):
        scan(many_functions(200_000), LoadLimits())


# every kind of immediate the engine accepts, each at the innermost of DEPTH blocks: a
# decoder that skipped one wrongly would lose count of the blocks around it
DEPTH = 6
INSTRUCTIONS = """
    (drop (i32.const -123456789)) (drop (i64.const -0x7fffffffffffffff))
    (drop (f32.const 1.5)) (drop (f64.const 2.5))
    (drop (i32.load offset=65536 align=2 (i32.const 0))) (i64.store8 (i32.const 0) (i64.const 1))
    (drop (memory.size)) (drop (memory.grow (i32.const 0)))
    (memory.copy (i32.const 0) (i32.const 8) (i32.const 4)) (memory.fill (i32.const 0) (i32.const 0) (i32.const 4))
    (memory.init $d (i32.const 0) (i32.const 0) (i32.const 1)) (data.drop $d)
    (drop (table.get $t (i32.const 0))) (table.set $t (i32.const 0) (ref.null func))
    (drop (table.size $t)) (drop (table.grow $t (ref.func $f) (i32.const 0)))
    (table.fill $t (i32.const 0) (ref.null func) (i32.const 0)) (table.copy $t $t (i32.const 0) (i32.const 0) (i32.const 0))
    (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 0)) (elem.drop $e)
    (drop (ref.is_null (ref.func $f)))
    (drop (select (result i64) (i64.const 1) (i64.const 2) (i32.const 0)))
    (drop (i32.trunc_sat_f32_s (f32.const 1))) (drop (i64.extend8_s (i64.const 1)))
    (call $f) (call_indirect $t (type $v) (i32.const 0))
    (drop (v128.const i32x4 1 2 3 4))
    (drop (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (v128.const i64x2 0 0) (v128.const i64x2 0 0)))
    (drop (i32x4.extract_lane 3 (v128.const i64x2 0 0))) (drop (f64x2.replace_lane 1 (v128.const i64x2 0 0) (f64.const 1)))
    (drop (v128.load offset=16 (i32.const 0))) (drop (v128.load32_zero (i32.const 0)))
    (drop (v128.load16_lane 7 (i32.const 0) (v128.const i64x2 0 0))) (v128.store64_lane 1 (i32.const 0) (v128.const i64x2 0 0))
    (drop (i32x4.relaxed_trunc_f32x4_s (v128.const i64x2 0 0))) (drop (i8x16.add (v128.const i64x2 0 0) (v128.const i64x2 0 0)))
    (if (i32.const 0) (then (nop)) (else (br 0)))
    (block $x (br_table $x $x $x (i32.const 1)))
    (loop $l (br_if $l (i32.const 0)))
"""


def _nest(inner: str, depth: int) -> str:
    for _ in range(depth):
        inner = f"(block {inner})"
    return inner


def instruction_module(depth: int) -> bytes:
    return bytes(wasmtime.wat2wasm(f"""
(module
  (type $v (func))
  (memory (export "memory") 1)
  (table $t 2 funcref)
  (data $d "x")
  (elem $e func $f)
  (func $f)
  (func (export "accept") (param i32 i32) (result i32)
    {_nest(INSTRUCTIONS, depth)}
    (return_call $g (i32.const 2)))
  (func $g (param i32) (result i32) (local.get 0)))
"""))


def test_the_body_walk_knows_every_immediate_the_engine_accepts(runtime, host):
    payload = instruction_module(DEPTH)
    shape = scan(payload, LoadLimits())
    # the accept body: the function level, DEPTH blocks, then if/block/loop inside the innermost
    check_bodies(payload, shape, LoadLimits(code_nesting=DEPTH + 2))
    with pytest.raises(CodeObjectError) as refused:
        check_bodies(payload, shape, LoadLimits(code_nesting=DEPTH + 1))
    assert refused.value.reason is FaultReason.TOO_DEEP
    runtime.load(CodeObject.create("wasm", payload), [], host)  # and the engine compiles it


def test_an_instruction_the_engine_does_not_accept_is_refused_before_compiling(runtime, host):
    # exception handling is off in pan's engines: its opcodes are neither decoded nor compiled
    throw = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) i32.const 2))'))
    body_at = throw.rindex(b"\x41\x02\x0b")
    patched = throw[:body_at] + b"\x08\x00" + throw[body_at + 2 :]  # throw 0 in place of i32.const 2
    with pytest.raises(CodeObjectError, match="instruction 0x08"):
        runtime.load(CodeObject.create("wasm", patched), [], host)
    assert runtime.cache.stats.compiled == 0
    with pytest.raises(CodeObjectError, match="not a valid WebAssembly module"):  # GC: off as well
        runtime.load(wat_code('(module (type (struct)) (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) i32.const 2))'), [], host)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_shipped_protocols_pass_the_default_limits(protocol):
    code = reference_code("wasm", protocol)
    check_bodies(code.payload, scan(code.payload, LoadLimits()), LoadLimits())
