"""The wasm runtime's lifecycle: plugin, entry points, exports, reset, unload, batches."""

from __future__ import annotations

import pytest
from wasm_helpers import BUDGET, FORWARD_WAT, make_env, wat_code

from pan_runtime.errors import ClosedError, ConfigError, RuntimeFault
from pan_runtime.plugin.runtime import Isolation
from pan_wasm import plugin
from pan_wasm.runtime import WasmRuntime

# accept returns the body's first byte (read through the host, so it follows the batch
# cursor); a first byte of 0xEE traps. Batch area at 1024 with capacity 4.
BATCH_WAT = """
(module
  (import "pan_pni_1" "seg_get_u8" (func $u8 (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 1028) "\\04\\00\\00\\00")
  (func $accept (export "accept") (param i32 i32) (result i32)
    (local $b i32)
    (local.set $b (i32.wrap_i64 (call $u8 (local.get 0) (i32.const 0))))
    (if (i32.eq (local.get $b) (i32.const 0xEE)) (then unreachable))
    (i32.add (i32.shl (local.get $b) (i32.const 8)) (i32.const 3)))
  (func (export "pni_batch_area") (result i32) i32.const 1024)
  (func (export "accept_batch") (param $n i32) (result i32)
    (local $i i32) (local $slot i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store (i32.const 1024) (local.get $i))
        (local.set $slot (i32.add (i32.const 1032) (i32.mul (local.get $i) (i32.const 12))))
        (i32.store offset=8 (local.get $slot)
          (call $accept (i32.load (local.get $slot)) (i32.load offset=4 (local.get $slot))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $n)))
"""

STATEFUL_WAT = """
(module
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "init") (result i32) (global.set $g (i32.const 7)) (i32.const 0))
  (func (export "finalize") (result i32) (i32.const 5))
  (func (export "accept") (param i32 i32) (result i32)
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (if (i32.eq (local.get 1) (i32.const 13)) (then unreachable))
    (global.get $g)))
"""


def test_plugin_registers_runtime_and_builder():
    runtimes, builders = [], []

    class Reg:
        def __init__(self, into):
            self.add = into.append

    plugin.pan_register_runtimes(Reg(runtimes))
    plugin.pan_register_builders(Reg(builders))
    assert runtimes == [WasmRuntime]
    assert WasmRuntime.name == "wasm" and WasmRuntime.isolation is Isolation.SANDBOXED
    assert WasmRuntime.available() is None
    assert [b.runtime for b in builders] == ["wasm"]


def test_versions_and_options(runtime):
    v = runtime.versions()
    assert v["wasmtime"].startswith("50.")
    assert v["budget"].startswith("epoch")
    with pytest.raises(ConfigError, match="unknown options"):
        WasmRuntime({"fule": 1})
    with pytest.raises(ConfigError, match="budget must be one of"):
        WasmRuntime({"budget": "vibes"})


def test_init_accept_finalize_and_reset(runtime, host, run):
    loaded = runtime.load(
        wat_code(STATEFUL_WAT, entry={"accept": "accept", "init": "init", "finalize": "finalize"}), [], host
    )
    assert loaded.init() == 0
    assert run(loaded) == 8
    assert run(loaded) == 9
    with pytest.raises(RuntimeFault):
        run(loaded, bytes(13))
    assert loaded.needs_reset
    loaded.reset()  # fresh instance, init runs again
    assert run(loaded) == 8
    assert loaded.finalize() == 5


def test_unload_makes_calls_fail_cleanly(runtime, host, run, forward):
    assert run(forward) == 2
    forward.unload()
    with pytest.raises(ClosedError):
        run(forward)


def test_closed_runtime_refuses_loads(host):
    rt = WasmRuntime()
    rt.close()
    with pytest.raises(ClosedError):
        rt.load(wat_code(FORWARD_WAT), [], host)


def _envs(code, firsts):
    return [make_env(code, bytes([b]) + bytes(20 + i), BUDGET) for i, b in enumerate(firsts)]


def test_accept_batch_runs_in_one_crossing_and_follows_each_capsule(runtime, host):
    loaded = runtime.load(wat_code(BATCH_WAT), [], host)
    assert loaded._batch is not None
    envs = _envs(loaded.code, range(1, 11))  # 10 capsules, capacity 4: chunks 4 + 4 + 2
    calls = []
    invoke = loaded._batch.invoke
    loaded._batch.invoke = lambda: calls.append(1) or invoke()
    assert loaded.accept_batch(envs) == [(b << 8) | 3 for b in range(1, 11)]
    assert len(calls) == 3
    lengths = [loaded._area[3 + 3 * i] for i in range(2)]
    assert lengths == [envs[8].length, envs[9].length]


def test_a_fault_inside_a_batch_is_returned_in_its_place(runtime, host):
    loaded = runtime.load(wat_code(BATCH_WAT), [], host)
    envs = _envs(loaded.code, [1, 2, 0xEE, 4, 0xEE])
    out = loaded.accept_batch(envs)
    assert out[0] == 0x103 and out[1] == 0x203 and out[3] == 0x403
    assert isinstance(out[2], RuntimeFault) and out[2].reason == "trap"
    assert isinstance(out[4], RuntimeFault)
    assert loaded.accept_batch(_envs(loaded.code, [9, 8])) == [0x903, 0x803]


def test_batch_without_the_batch_export_loops_on_the_host(runtime, host):
    text = BATCH_WAT.replace('(export "accept_batch")', "").replace('(export "pni_batch_area")', "")
    loaded = runtime.load(wat_code(text), [], host)
    assert loaded._batch is None
    assert loaded.accept_batch(_envs(loaded.code, [5, 0xEE, 6]))[0::2] == [0x503, 0x603]


def test_batch_exports_must_have_the_right_types(runtime, host):
    from pan_runtime.errors import CodeObjectError

    text = BATCH_WAT.replace(
        '(func (export "pni_batch_area") (result i32) i32.const 1024)',
        '(func (export "pni_batch_area") (result i64) i64.const 1024)',
    )
    with pytest.raises(CodeObjectError, match="pni_batch_area"):
        runtime.load(wat_code(text), [], host)
