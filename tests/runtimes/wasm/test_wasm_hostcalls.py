"""PNI calls from wasm: argument mapping, bounds checks against linear memory, host errors."""

from __future__ import annotations

import pytest
from wasm_helpers import BUDGET, HERE, make_env, wat_code

from pan_runtime.errors import RuntimeFault
from pan_runtime.node.pni import OUT_OF_RANGE, PniServer
from pan_wasm.hostcalls import wasm_signature

PROBE_WAT = """
(module
  (import "pan_pni_1" "seg_read" (func $seg_read (param i32 i32 i32 i32) (result i32)))
  (import "pan_pni_1" "node_address" (func $node_address (param i32) (result i32)))
  (import "pan_pni_1" "node_now_ns" (func $now (result i64)))
  (import "pan_pni_1" "state_put" (func $state_put (param i32 i32 i32 i32 i32) (result i32)))
  (import "pan_pni_1" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (import "pan_pni_1" "seg_set_u8" (func $set_u8 (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "key!value")
  (func (export "accept") (param i32 i32) (result i32)
    (call $seg_read (local.get 0) (i32.const 0) (i32.const 0) (local.get 1)))
  (func (export "read_to") (param i64 i64) (result i64)
    (i64.extend_i32_s (call $seg_read (i32.const 1) (i32.const 0) (i32.wrap_i64 (local.get 0)) (i32.wrap_i64 (local.get 1)))))
  (func (export "addr_to") (param i64 i64) (result i64)
    (i64.extend_i32_s (call $node_address (i32.wrap_i64 (local.get 0)))))
  (func (export "now") (param i64 i64) (result i64) (call $now))
  (func (export "grow") (param i64 i64) (result i64) (i64.extend_i32_s (memory.grow (i32.wrap_i64 (local.get 0)))))
  (func (export "put") (param i64 i64) (result i64)
    (i64.extend_i32_s (call $state_put (i32.const 100) (i32.const 4) (i32.const 104) (i32.const 5) (i32.const 0))))
  (func (export "get") (param i64 i64) (result i64)
    (i64.extend_i32_s (call $state_get (i32.const 100) (i32.const 4) (i32.wrap_i64 (local.get 0)) (i32.wrap_i64 (local.get 1)))))
  (func (export "set_u8") (param i64 i64) (result i64)
    (i64.extend_i32_s (call $set_u8 (i32.const 1) (i32.wrap_i64 (local.get 0)) (i32.wrap_i64 (local.get 1))))))
"""
EXPORTS = ["read_to", "addr_to", "now", "grow", "put", "get", "set_u8"]


class CountingHost(PniServer):
    def __init__(self, node):
        super().__init__(node)
        self.reads = 0

    def seg_read(self, seg, offset, dst):
        self.reads += 1
        return super().seg_read(seg, offset, dst)


@pytest.fixture
def counting(node):
    return CountingHost(node)


@pytest.fixture
def probe(runtime, counting):
    loaded = runtime.load(wat_code(PROBE_WAT, exports=EXPORTS), [], counting)
    env = make_env(loaded.code, bytes(range(1, 65)) * 4, BUDGET)
    counting.current = env
    return loaded


def test_signatures_follow_the_spec_mapping():
    assert wasm_signature("seg_read") == (("i32", "i32", "i32", "i32"), ("i32",))
    assert wasm_signature("deliver") == (("i64", "i32", "i32"), ("i32",))
    assert wasm_signature("hmac_sha256") == (("i32",) * 6, ("i32",))
    assert wasm_signature("dep_call") == (("i32", "i32", "i32", "i64", "i64"), ("i64",))
    assert wasm_signature("node_now_ns") == ((), ("i64",))


def test_seg_read_copies_into_linear_memory(probe, counting):
    assert probe.call_export("read_to", 4096, 16) == 16
    assert bytes(probe.mem.view[4096:4112]) == bytes(range(1, 17))
    assert counting.reads == 1


@pytest.mark.parametrize(
    ("ptr", "length"),
    [(65536, 1), (65530, 7), (0xFFFFFFF0, 0x20), (0, 0x7FFFFFFF), (0xFFFFFFFF, 1)],
    ids=["past-end", "straddles-end", "wraps-32-bits", "huge-length", "max-pointer"],
)
def test_ranges_outside_memory_return_out_of_range_without_reaching_the_host(probe, counting, ptr, length):
    assert probe.call_export("read_to", ptr, length) == OUT_OF_RANGE
    assert counting.reads == 0
    assert not probe.needs_reset


def test_empty_range_at_the_end_of_memory_is_fine(probe, counting):
    assert probe.call_export("read_to", 65536, 0) == 0
    assert counting.reads == 1


def test_fixed_size_pointers_are_checked(probe):
    assert probe.call_export("addr_to", 65536 - 15, 0) == OUT_OF_RANGE
    assert probe.call_export("addr_to", 65536 - 16, 0) == 0
    assert bytes(probe.mem.view[65520:65536]) == HERE.raw


def test_memory_grown_by_the_code_is_usable_by_host_calls(probe):
    assert probe.call_export("read_to", 70000, 8) == OUT_OF_RANGE
    assert probe.call_export("grow", 1, 0) == 1
    assert probe.call_export("read_to", 70000, 8) == 8
    assert bytes(probe.mem.view[70000:70008]) == bytes(range(1, 9))


def test_bytes_in_and_out_and_i64_results(probe, node):
    assert probe.call_export("put", 0, 0) == 0
    assert node.states[probe.code.name].get(b"key!") == b"value"
    assert probe.call_export("get", 200, 3) == 5  # full length, truncated copy
    assert bytes(probe.mem.view[200:205]) == b"val\0\0"
    assert probe.call_export("now", 0, 0) > 1_000_000


def test_u32_arguments_arrive_unsigned(probe):
    # offset 0xFFFFFFFF must reach the host as 4294967295 (out of the segment), not -1
    assert probe.call_export("set_u8", 0xFFFFFFFF, 1) == OUT_OF_RANGE
    assert probe.call_export("set_u8", 0, 0x1FF) == -5  # BAD_ARGUMENT: value above a byte


def test_accept_reads_the_body_through_the_host(probe, counting):
    env = make_env(probe.code, b"\x0a" * 100, BUDGET)
    counting.current = env
    assert probe.accept(env) == 100
    assert bytes(probe.mem.view[0:100]) == b"\x0a" * 100


def test_a_host_method_that_raises_becomes_a_fault(runtime, node):
    class BrokenHost(PniServer):
        def seg_read(self, seg, offset, dst):
            raise ZeroDivisionError("host bug")

    host = BrokenHost(node)
    loaded = runtime.load(wat_code(PROBE_WAT, exports=EXPORTS), [], host)
    env = make_env(loaded.code, bytes(32), BUDGET)
    host.current = env
    with pytest.raises(RuntimeFault) as info:
        loaded.accept(env)
    assert info.value.reason == "host_error"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert loaded.needs_reset


def test_dep_call_reaches_a_dependency_export(runtime, host, node):
    lib = runtime.load(
        wat_code(
            """(module (memory (export "memory") 1)
                 (func (export "accept") (param i32 i32) (result i32) i32.const 0)
                 (func (export "mul") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1))))""",
            exports=["mul"],
        ),
        [],
        host,
    )
    user = runtime.load(
        wat_code(
            """(module
                 (import "pan_pni_1" "dep_call" (func $dep (param i32 i32 i32 i64 i64) (result i64)))
                 (memory (export "memory") 1)
                 (data (i32.const 8) "mul")
                 (func (export "accept") (param i32 i32) (result i32)
                   (i32.wrap_i64 (call $dep (i32.const 0) (i32.const 8) (i32.const 3) (i64.const -6) (i64.const 7)))))""",
            dependencies=[lib.code.name],
        ),
        [lib],
        host,
    )
    node.deps[(user.code.name, 0)] = lib
    env = make_env(user.code, bytes(8), BUDGET)
    host.current = env
    assert user.accept(env) == -42
    assert lib.call_export("mul", -(1 << 40), 3) == -(3 << 40)
    with pytest.raises(RuntimeFault) as info:
        lib.call_export("nope", 0, 0)
    assert info.value.reason == "no_export"
