"""The jvm runtime end to end: zero-copy body access, host calls, batches, budgets, hostile code."""

from __future__ import annotations

import struct
import zlib

import pytest
from conftest import BUDGET, make_env, run

from pan_jvm.runtime import JvmRuntime
from pan_runtime.errors import BudgetExceeded, CodeObjectError, RuntimeFault
from pan_runtime.node.env import Budget, Origin
from pan_runtime.node.pni import VERDICT_FORWARD
from pan_runtime.plugin.runtime import Isolation

FWD = VERDICT_FORWARD  # FORWARD(0)


def test_identity():
    assert JvmRuntime.name == "jvm"
    assert JvmRuntime.isolation is Isolation.GUARDED
    assert JvmRuntime.available() is None


def test_forward_pooled_and_owned(forward, host, jpool):
    for pool in (jpool, None):
        env = make_env(forward.code, bytes(64), pool)
        assert run(forward, host, env) == FWD
        env.clear()


def test_body_access_is_zero_copy(runtime, classes, host, jpool):
    loaded = runtime.load(classes.code("cases/Body"), [], host)
    assert loaded.init() == 0
    body = bytearray(32)
    body[0] = 1
    body[4:8] = struct.pack(">I", 41)
    body[8:10] = b"\x01\x02"
    env = make_env(loaded.code, bytes(body), jpool)
    assert run(loaded, host, env) == 0x0201
    view = env.body.view()
    assert struct.unpack_from(">I", view, 4)[0] == 42  # written in place, in the pool
    assert bytes(view[8:10]) == b"\x02\x01"
    view[0] = 2
    assert run(loaded, host, env) == -2  # OUT_OF_RANGE as a status
    view[0] = 5
    data = bytes(view)
    inet = _inet(data)
    assert run(loaded, host, env) == ((zlib.crc32(data) & 0xFFFFFFFF) ^ inet) - (1 << 32) * (
        ((zlib.crc32(data) ^ inet) >> 31) & 1
    )
    env.clear()
    loaded.unload()


def _inet(data: bytes) -> int:
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_host_calls_state_and_send(runtime, classes, host, node, jpool):
    loaded = runtime.load(classes.code("cases/Body"), [], host)
    for expected in (1, 2, 3):
        env = make_env(loaded.code, b"\x03" + bytes(15), jpool)
        assert run(loaded, host, env) == expected
        env.clear()
    env = make_env(loaded.code, b"\x04" + bytes(15), jpool)
    assert run(loaded, host, env) == 0
    env.clear()
    assert node.sent == [("toward", node.address, node.address.raw)]
    loaded.unload()


def test_code_exception_is_a_fault_and_code_keeps_working(runtime, classes, host, jpool):
    loaded = runtime.load(classes.code("cases/Body"), [], host)
    env = make_env(loaded.code, b"\x06" + bytes(7), jpool)
    with pytest.raises(RuntimeFault, match="IllegalStateException: op 6 8") as err:
        run(loaded, host, env)
    assert err.value.reason == "code_error"
    assert not loaded.needs_reset
    env.body.view()[0] = 0
    assert run(loaded, host, env) == 0
    env.clear()


def test_batch_one_crossing(runtime, classes, host, jpool):
    loaded = runtime.load(classes.code("cases/Body"), [], host)
    envs = [make_env(loaded.code, bytes([3 if i % 2 else 6]) + bytes(7), jpool) for i in range(6)]
    out = loaded.accept_batch(envs)
    assert [type(r) for r in out[:2]] == [RuntimeFault, int]
    assert out[1::2] == [1, 2, 3]  # soft state seen per capsule, in order
    for env in envs:
        env.clear()
    loaded.unload()


def test_exports(runtime, classes, host):
    loaded = runtime.load(classes.code("cases/Body", exports=("add",)), [], host)
    assert loaded.call_export("add", 40, 2) == 42
    with pytest.raises(RuntimeFault, match="no export"):
        loaded.call_export("sub", 1, 1)


def test_language_features_run(runtime, classes, host, jpool):
    loaded = runtime.load(classes.code("cases/Fancy"), [], host)
    env = make_env(loaded.code, bytes(20), jpool)
    assert run(loaded, host, env) == 41
    assert run(loaded, host, env) == 42
    env.clear()


def test_same_class_name_in_two_code_objects(runtime, same_name, host, jpool):
    a, b = (s.code("same/Counter") for s in same_name)
    la, lb = runtime.load(a, [], host), runtime.load(b, [], host)
    env_a, env_b = make_env(a, bytes(4), jpool), make_env(b, bytes(4), jpool)
    assert [run(la, host, env_a), run(lb, host, env_b), run(la, host, env_a)] == [100, 200, 101]
    la.reset()  # a fresh loader: static state starts over
    assert run(la, host, env_a) == 100
    env_a.clear()
    env_b.clear()


def _still_forwards(forward, host, jpool):
    env = make_env(forward.code, bytes(32), jpool)
    assert run(forward, host, env) == FWD
    env.clear()


def test_infinite_loop_is_stopped(runtime, classes, host, jpool, forward):
    loaded = runtime.load(classes.code("cases/Spin"), [], host)
    env = make_env(loaded.code, bytes(8), jpool, Budget(time_ms=20.0, memory_bytes=1 << 20))
    with pytest.raises(BudgetExceeded, match="stopped by the watchdog") as err:
        run(loaded, host, env)
    assert err.value.reason == "budget"
    assert loaded.needs_reset
    loaded.reset()
    assert not loaded.needs_reset
    env.clear()
    _still_forwards(forward, host, jpool)


def test_a_finally_that_swallows_the_stop_is_refused(runtime, classes, host):
    with pytest.raises(CodeObjectError, match="could swallow the watchdog's stop") as err:
        runtime.load(classes.code("cases/Absorb"), [], host)
    assert err.value.reason == "absorbs_stop"


def test_stop_absorbed_where_the_checker_cannot_see_still_counts(runtime, classes, host, jpool, forward, monkeypatch):
    """Defence in depth: a stop swallowed out of the checker's sight (in JDK code, say) still
    ends the call as stopped; here the checker is told to let Absorb through."""
    monkeypatch.setattr("pan_jvm.checker.absorbs_stop", lambda *args: None)
    loaded = runtime.load(classes.code("cases/Absorb"), [], host)
    monkeypatch.undo()
    env = make_env(loaded.code, bytes(8), jpool, Budget(time_ms=10.0))
    with pytest.raises(BudgetExceeded) as err:
        run(loaded, host, env)
    assert err.value.reason == "budget"
    env.clear()
    _still_forwards(forward, host, jpool)


def test_allocation_bomb_is_bounded(runtime, classes, host, jpool, forward):
    loaded = runtime.load(classes.code("cases/Bomb"), [], host)
    env = make_env(loaded.code, bytes(8), jpool, Budget(time_ms=2000.0, memory_bytes=4 << 20))
    with pytest.raises(BudgetExceeded) as err:
        run(loaded, host, env)
    assert err.value.reason == "memory"
    loaded.reset()  # drops the hoard held in a static field
    env.clear()
    one = make_env(loaded.code, b"\x01", jpool, Budget(time_ms=2000.0, memory_bytes=4 << 20))
    with pytest.raises(BudgetExceeded) as err:  # time to spare: the failed allocation's GC can be slow under load
        run(loaded, host, one)  # a single array larger than the heap
    assert err.value.reason == "memory"
    one.clear()
    _still_forwards(forward, host, jpool)


def test_deep_recursion_is_contained(runtime, classes, host, jpool, forward):
    loaded = runtime.load(classes.code("cases/Deep"), [], host)
    env = make_env(loaded.code, bytes(8), jpool)
    with pytest.raises(RuntimeFault) as err:
        run(loaded, host, env)
    assert err.value.reason == "stack"
    env.clear()
    _still_forwards(forward, host, jpool)


def test_static_initializer_that_throws(runtime, classes, host, jpool, forward):
    with pytest.raises(CodeObjectError, match="static initializer failed: java.lang.NumberFormatException"):
        runtime.load(classes.code("cases/BadClinit"), [], host)
    _still_forwards(forward, host, jpool)


def test_entry_not_implementing_pancode(runtime, classes, host, jpool, forward):
    with pytest.raises(CodeObjectError, match="does not implement org.pan.pni.PanCode"):
        runtime.load(classes.code("cases/NotCode"), [], host)
    with pytest.raises(CodeObjectError, match="meta.entry_class"):
        runtime.load(classes.code("cases/Fwd").__class__.create("jvm", classes.jar("cases/Fwd")), [], host)
    _still_forwards(forward, host, jpool)


@pytest.mark.parametrize(
    "name",
    [
        "Exit", "Exec", "Reflect", "Files", "Sock", "Threads", "CatchAll", "Native", "Loader", "Waits",
        "FinallyLoop", "Replace", "FinallyCall", "FinallyDivide", "WithResources",
    ],
)
def test_hostile_code_refused_at_load(runtime, classes, host, jpool, forward, name):
    with pytest.raises(CodeObjectError, match=f"class hostile/{name}"):
        runtime.load(classes.code(f"hostile/{name}"), [], host)
    _still_forwards(forward, host, jpool)


def test_handlers_that_pass_the_stop_on_run_and_are_stopped(runtime, classes, host, jpool, forward):
    loaded = runtime.load(classes.code("cases/Finally"), [], host)
    env = make_env(loaded.code, bytes(8), jpool)
    assert run(loaded, host, env) == 3 + 3 * 8 + 100  # finally blocks, a loop, a caught parse error
    env.clear()
    env = make_env(loaded.code, bytes(2000), jpool, Budget(time_ms=20.0))
    with pytest.raises(BudgetExceeded, match="stopped by the watchdog") as err:
        run(loaded, host, env)  # spins inside try/finally: the finally rethrows the stop
    assert err.value.reason == "budget"
    env.clear()
    loaded.reset()
    _still_forwards(forward, host, jpool)


def test_corrupt_payloads_refused(runtime, classes, host):
    code = classes.code("cases/Fwd")
    bad = code.__class__.create("jvm", b"not a jar", meta={"entry_class": "cases.Fwd"})
    with pytest.raises(CodeObjectError, match="not a jar"):
        runtime.load(bad, [], host)


def test_gate_refuses_what_the_checker_would(runtime):
    gate = runtime._engine().cls("gate")
    assert gate.allows("java.lang.String")
    assert gate.allows("org.pan.pni.PNI")
    assert not gate.allows("java.lang.Runtime")
    assert not gate.allows("org.pan.jvm.Lane")


def test_gc_pauses_counted(runtime):
    pauses = runtime.gc_pauses()
    assert isinstance(pauses, int) and pauses >= 0
    assert runtime.statistics()["gc_pauses"] >= pauses
    assert BUDGET.time_ms > 0
    assert Origin.NETWORK == 0
