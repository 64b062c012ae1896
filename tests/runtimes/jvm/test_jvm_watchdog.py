"""The jvm watchdog under load: its stops stay inside the calls they were issued for (never
inside a host call, never after the call, never charged to other code), and it parks while
no call runs."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import make_env, run

from pan_jvm.runtime import JvmRuntime
from pan_runtime.cli.protocols import reference_code
from pan_runtime.errors import BudgetExceeded
from pan_runtime.node.env import Budget

#: a node in a child process: correct code interleaved with code the watchdog stops (in the
#: code, inside host calls, near the end of the call), capsules alone and in batches, and the
#: portmapper's lookup after each; prints what every code object counted and, for each
#: delivery lost to the portmapper, the drop counted just before it (its cause).
STRESS = textwrap.dedent(
    """
    import collections, json, sys
    from pathlib import Path
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.errors import PanError
    from pan_runtime.net.application import Application
    from pan_runtime.node.config import NodeConfig
    from pan_runtime.node.env import Budget
    from pan_runtime.node.events import CapsuleDropped
    from pan_runtime.node.node import Node
    from pan_runtime.plugin.plugins import default_plugins

    where, rounds = Path(sys.argv[1]), int(sys.argv[2])
    codes = {p.stem: CodeObject.read(p) for p in sorted(where.glob("*.pco"))}
    config = NodeConfig(
        budget=Budget(time_ms=10.0, memory_bytes=8 << 20),
        batch=8,
        breaker_threshold=1 << 30,  # never quarantined: every capsule runs
        runtime_options={"jvm": {"watchdog_tick_ms": 1}},
    )
    raw = collections.Counter()
    names = {c.hex_name: n for n, c in codes.items()}
    last, lost_after = [""], collections.Counter()

    def seen(event):
        if isinstance(event, CapsuleDropped):
            if event.reason == "portmap_lost":
                lost_after[last[0]] += 1
            last[0] = f"{names.get(event.code, event.code)} {event.reason}"

    with Node(1, config=config, plugins=default_plugins()) as node:
        node.on_event = seen
        app = Application(node)
        for name, code in codes.items():
            app.install(code, pin=True)
        node.use_portmapper(codes["Portmapper"])
        for attempt in range(20):  # the portmapper has the stress's 10 ms budget too: on a loaded
            try:                   # machine a bind can be stopped; the test is about what follows
                app.bind(7)
                break
            except PanError:
                if attempt == 19:
                    raise
        node.process()
        jitter = node.cache.peek(codes["Jitter"].name)
        plan = ["Jitter", "Deliver", "Spin", "Deliver", "Jitter", "Jitter", "Jitter", "Deliver", "Fwd"]
        for i in range(rounds):
            for name in plan:
                app.send(codes[name], bytes(80 if name == "Jitter" else 16))
                if name != "Jitter":  # three Jitter capsules in a row run as one batch
                    try:
                        node.process()
                    except BaseException as exc:  # a Java exception that escaped the node
                        raw[type(exc).__name__] += 1
                        node.queue.items.clear()
            try:
                node.call_export(jitter, "go", 0, 0)
            except PanError:
                pass  # the export's own fault: counted by the caller, not the node
            except BaseException as exc:
                raw[type(exc).__name__] += 1
        app.deliveries()
        stats = {n: node.cache.peek(c.name).stats.as_dict() for n, c in codes.items()}
    print(json.dumps({"stats": stats, "raw": dict(raw), "lost_after": dict(lost_after)}))
    """
)


@pytest.fixture(scope="module")
def stress_codes(classes: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("jvm-stress")
    for name in ("Fwd", "Deliver", "Spin"):
        classes.code(f"cases/{name}").write(where / f"{name}.pco")
    classes.code("cases/Jitter", exports=("go",)).write(where / "Jitter.pco")
    reference_code("jvm", "portmapper").write(where / "Portmapper.pco")
    return where


def test_stops_stay_in_their_calls_under_load(stress_codes: Path) -> None:
    rounds = 100
    proc = subprocess.run(
        [sys.executable, "-c", STRESS, str(stress_codes), str(rounds)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert proc.returncode == 0, f"the node process died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.splitlines()[-1])
    stats, raw, lost_after = report["stats"], report["raw"], report["lost_after"]
    assert raw == {}, f"Java exceptions escaped the node: {raw}"
    # correct code is never charged for a stop (a budget fault of its own, on a machine too
    # loaded to run it in 10 ms, would be its own; nothing else is)
    for name in ("Fwd", "Deliver", "Portmapper"):
        # (portmap_lost: the portmapper's lookup or binding again for a delivery was stopped for
        # the portmapper's budget, the same cause, counted on it)
        assert set(stats[name]["drops"]) <= {"budget", "no_port", "no_route", "portmap_lost"}, (name, stats[name])
        assert stats[name]["errors"] == stats[name]["drops"].get("budget", 0), (name, stats[name])
    deliver = stats["Deliver"]
    lost = deliver["drops"].get("portmap_lost", 0)
    # each lost delivery comes right after the portmapper's own budget fault that lost it (its
    # lookup's or its binding's; a lookup's fault once went uncounted)
    assert lost_after == ({"Portmapper budget": lost} if lost else {}), (lost_after, deliver, stats["Portmapper"])
    assert deliver["delivered"] + deliver["dropped"] == 3 * rounds
    assert deliver["delivered"] > rounds  # lookups answered (a loaded machine may make some run past 10 ms)
    spin = stats["Spin"]
    assert spin["errors"] == rounds and spin["drops"] == {"budget": rounds}
    jitter = stats["Jitter"]  # stopped or not, only ever for its own budget
    assert set(jitter["drops"]) <= {"budget", "code_drop"} and jitter["capsules_in"] == 4 * rounds, jitter
    assert jitter["drops"]["budget"] > 0


@pytest.fixture
def idle_runtime(classes: Any, host: Any) -> Any:
    rt = JvmRuntime({"watchdog_tick_ms": 1})
    yield rt
    rt.close()


def _parks(rt: JvmRuntime) -> int:
    return int(rt._engine().cls("Watchdog").parks())


def _wait_parked(rt: JvmRuntime) -> None:
    watchdog = rt._engine().cls("Watchdog")
    deadline = time.monotonic() + 30  # a hang guard only
    while not watchdog.parked():
        assert time.monotonic() < deadline, "the watchdog never parked while no call ran"
        time.sleep(0.01)


def test_the_watchdog_parks_while_no_call_runs_and_still_stops_loops(
    idle_runtime: JvmRuntime, classes: Any, host: Any
) -> None:
    rt = idle_runtime
    spin = rt.load(classes.code("cases/Spin"), [], host)
    fwd = rt.load(classes.code("cases/Fwd"), [], host)
    for _ in range(3):
        _wait_parked(rt)
        parks = _parks(rt)
        env = make_env(spin.code, bytes(8), None, Budget(time_ms=20.0))
        with pytest.raises(BudgetExceeded, match="stopped by the watchdog") as err:
            run(spin, host, env)  # entering woke the watchdog, which stopped the loop
        assert err.value.reason == "budget"
        env.clear()
        spin.reset()
        _wait_parked(rt)
        assert _parks(rt) > parks  # it parked again once the node was idle
        env = make_env(fwd.code, bytes(8))
        assert run(fwd, host, env) >= 0  # short calls while parked wake it and run as usual
        env.clear()


#: pan_fast_run_fn, called with the GIL held as the fast path does
RUN = ctypes.PYFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


def test_a_fast_run_wakes_the_parked_watchdog_and_is_stopped(
    idle_runtime: JvmRuntime, classes: Any, host: Any, node: Any, jpool: Any
) -> None:
    """The C entry of the UDP fast path (``pan_jvm._fast``) enters the lane without Python;
    entering is what wakes the watchdog."""
    rt = idle_runtime
    node.pool = jpool
    node.config = types.SimpleNamespace(budget=Budget(time_ms=10.0, memory_bytes=8 << 20))
    spin = rt.load(classes.code("cases/Spin"), [], host)
    entry = spin.fast_entry()
    assert entry is not None, "pan_jvm._fast is not built or cannot reach the JVM"
    fn, state = entry
    seg = jpool.allocate(16)
    ctx = (ctypes.c_uint8 * 40)()  # a pan_fast_ctx
    _wait_parked(rt)
    watchdog = rt._engine().cls("Watchdog")
    rescued: list[bool] = []

    def rescue() -> None:
        rescued.append(True)
        watchdog.wake()

    guard = threading.Timer(30.0, rescue)  # a hang guard only
    guard.start()
    try:
        r = RUN(fn)(state, seg.address, 16, ctypes.addressof(ctx))
    finally:
        guard.cancel()
        seg.release()
    assert not rescued, "the fast run ran on with the watchdog parked"
    assert r == -(2**31)
    with pytest.raises(BudgetExceeded, match="stopped by the watchdog"):
        spin.after_fast_run()


def test_a_stop_is_held_back_only_inside_a_host_class_initializer(runtime: JvmRuntime) -> None:
    """A stop landing in a JDK class's static initializer would leave that class unusable for
    the JVM's life ("Could not initialize class jdk.internal.math.FDBigInteger", seen under
    load); the watchdog holds it back there, never in code's own initializers."""
    import jpype

    watchdog = runtime._engine().cls("Watchdog")
    frame_cls = jpype.JClass("java.lang.StackTraceElement")

    def stack(*frames: tuple[str | None, str | None, str, str]) -> Any:
        return jpype.JArray(frame_cls)([frame_cls(ld, mod, None, cls, m, None, -1) for ld, mod, cls, m in frames])

    accept = ("pan-code-0123abcd", None, "Capsule", "accept")
    assert watchdog.inHostClassInit(stack((None, "java.base", "jdk.internal.math.FDBigInteger", "<clinit>"), accept))
    assert watchdog.inHostClassInit(stack(("app", None, "org.pan.pni.PanCode", "<clinit>"), accept))
    assert not watchdog.inHostClassInit(stack(("pan-code-0123abcd", None, "Capsule$Table", "<clinit>"), accept))
    assert not watchdog.inHostClassInit(stack((None, "java.base", "java.lang.Double", "toString"), accept))


def test_the_jdk_helpers_code_reaches_are_initialized_when_the_jvm_starts(tmp_path: Path) -> None:
    """In a fresh JVM, before any code runs, the allowed JDK classes and the helpers they use
    lazily are initialized (the JVM's own class+init log says so)."""
    log = tmp_path / "init.log"
    script = textwrap.dedent(
        f"""
        from pan_jvm.runtime import JvmRuntime
        rt = JvmRuntime({{"jvm_flags": ["-Xlog:class+init=info:file={log}"]}})
        rt._engine()
        print("started")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "started" in proc.stdout, proc.stderr
    initialized = log.read_text()
    for name in ("jdk/internal/math/FDBigInteger", "jdk/internal/math/FloatingDecimal", "java/lang/StrictMath",
                 "java/util/ArrayDeque"):
        assert f"Initializing '{name}'" in initialized, name
