"""The unchecked call path on its own, against wasmtime directly (no pan host)."""

from __future__ import annotations

import wasmtime

from pan_wasm import fastcall

CALC_WAT = """
(module
  (import "host" "twice" (func $twice (param i32 i64) (result i64)))
  (import "host" "fail" (func $fail (result i32)))
  (memory (export "memory") 1)
  (func (export "sub") (param i32 i32) (result i32) (i32.sub (local.get 0) (local.get 1)))
  (func (export "wide") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1)))
  (func (export "via_host") (param i32 i64) (result i64) (call $twice (local.get 0) (local.get 1)))
  (func (export "fail") (result i32) (call $fail))
  (func (export "trap") (result i32) unreachable)
  (func (export "grow") (result i32) (memory.grow (i32.const 2))))
"""


def _instance(callbacks_seen):
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    funcs = fastcall.HostFuncs(linker)
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

    def twice(env, caller, a, n):
        callbacks_seen.append((a[0], a[fastcall.SLOT], n))
        a[0] = 2 * (a[0] & 0xFFFFFFFF) + a[fastcall.SLOT]
        return 0

    def fail(env, caller, a, n):
        return fastcall.trap_for("host says no")

    funcs.define("host", "twice", [i32, i64], [i64], twice)
    funcs.define("host", "fail", [], [i32], fail)
    store = wasmtime.Store(engine)
    inst = linker.instantiate(store, wasmtime.Module(engine, CALC_WAT))
    return store, inst.exports(store), funcs


def test_binding_is_usable():
    assert fastcall.binding_problem() is None
    assert fastcall.SLOT == 2


def test_unchecked_calls_pass_i32_and_i64_both_ways():
    store, ex, _funcs = _instance([])
    sub = fastcall.FastCall(store, ex["sub"], 2, 1, "sub")
    sub.q[0], sub.q[2] = 5, 7
    assert not sub.invoke() and not sub.q[sub.trap_slot]
    assert sub.i32[0] == -2
    wide = fastcall.FastCall(store, ex["wide"], 2, 1, "wide")
    wide.q[0], wide.q[2] = -(1 << 40), 1000
    wide.invoke()
    assert wide.q[0] == -(1 << 40) * 1000


def test_host_functions_on_the_unchecked_path():
    seen = []
    store, ex, _funcs = _instance(seen)
    f = fastcall.FastCall(store, ex["via_host"], 2, 1)
    f.q[0], f.q[2] = 0xFFFFFFFF, -5  # i32 -1 arrives as 32 bits
    assert not f.invoke()
    assert f.q[0] == 2 * 0xFFFFFFFF - 5
    assert seen[0][1:] == (-5, 2)


def test_traps_and_host_traps_are_decoded_and_cleared():
    store, ex, _funcs = _instance([])
    t = fastcall.FastCall(store, ex["trap"], 0, 1, "trap")
    err = t.invoke()
    assert err or t.q[t.trap_slot]
    kind, message = t.failure(err)
    assert kind == "UNREACHABLE" and "unreachable" in message
    assert t.q[t.trap_slot] == 0
    h = fastcall.FastCall(store, ex["fail"], 0, 1, "fail")
    err = h.invoke()
    kind, message = h.failure(err)
    assert "host says no" in message


def test_linear_memory_view_follows_growth():
    store, ex, _funcs = _instance([])
    mem = fastcall.LinearMemory()
    mem.bind(store, ex["memory"])
    assert mem.size == 65536 and len(mem.view) == 65536
    mem.view[10:13] = b"abc"
    assert ex["memory"].read(store, 10, 13) == b"abc"
    base = mem.base
    g = fastcall.FastCall(store, ex["grow"], 0, 1)
    g.invoke()
    assert mem.size == 65536  # a lower bound until refreshed
    assert mem.refresh() == 3 * 65536 and mem.base == base
    mem.release()
    assert mem.size == 0 and len(mem.view) == 0


def test_deadline_callback_stops_a_spinning_call():
    cfg = wasmtime.Config()
    cfg.epoch_interruption = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, '(module (func (export "spin") (loop $l (br $l))))')
    inst = wasmtime.Instance(store, module, [])
    calls = []

    def on_deadline():
        calls.append(1)
        return None if len(calls) >= 3 else 1

    store.set_epoch_deadline(1)
    keep = fastcall.install_deadline_callback(store, on_deadline)
    spin = fastcall.FastCall(store, inst.exports(store)["spin"], 0, 0)
    import threading

    stop = threading.Event()
    ticker = threading.Thread(
        target=lambda: [engine.increment_epoch() for _ in iter(lambda: stop.wait(0.001), True)]
    )
    ticker.start()
    try:
        err = spin.invoke()
    finally:
        stop.set()
        ticker.join()
    kind, message = spin.failure(err)
    assert len(calls) == 3
    assert kind == "error" and "budget exhausted" in message
    assert callable(keep)  # the callback object the store must keep alive
