"""No Java exception escapes a jvm lane call: a ``ThreadDeath`` (the watchdog's stop) or any
other Java exception that reaches the host becomes the call's typed error, the lane is put
back to idle, and later calls of other code objects are not charged for it."""

from __future__ import annotations

import ctypes
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import jpype
import pytest
from conftest import BUDGET, make_env, run

from pan_jvm.code import ENTRY_RETRIES, JvmCode
from pan_jvm.runtime import JvmRuntime
from pan_runtime.errors import BudgetExceeded, CodeObjectError, ConfigError, RuntimeFault
from pan_runtime.net.application import Application
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node
from pan_runtime.node.pni import VERDICT_FORWARD
from pan_runtime.plugin.plugins import default_plugins

FWD = VERDICT_FORWARD


class LaneStandIn:
    """The real lane, except that each method named in ``raising`` raises a Java exception
    the first ``times`` times it is called (what a stop arriving at a call's entry, outside
    the lane's guard, looks like)."""

    def __init__(self, lane: Any, raising: set[str], exc: str, times: int = 1):
        self.lane = lane
        self.raising = dict.fromkeys(raising, times)
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.lane, name)
        if name not in self.raising:
            return real

        def call(*args: Any) -> Any:
            if self.raising[name]:
                self.raising[name] -= 1
                raise jpype.JClass(self.exc)()
            return real(*args)

        return call


def stray_stop() -> None:
    """Leave a ``ThreadDeath`` pending on this thread while it is outside the JVM: another
    thread stops it (a synchronous handshake), so the next call into Java throws it at entry."""
    me = jpype.JClass("java.lang.Thread").currentThread()
    stopper = threading.Thread(target=me.stop)
    stopper.start()
    stopper.join()


@pytest.fixture
def body(runtime: JvmRuntime, classes: Any, host: Any) -> Iterator[JvmCode]:
    loaded = runtime.load(classes.code("cases/Body", exports=("add",)), [], host)
    yield loaded
    loaded.unload()


def _still_forwards(forward: JvmCode, host: Any) -> None:
    env = make_env(forward.code, bytes(32))
    assert run(forward, host, env) == FWD
    env.clear()


# -- (b) every call into the lane: a Java exception that escapes is the call's typed error ------

EXCEPTIONS = [
    pytest.param("java.lang.OutOfMemoryError", BudgetExceeded, "memory", id="oom"),
    pytest.param("java.lang.IllegalStateException", RuntimeFault, "runtime_error", id="other"),
]


def _accept(loaded: JvmCode, host: Any) -> int:
    env = make_env(loaded.code, bytes(8))
    try:
        return run(loaded, host, env)
    finally:
        env.clear()


def _batch(loaded: JvmCode, host: Any) -> int:
    envs = [make_env(loaded.code, bytes(8)) for _ in range(3)]
    out = loaded.accept_batch(envs)
    for env in envs:
        env.clear()
    assert len(out) == 3 and all(r is out[0] for r in out), out  # the whole chunk faulted alike
    raise out[0]


def _new_budget(loaded: JvmCode, host: Any) -> int:
    env = make_env(loaded.code, bytes(8), None, Budget(time_ms=77.0))
    try:
        return run(loaded, host, env)
    finally:
        env.clear()


STOP_RUNS: list[Any] = [
    pytest.param({"accept"}, _accept, 0, id="accept"),
    pytest.param({"setBudget"}, _new_budget, 0, id="set-budget"),
    pytest.param({"init"}, lambda loaded, host: loaded.init(), 0, id="init"),
    pytest.param({"finish"}, lambda loaded, host: loaded.finalize(), 0, id="finalize"),
    pytest.param({"export"}, lambda loaded, host: loaded.call_export("add", 40, 2), 42, id="export"),
]

RUNS: list[Any] = [
    pytest.param({"accept"}, _accept, id="accept"),
    pytest.param({"acceptBatch"}, _batch, id="batch"),
    pytest.param({"setBudget"}, _new_budget, id="set-budget"),
    pytest.param({"init"}, lambda loaded, host: loaded.init(), id="init"),
    pytest.param({"finish"}, lambda loaded, host: loaded.finalize(), id="finalize"),
    pytest.param({"export"}, lambda loaded, host: loaded.call_export("add", 40, 2), id="export"),
]


@pytest.mark.parametrize("exc,error,reason", EXCEPTIONS)
@pytest.mark.parametrize("methods,call", RUNS)
def test_java_exception_escaping_a_run_is_a_typed_fault(
    body: JvmCode,
    forward: JvmCode,
    host: Any,
    methods: set[str],
    call: Callable[..., int],
    exc: str,
    error: type[RuntimeFault],
    reason: str,
) -> None:
    real = body._lane
    stand_in = LaneStandIn(real, methods, exc)
    body._lane = stand_in
    body._jaccept = stand_in.accept
    try:
        with pytest.raises(error) as err:
            call(body, host)
    finally:
        body._lane = real
        body._jaccept = real.accept
    assert type(err.value) is error and err.value.reason == reason
    assert exc in str(err.value) and body.code.short_name in str(err.value)
    assert body.needs_reset
    body.reset()
    assert body.call_export("add", 40, 2) == 42  # the code object keeps serving
    _still_forwards(forward, host)  # and so does the lane for others


@pytest.mark.parametrize("methods,call,result", [p for p in STOP_RUNS])
def test_a_stop_at_a_call_entry_is_collected_and_the_call_made_again(
    body: JvmCode, forward: JvmCode, host: Any, methods: set[str], call: Callable[..., int], result: int
) -> None:
    """The code never ran: the call is simply made again, and nobody is charged."""
    real = body._lane
    stand_in = LaneStandIn(real, methods, "java.lang.ThreadDeath")
    body._lane = stand_in
    body._jaccept = stand_in.accept
    try:
        assert call(body, host) == result
    finally:
        body._lane = real
        body._jaccept = real.accept
    assert not stand_in.raising[next(iter(methods))]  # the stop did arrive, and was collected
    assert not body.needs_reset
    assert body.call_export("add", 40, 2) == 42
    _still_forwards(forward, host)


@pytest.mark.parametrize("methods,call,result", [p for p in STOP_RUNS])
def test_stops_at_every_entry_end_as_a_runtime_error(
    body: JvmCode, forward: JvmCode, host: Any, methods: set[str], call: Callable[..., int], result: int
) -> None:
    """A stop at the entry of every retry too: typed, not a loop, charged to the budget of no one."""
    real = body._lane
    stand_in = LaneStandIn(real, methods, "java.lang.ThreadDeath", times=1000)
    body._lane = stand_in
    body._jaccept = stand_in.accept
    try:
        with pytest.raises(RuntimeFault) as err:
            call(body, host)
    finally:
        body._lane = real
        body._jaccept = real.accept
    assert type(err.value) is RuntimeFault and err.value.reason == "runtime_error"
    assert "not issue for this call" in str(err.value)
    assert stand_in.raising[next(iter(methods))] == 1000 - ENTRY_RETRIES - 1
    body.reset()
    assert body.call_export("add", 40, 2) == 42
    _still_forwards(forward, host)


def test_a_stop_in_a_batch_is_never_made_again(body: JvmCode, forward: JvmCode, host: Any) -> None:
    """Capsules of a batch may have run before the stop: the chunk faults, typed, once."""
    real = body._lane
    stand_in = LaneStandIn(real, {"acceptBatch"}, "java.lang.ThreadDeath")
    body._lane = stand_in
    try:
        with pytest.raises(RuntimeFault) as err:
            _batch(body, host)
    finally:
        body._lane = real
    assert type(err.value) is RuntimeFault and err.value.reason == "runtime_error"
    body.reset()
    _still_forwards(forward, host)


@pytest.mark.parametrize(
    "exc,match",
    [
        pytest.param("java.lang.IllegalStateException", "IllegalStateException escaped the lane", id="other"),
    ],
)
def test_java_exception_escaping_a_load_is_a_code_object_error(
    runtime: JvmRuntime, classes: Any, host: Any, forward: JvmCode, monkeypatch: Any, exc: str, match: str
) -> None:
    monkeypatch.setattr(runtime, "_lane", LaneStandIn(runtime._lane, {"instantiate"}, exc))
    code = classes.code("cases/Fancy")
    with pytest.raises(CodeObjectError, match=f"{code.short_name}: loading failed: .*{match}"):
        runtime.load(code, [], host)
    monkeypatch.undo()
    loaded = runtime.load(code, [], host)  # the same code object loads once nothing interferes
    env = make_env(loaded.code, bytes(20))
    assert run(loaded, host, env) == 41
    env.clear()
    loaded.unload()
    _still_forwards(forward, host)


def test_a_stray_stop_at_any_call_entry_is_collected_and_charged_to_no_one(
    runtime: JvmRuntime, classes: Any, host: Any, forward: JvmCode
) -> None:
    """A real ThreadDeath, pending before a call enters the JVM: it is thrown at the entry,
    before the code runs, so loading and running simply happen again."""
    code = classes.code("cases/Fancy")
    stray_stop()
    loaded = runtime.load(code, [], host)
    env = make_env(loaded.code, bytes(20))
    stray_stop()
    assert run(loaded, host, env) == 41
    assert run(loaded, host, env) == 42  # the stop never reached the code: its state is intact
    assert not loaded.needs_reset
    env.clear()
    loaded.unload()
    _still_forwards(forward, host)


def test_the_node_charges_no_one_for_a_stop_at_entry_and_counts_one_in_a_batch(classes: Any) -> None:
    code = classes.code("cases/Fwd")
    with Node(1, plugins=default_plugins()) as n:
        rt = n.runtime("jvm")
        real = rt.lane
        rt._lane = LaneStandIn(real, {"instantiate"}, "java.lang.ThreadDeath")
        n.install(code)  # loaded again after the stop at the entry
        rt._lane = real
        loaded = n.cache.peek(code.name).loaded
        stand_in = LaneStandIn(real, {"accept"}, "java.lang.ThreadDeath")
        loaded._lane, loaded._jaccept = stand_in, stand_in.accept
        app = Application(n)
        app.send(code, b"one")
        n.process()
        stats = n.cache.peek(code.name).stats
        assert stats.errors == 0 and stats.capsules_in == 1 and not stand_in.raising["accept"]
        loaded._lane = LaneStandIn(real, {"acceptBatch"}, "java.lang.ThreadDeath")
        n.config.batch = 8
        for body in (b"two", b"three"):
            app.send(code, body)
        n.process()
        assert stats.drops["runtime_error"] == 2 and stats.errors == 2
        loaded._lane, loaded._jaccept = real, real.accept
        app.send(code, b"four")
        n.process()
        assert stats.capsules_in == 4 and stats.errors == 2


# -- (a) the watchdog's stop never outlives the call it was issued for -------------------------


@pytest.fixture
def quick(classes: Any, host: Any) -> Iterator[tuple[JvmRuntime, JvmCode]]:
    """A runtime whose load budget is 2 ms, with a forwarding code object on its own lane."""
    rt = JvmRuntime({"watchdog_tick_ms": 1, "load_budget_ms": 2})
    budget = rt.load_budget
    rt.load_budget = (500_000_000, budget[1])  # the forwarder itself loads without a race
    fwd = rt.load(classes.code("cases/Fwd"), [], host)
    rt.load_budget = budget
    yield rt, fwd
    rt.close()


def test_loads_stopped_at_the_load_budget_are_typed_and_charge_no_one_else(
    quick: tuple[JvmRuntime, JvmCode], classes: Any, host: Any, forward: JvmCode
) -> None:
    rt, own_fwd = quick
    for _ in range(25):
        with pytest.raises(CodeObjectError, match="stopped by the watchdog after 2.0 ms"):
            rt.load(classes.code("cases/SlowInit"), [], host)
        _still_forwards(own_fwd, host)  # the same lane's next call
        _still_forwards(forward, host)  # another lane on the same thread


def test_loads_ending_around_the_deadline_leave_no_stop_behind(
    quick: tuple[JvmRuntime, JvmCode], classes: Any, host: Any, forward: JvmCode
) -> None:
    rt, own_fwd = quick
    for _ in range(100):
        try:
            rt.load(classes.code("cases/NearDeadline"), [], host).unload()
        except CodeObjectError as exc:
            assert "stopped by the watchdog" in str(exc)
        _still_forwards(own_fwd, host)
        _still_forwards(forward, host)


@pytest.mark.parametrize("value", [0, -1, float("inf"), "500", True])
def test_load_budget_must_be_a_positive_number(value: Any) -> None:
    with pytest.raises(ConfigError, match="load_budget_ms"):
        JvmRuntime({"load_budget_ms": value})


# -- the fast path's C entry (pan_jvm._fast): failures around the code are the host's ----------

#: pan_fast_run_fn, called with the GIL held as the fast path does
RUN = ctypes.PYFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


@pytest.fixture
def fast_forward(forward: JvmCode, node: Any, jpool: Any) -> Iterator[tuple[JvmCode, Callable[[int], int]]]:
    """``forward`` with its fast entry set up over ``jpool``; the callable runs it on a pool body."""
    node.pool = jpool
    node.config = types.SimpleNamespace(budget=BUDGET)
    entry = forward.fast_entry()
    assert entry is not None, "pan_jvm._fast is not built or cannot reach the JVM"
    fn, state = entry
    seg = jpool.allocate(32)
    ctx = (ctypes.c_uint8 * 40)()  # a pan_fast_ctx

    def go(address: int) -> int:
        return RUN(fn)(state, address, 32, ctypes.addressof(ctx))

    yield forward, lambda shift: go(seg.address + shift)
    seg.release()


@pytest.mark.parametrize(
    "how,message,reset",
    [
        pytest.param("outside", "body outside the lane's buffer", False, id="outside-buffer"),
        pytest.param("java", "Lane.fastAccept threw", True, id="java-exception"),
    ],
)
def test_a_fast_run_failing_around_the_code_is_a_runtime_error(
    fast_forward: tuple[JvmCode, Callable[[int], int]], host: Any, how: str, message: str, reset: bool
) -> None:
    loaded, go = fast_forward
    assert go(0) == FWD
    loaded.after_fast_run()
    entry = loaded._fast_entry
    if how == "outside":
        r = go(-(1 << 30))  # well below the pool's mapping
    else:
        code_id, entry.code = entry.code, 10_000  # no such code object on the lane: fastAccept throws
        try:
            r = go(0)
        finally:
            entry.code = code_id
    assert r == -(2**31)
    with pytest.raises(RuntimeFault, match=message) as err:
        loaded.after_fast_run()
    assert type(err.value) is RuntimeFault and err.value.reason == "runtime_error"
    assert loaded.needs_reset is reset
    if reset:
        loaded.reset()
        assert loaded.fast_entry() is not None  # the node asks again after a reset (a new generation)
    assert go(0) == FWD  # the next fast run is the code's own again
    loaded.after_fast_run()
    _still_forwards(loaded, host)
