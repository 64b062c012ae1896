"""Process isolation (``pan_runtime.isolation.supervisor``): hostile code in a worker costs
its capsule and its worker, never the node.

Each case runs a code object in ``process`` isolation on the first node of a three-node line
(where its capsule enters) and then checks three outcomes: the capsule is counted with the
reason of the worker's end, the node still answers pings sent through it (the native reference
ping and portmapper; in workers of their own when the runtime under test is native), and the
hostile code object's worker is back (a harmless capsule of the same code object runs to
DONE). Progress and counts only: no wall-clock deadline.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from node_lines import node_line
from worker_procs import kill_and_wait
from worker_procs import policies as _policies

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import FaultReason
from pan_runtime.isolation import priority
from pan_runtime.isolation.mechanism import process_unavailable
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import PingHdr

SOURCES = Path(__file__).parent / "isolation_sources"
SOURCE = {"native": "hostile.c", "restricted_py": "hostile.py", "jvm": "Capsule.java"}
PORT = 7

pytestmark = pytest.mark.skipif(process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}")


def _build(runtime: str) -> CodeObject:
    plugins = default_plugins()
    src = SOURCES / SOURCE[runtime]
    builder = plugins.builders.find(runtime, src.suffix)
    return builder.build(BuildRequest([src], runtime, [], [], f"hostile-{runtime}"))


def _line(runtime: str) -> Network:
    """n1 (``runtime`` in process isolation) - n2 - n3, with the native portmapper on each."""
    contained = NodeConfig(isolation={runtime: "process"}, budget=Budget(time_ms=200), breaker_threshold=1000)
    plain = NodeConfig(budget=Budget(time_ms=200))
    return node_line(contained, plain, plain)


def _pings_answered(net: Network, count: int = 3) -> int:
    a, _, c = net.nodes
    ping = reference_code("native", "ping", net.plugins)
    net.install(ping)
    app = Application(a)
    app.bind(PORT)
    for seq in range(count):
        app.send(ping, PingHdr(dest=c.address.raw, port=PORT, phase=0, seq=seq).pack() + bytes(16))
    net.run()
    return sum(1 for d in app.deliveries() if PingHdr.unpack(d.data).phase == 1)


def _run_hostile(net: Network, code: CodeObject, op: int) -> None:
    """Send one capsule asking for ``op`` from the first node to the last: it runs first at the
    sender's node."""
    a = net.nodes[0]
    Application(a).send(code, bytes([op]) + bytes(31))
    net.run()


CRASHES = [
    ("native", 1, FaultReason.CRASH),  # segfault
    ("native", 2, FaultReason.ABORT),  # abort(): SIGABRT to itself
    ("native", 3, FaultReason.CRASH),  # exit_group(7), straight to the kernel
    ("native", 4, FaultReason.KILLED_BUDGET),  # an endless loop, no budget of its own
    ("restricted_py", 9, {FaultReason.MEMORY, FaultReason.MEMORY_BUDGET, FaultReason.KILLED_MEMORY}),
    ("jvm", 9, {FaultReason.MEMORY, FaultReason.KILLED_MEMORY}),
]


@pytest.mark.parametrize(("runtime", "op", "reason"), CRASHES, ids=[f"{r}-{o}" for r, o, _ in CRASHES])
def test_a_hostile_capsule_costs_its_capsule_and_worker_only(runtime: str, op: int, reason):
    code = _build(runtime)
    with _line(runtime) as net:
        net.install(code)
        a = net.nodes[0]
        entry = a.cache.peek(code.name)
        assert entry is not None
        _run_hostile(net, code, op)
        drops = {k: v for k, v in entry.stats.drops.items() if v}
        wanted = reason if isinstance(reason, set) else {reason}
        assert sum(drops.get(r, 0) for r in wanted) == 1, drops
        assert _pings_answered(net) == 3
        before = entry.stats.done
        used = a.runtime(runtime).statistics()["spares_used"]
        _run_hostile(net, code, 0)  # the worker is back: a harmless capsule runs to DONE
        assert entry.stats.done == before + 1, entry.stats.as_dict()
        stats = a.runtime(runtime).statistics()
        assert stats["workers"] >= 1
        if reason in (FaultReason.CRASH, FaultReason.ABORT, FaultReason.KILLED_BUDGET):
            assert stats["worker_restarts"] == 1 and stats[f"worker_{reason.value}"] == 1, stats
            # the restart took the code object's warm standby, not a spare
            assert stats["worker_warm_restarts"] == 1 and stats["spares_used"] == used, stats
        if reason is FaultReason.KILLED_BUDGET:
            assert stats["worker_kills"] == 1
        shown = a.statistics()["workers"][runtime]
        assert shown["workers"] >= 1 and shown["restarts"] == stats["worker_restarts"]
        assert f"workers: {runtime}: " in a.format_statistics()
        from pan_runtime.net.daemon import prometheus_text

        metrics = prometheus_text({**a.statistics(), "refused": {}})
        assert f'pan_worker_restarts_total{{runtime="{runtime}"}} {stats["worker_restarts"]}' in metrics


SYSCALLS = {5: "fork", 6: "socket", 7: "execve", 8: "open", 10: "mmap-2GB"}


@pytest.mark.parametrize("op", sorted(SYSCALLS), ids=list(SYSCALLS.values()))
def test_the_filter_and_the_memory_limit_refuse_what_a_worker_must_not_do(op: int):
    code = _build("native")
    with _line("native") as net:
        net.install(code)
        entry = net.nodes[0].cache.peek(code.name)
        assert entry is not None
        _run_hostile(net, code, op)
        assert entry.stats.done == 1 and entry.stats.dropped == 0, entry.stats.as_dict()
        assert net.nodes[0].runtime("native").statistics()["worker_deaths"] == 0


def test_the_same_call_is_allowed_in_process_so_the_filter_test_can_fail(tmp_path: Path):
    """The syscall probe itself works: in a plain child process (no filter), open succeeds."""
    import subprocess
    import sys

    probe = "import os; fd = os.open('/etc/passwd', os.O_RDONLY); print(fd >= 0)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_trust_rule_can_ask_for_process_isolation():
    """``network.none = "process"``: unsigned native code from the network is refused in the
    node's process and loads when native runs in workers."""
    from pan_runtime.errors import TrustError
    from pan_runtime.node.node import Node
    from pan_runtime.node.trust import CodeOrigin, TrustPolicy

    code = reference_code("native", "forward", default_plugins())
    trust = TrustPolicy.from_config({"network.none": "process"})
    with Node(1, trust=trust) as n, pytest.raises(TrustError, match="network.none = process"):
        n.install(code, origin=CodeOrigin.NETWORK)
    with Node(1, trust=trust, config=NodeConfig(isolation={"native": "process"})) as n:
        n.install(code, origin=CodeOrigin.NETWORK)
        assert n.runtime("native").statistics()["workers"] == 1


def test_one_worker_per_code_object_up_to_the_limit():
    from pan_runtime.errors import CodeObjectError
    from pan_runtime.node.node import Node

    plugins = default_plugins()
    fwd, ping = reference_code("native", "forward", plugins), reference_code("native", "ping", plugins)
    with Node(1, config=NodeConfig(isolation={"native": "process"}, workers=1)) as n:
        n.install(fwd)
        with pytest.raises(CodeObjectError) as err:
            n.install(ping)
        assert err.value.reason is FaultReason.TOO_MANY_WORKERS
        n.uninstall(fwd)
        n.install(ping)  # the worker of the code object unloaded is gone
        assert n.runtime("native").statistics()["workers"] == 1


def test_a_jvm_finally_that_swallows_every_stop_costs_its_worker_only(tmp_path: Path):
    """``for (;;) { try { ... } finally { continue; } }`` absorbs the watchdog's stop for ever: in
    the node's process the jvm refuses it at load; in a worker it loads, and the node kills the
    worker past the budget."""
    import subprocess

    from pan_jvm.builder import pack_jar
    from pan_jvm.jvm import compiled_classes, find_javac
    from pan_runtime.errors import CodeObjectError
    from pan_runtime.node.node import Node

    src = Path(__file__).parent / "runtimes" / "jvm" / "java" / "hostile" / "FinallyLoop.java"
    out = tmp_path / "classes"
    cmd = [find_javac(), "--release", "17", "-nowarn", "-Xlint:none", "-cp", str(compiled_classes()), "-d", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    classes = {str(p.relative_to(out).with_suffix("")): p.read_bytes() for p in out.rglob("*.class")}
    code = CodeObject.create("jvm", pack_jar(classes), meta={"entry_class": "hostile.FinallyLoop", "label": "finally-loop"})
    with Node(1) as n, pytest.raises(CodeObjectError) as err:
        n.install(code)
    assert err.value.reason is FaultReason.ABSORBS_STOP
    with _line("jvm") as net:
        net.install(code, [net.nodes[0]])
        a = net.nodes[0]
        entry = a.cache.peek(code.name)
        assert entry is not None
        _run_hostile(net, code, 1)
        assert entry.stats.drops[FaultReason.KILLED_BUDGET] == 1, entry.stats.as_dict()
        assert _pings_answered(net) == 3
        stats = a.runtime("jvm").statistics()
        assert stats["worker_kills"] == 1


# -- warm standbys: a restart takes a worker that has its code linked and is confined -----

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]


def _forward_node(runtime: str, **limits) -> tuple[Node, CodeObject, Application]:
    """A node running ``runtime``'s reference forward in a worker, and an application bound
    to the port its capsules are forwarded to (the node's own address)."""
    plugins = default_plugins()
    code = reference_code(runtime, "forward", plugins)
    node = Node(1, plugins=plugins, config=NodeConfig(isolation={runtime: "process"}, breaker_threshold=1000, **limits))
    node.install(code)
    pm = reference_code("restricted_py" if runtime == "native" else "native", "portmapper", plugins)  # in the node's process
    node.install(pm, pin=True)
    node.use_portmapper(pm)
    app = Application(node)
    app.bind(PORT)
    node.process()
    return node, code, app


def _forward(node, code: CodeObject, app: Application) -> int:
    """Send one capsule through the forward code; the deliveries it made (0 or 1)."""
    app.send(code, node.address.raw + PORT.to_bytes(2, "big") + b"hello")
    node.process()
    return len(app.deliveries())


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_killed_worker_is_back_from_its_warm_standby(runtime: str):
    """SIGKILL the worker: the capsule that finds it dead is a fault, the next one runs in the
    code object's standby, which was confined before that (seccomp on, no new privileges)."""
    import time

    node, code, app = _forward_node(runtime)
    with node:
        entry = node.cache.peek(code.name)
        assert entry is not None
        wc = entry.loaded
        rt = node.runtime(runtime)
        assert _forward(node, code, app) == 1
        assert rt.statistics()["standbys"] == 1
        standby = wc.standby.proc.proc.pid
        for _ in range(6000):  # a hang guard: the standby links its code, then confines itself
            if _status(standby).get("Seccomp") == "2":
                break
            time.sleep(0.01)
        status = _status(standby)
        assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1", status
        old = wc.pid
        kill_and_wait(old)
        assert _forward(node, code, app) == 0  # the node finds its worker dead
        assert entry.stats.drops[FaultReason.KILLED_MEMORY] == 1, entry.stats.as_dict()
        assert _forward(node, code, app) == 1  # back: the capsule ran and was delivered
        assert wc.pid == standby != old
        stats = rt.statistics()
        assert stats["worker_restarts"] == 1 and stats["worker_warm_restarts"] == 1, stats
        assert stats["standbys"] == 1 and wc.standby.proc.proc.pid not in (standby, old), stats
        shown = node.statistics()["workers"][runtime]
        assert shown["warm_restarts"] == 1 and shown["standbys"] == 1, shown
        assert "1 standby, 1 warm restarts" in node.format_statistics()


def test_a_standby_serves_only_its_own_code_object_and_standbys_are_bounded():
    """Two code objects, one standby allowed: the first loaded has it; the second's restart
    takes a spare (not the other's standby); after that death the second comes first."""

    plugins = default_plugins()
    fwd, ping = reference_code("native", "forward", plugins), reference_code("native", "ping", plugins)
    with Node(1, plugins=plugins, config=NodeConfig(isolation={"native": "process"}, worker_standbys=1)) as node:
        node.install(fwd)
        node.install(ping)
        rt = node.runtime("native")
        a, b = (node.cache.peek(c.name).loaded for c in (fwd, ping))  # type: ignore[union-attr]
        assert a.standby is not None and b.standby is None
        assert rt.statistics()["standbys"] == 1
        a_standby = a.standby.proc.proc.pid
        used = rt.statistics()["spares_used"]
        kill_and_wait(b.pid)
        app = Application(node)
        app.send(ping, bytes(64))
        node.process()  # the death is found
        app.send(ping, bytes(64))
        node.process()  # the restart
        stats = rt.statistics()
        assert b.pid is not None and b.pid != a_standby
        assert stats["worker_warm_restarts"] == 0 and stats["spares_used"] == used + 1, stats
        # the code object that died now ranks first: the standby moved to it
        assert b.standby is not None and a.standby is None and stats["standbys"] == 1


def test_no_standbys_when_the_limit_is_zero():
    node, code, app = _forward_node("native", worker_standbys=0)
    with node:
        rt = node.runtime("native")
        assert rt.statistics()["standbys"] == 0
        kill_and_wait(node.cache.peek(code.name).loaded.pid)  # type: ignore[union-attr]
        _forward(node, code, app)
        assert _forward(node, code, app) == 1
        stats = rt.statistics()
        assert stats["worker_restarts"] == 1 and stats["worker_warm_restarts"] == 0, stats


def test_a_jvm_spare_has_booted_its_jvm_before_any_code_object_needs_it():
    """A spare makes its runtime's engine when it starts (``Runtime.start``): a jvm spare maps
    the JVM before a restart takes it, so that restart only loads classes."""
    import time

    node, code, app = _forward_node("jvm", worker_standbys=0)
    with node:
        rt = node.runtime("jvm")
        (spare,) = rt.spares
        pid = spare.proc.pid
        for _ in range(6000):  # a hang guard: the spare boots its JVM, then waits
            with open(f"/proc/{pid}/maps") as f:
                if "libjvm.so" in f.read():
                    break
            time.sleep(0.01)
        else:
            pytest.fail("the spare did not boot its JVM")
        kill_and_wait(node.cache.peek(code.name).loaded.pid)  # type: ignore[union-attr]
        _forward(node, code, app)
        assert _forward(node, code, app) == 1
        stats = rt.statistics()
        assert stats["spares_used"] >= 1 and stats["worker_warm_restarts"] == 0, stats


def test_a_code_object_that_keeps_dying_still_backs_off_with_a_standby():
    """The first death restarts at once (from the standby); the second in a row waits for
    ``worker_backoff_ms``, and capsules meanwhile are dropped as ``worker_down``."""
    code = _build("native")
    with _line("native") as net:
        net.nodes[0].config.worker_backoff_ms = 5_000  # the back-off outlasts the test's capsules
        net.install(code)
        a = net.nodes[0]
        entry = a.cache.peek(code.name)
        assert entry is not None
        _run_hostile(net, code, 1)  # a segfault: restarted at once on the next capsule
        _run_hostile(net, code, 1)  # it ran in the standby, and crashed again
        _run_hostile(net, code, 0)  # within the back-off: dropped, no restart
        drops = entry.stats.drops
        assert drops[FaultReason.CRASH] == 2 and drops[FaultReason.WORKER_DOWN] == 1, entry.stats.as_dict()
        stats = a.runtime("native").statistics()
        assert stats["worker_restarts"] == 1 and stats["worker_warm_restarts"] == 1, stats


# -- init: the code's, so bounded by the node, and a restart's never waited for --------------

INIT_SOURCES = {
    "spin": {"native": "initspin.c", "wasm": "initspin.c", "restricted_py": "initspin.py", "jvm": "InitSpin.java"},
    "loop": {"native": "initloop.c", "wasm": "initloop.c", "restricted_py": "initloop.py", "jvm": "InitLoop.java"},
}


def _init_code(kind: str, runtime: str) -> CodeObject:
    src = SOURCES / INIT_SOURCES[kind][runtime]
    builder = default_plugins().builders.find(runtime, src.suffix)
    return builder.build(BuildRequest([src], runtime, [], [], f"init{kind}-{runtime}"))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_init_that_never_returns_costs_its_installation_only(runtime: str):
    """``init`` runs in the worker under ``worker_init_ms``, not under the worker's start time
    (here ten minutes): past it the worker is killed (native has no budget of its own; the
    others may stop it first with theirs) and the install is refused with the reason."""
    import time

    from pan_runtime.errors import CodeObjectError
    from pan_runtime.node.node import Node

    code = _init_code("spin", runtime)
    config = NodeConfig(isolation={runtime: "process"}, worker_start_ms=600_000, worker_init_ms=300, breaker_threshold=1000)
    node, fwd, app = _forward_node(runtime, worker_start_ms=600_000, worker_init_ms=300)
    with node:
        t0 = time.monotonic()
        with pytest.raises(CodeObjectError) as err:
            node.install(code)
        assert time.monotonic() - t0 < 300, "a hang guard: the old bound was worker_start_ms"
        assert err.value.reason in ({FaultReason.KILLED_BUDGET} if runtime == "native" else {FaultReason.KILLED_BUDGET, FaultReason.BUDGET})
        assert node.cache.peek(code.name) is None
        assert _forward(node, fwd, app) == 1  # the node and the other code object's worker go on
    with Node(1, config=config) as bare, pytest.raises(CodeObjectError):
        bare.install(code)  # the same on a node with no other code


def _armed_and_killed(daemon, runtime: str):
    """Install ``initloop`` (L) and the reference forward (F) on the embedded node, arm L (its
    soft state), SIGKILL its idle worker; returns L's cache entry, F and an application bound
    to ``PORT``. The node restarts L's worker from its loop, and that init never returns."""
    from embedded_node import turn_until

    from pan_runtime.net.application import Application as App

    node = daemon.node
    loop = _init_code("loop", runtime)
    fwd = reference_code(runtime, "forward", node.plugins)
    node.install(loop)
    node.install(fwd)
    app = App(node)
    app.bind(PORT)
    entry = node.cache.peek(loop.name)
    assert entry is not None
    app.send(loop, bytes([1]) + bytes(31))  # arms it
    assert turn_until(daemon, lambda: entry.stats.done == 1), entry.stats.as_dict()
    kill_and_wait(entry.loaded.pid)  # type: ignore[attr-defined]
    return entry, fwd, app


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restarted_workers_runaway_init_never_holds_the_node(runtime: str):
    """Under the node's event loop a restart sends ``init`` and goes on: while the restarted
    worker of code object L runs an ``init`` that never returns (armed through L's soft state,
    which its ``init`` reads in an environment of L's own), capsules of code object F on the
    same node are forwarded, and L's capsules wait for it."""
    from embedded_node import embedded_node, forward_home, turn_until

    daemon = embedded_node(runtime, "worker_start_ms = 600000\nworker_init_ms = 600000\n")
    with daemon:
        entry, fwd, app = _armed_and_killed(daemon, runtime)
        wc = entry.loaded
        assert turn_until(daemon, lambda: wc.init_due is not None), "the worker was not restarted"  # type: ignore[attr-defined]
        app.send(entry.code, bytes(32))  # waits for the restarted worker's init
        assert forward_home(daemon, app, fwd, PORT, 5) == 5
        if wc.init_due is None:  # type: ignore[attr-defined]
            assert runtime in ("wasm", "jvm"), "only a runtime's own stop ends init within ten minutes"
        else:  # native and restricted_py (its step budget is 10^12 here): the init still runs
            assert wc.proc is not None and daemon.node.offload.statistics()["waiting"] == 1  # type: ignore[attr-defined]


def _stale_attach_sockets() -> set[str]:
    """JVM attach sockets in /tmp (where a JVM makes them) whose process is gone."""
    return {p.name for p in Path("/tmp").glob(".java_pid*") if not Path(f"/proc/{p.name[len('.java_pid'):]}").exists()}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restarted_workers_runaway_init_is_ended_and_its_capsules_counted(runtime: str):
    """Past ``worker_init_ms`` (or its runtime's own stop) the restarted worker goes down: the
    capsules that waited for its init are each dropped as ``worker_down``, none lost, and the
    node forwards on. The workers killed leave nothing in /tmp (a JVM's attach socket)."""
    from embedded_node import embedded_node, forward_home, turn_until

    stale = _stale_attach_sockets()
    daemon = embedded_node(runtime, "worker_init_ms = 200\nworker_backoff_ms = 5000\n")
    with daemon:
        entry, fwd, app = _armed_and_killed(daemon, runtime)
        wc = entry.loaded
        rt = daemon.node.runtime(runtime)
        assert turn_until(daemon, lambda: rt.statistics()["worker_restarts"] == 1), rt.statistics()
        for _ in range(3):
            app.send(entry.code, bytes(32))
        assert turn_until(daemon, lambda: entry.stats.drops[FaultReason.WORKER_DOWN] == 3), entry.stats.as_dict()
        assert entry.stats.done == 1 and entry.stats.dropped == 3, entry.stats.as_dict()
        stats = rt.statistics()
        assert stats["worker_deaths"] == 2, stats  # the SIGKILL, then init's end
        if runtime == "native":
            assert stats["worker_kills"] == 1, stats
        assert wc.proc is None  # type: ignore[attr-defined]
        assert forward_home(daemon, app, fwd, PORT, 5) == 5
    assert _stale_attach_sockets() - stale == set()


# -- a restart's init running long is demoted as a long batch is ------------------------------


_NO_DEMOTION = priority.restorable(0)
_DEMOTION = pytest.mark.skipif(_NO_DEMOTION is not None, reason=f"[allowed-skip] demotion: {_NO_DEMOTION}")


@_DEMOTION
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restarted_workers_runaway_init_is_demoted_until_it_answers(runtime: str):
    """Once the restarted worker's ``init`` (armed ``initloop``) has used ``worker_demote_ms``
    of CPU time, every thread of its worker is at ``SCHED_IDLE`` (counted as a demotion) while
    another code object's capsules are forwarded at the normal priority and L's capsule waits
    in the node, its lane not granted; once ``init`` answers (disarmed through L's soft state)
    the same worker is back at the normal priority and the capsule that waited runs. wasm and
    jvm stop a runaway ``init`` themselves (their own budget for it): when that came
    first, the worker is down and the capsule that waited is counted ``worker_down``."""
    from embedded_node import embedded_node, forward_home, turn_until

    limits = "worker_start_ms = 600000\nworker_init_ms = 600000\nworker_demote_ms = 2\nworker_backoff_ms = 5000\n"
    daemon = embedded_node(runtime, limits, budget_ms=60_000)
    with daemon:
        node = daemon.node
        entry, fwd, app = _armed_and_killed(daemon, runtime)
        wc = entry.loaded
        stats = node.runtime(runtime).statistics
        drops = entry.stats.drops
        # the capsule that armed it may have been demoted itself (a first call in a JVM)
        assert turn_until(daemon, lambda: wc.init_due is not None), "the worker was not restarted"  # type: ignore[attr-defined]
        base = stats()["worker_demotions"]
        assert turn_until(daemon, lambda: stats()["worker_demotions"] == base + 1), stats()
        pid = wc.pid  # type: ignore[attr-defined]
        # the node has not turned since: the answer, if any, is unread and the worker as it left it
        assert pid is not None and wc.init_due is not None, stats()  # type: ignore[attr-defined]
        assert _policies(pid) == {os.SCHED_IDLE}, runtime  # every thread, not only the one running init
        app.send(entry.code, bytes(32))  # waits for the restarted worker's init
        assert forward_home(daemon, app, fwd, PORT, 5) == 5
        fwd_entry = node.cache.peek(fwd.name)
        assert fwd_entry is not None
        # on a loaded machine a batch of F's may itself run past worker_demote_ms (a JVM's first
        # calls): its worker is then restored at the node's next look, L's demotion is not its
        fwd_pid = fwd_entry.loaded.pid  # type: ignore[attr-defined]
        assert fwd_pid != pid and turn_until(daemon, lambda: _policies(fwd_pid) == {os.SCHED_OTHER}), _policies(fwd_pid)
        if wc.init_due is not None:  # type: ignore[attr-defined]
            assert wc.pid == pid and _policies(pid) == {os.SCHED_IDLE}, stats()  # type: ignore[attr-defined]
            assert node.offload.statistics()["waiting"] == 1 and entry.stats.done == 1, entry.stats.as_dict()
            lane = node.offload._lanes.get(wc)  # type: ignore[arg-type]
            assert lane is None or not lane[0].granted
            entry.state.delete(b"armed")  # init returns at its next look
        assert turn_until(daemon, lambda: entry.stats.done == 2 or drops[FaultReason.WORKER_DOWN] == 1), entry.stats.as_dict()
        s = stats()
        assert s["worker_demotions"] == base + 1 and s["worker_restarts"] == 1, s
        if drops[FaultReason.WORKER_DOWN]:  # init ended by its runtime's own stop: the worker is down
            assert runtime in ("wasm", "jvm"), (s, entry.stats.as_dict())
            assert wc.pid != pid and entry.stats.done == 1 and s["worker_deaths"] == 2, (s, entry.stats.as_dict())  # type: ignore[attr-defined]
            return
        assert wc.pid == pid and wc.init_due is None, s  # type: ignore[attr-defined]
        assert _policies(pid) == {os.SCHED_OTHER}, runtime
        assert s["worker_deaths"] == 1 and sum(drops.values()) == 0, (s, entry.stats.as_dict())


@_DEMOTION
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restarted_worker_whose_init_answers_at_once_is_not_demoted(runtime: str):
    """A restart whose ``init`` answers at once (``initloop`` not armed) keeps its worker at
    the normal priority: nothing is demoted, and its next capsule runs. The
    threshold is well above what such an ``init`` uses (a first call in a JVM on a loaded
    machine used more than 1 ms)."""
    from embedded_node import embedded_node, turn_until

    daemon = embedded_node(runtime, "worker_demote_ms = 50\n")
    with daemon:
        node = daemon.node
        code = _init_code("loop", runtime)
        entry = node.install(code)
        wc = entry.loaded
        stats = node.runtime(runtime).statistics
        app = Application(node)
        app.bind(PORT)
        first = wc.pid  # type: ignore[attr-defined]
        kill_and_wait(first)
        assert turn_until(daemon, lambda: wc.pid not in (None, first) and wc.init_due is None), stats()  # type: ignore[attr-defined]
        s = stats()
        assert s["worker_restarts"] == 1 and s["worker_demotions"] == 0, s
        assert _policies(wc.pid) == {os.SCHED_OTHER}, runtime  # type: ignore[attr-defined]
        app.send(code, bytes(32))  # its capsule runs (a first capsule in a JVM may be demoted: its batch's own)
        assert turn_until(daemon, lambda: entry.stats.done == 1), entry.stats.as_dict()


# -- soft-state values larger than a worker's channel carries --------------------------------


def _bigstate_body(op: int, size: int, reads: int = 0) -> bytes:
    return bytes([op]) + size.to_bytes(4, "big") + bytes([reads])


@pytest.mark.parametrize("runtime", ["native", "wasm"])
def test_soft_state_values_too_large_for_the_channel_are_refused_with_a_status_not_a_fault(runtime: str):
    """Code in a worker storing a value over a quarter of its ring gets NO_SPACE from
    ``state_put`` (before: a host error, the capsule a fault); reading a value whose replies
    would fill the ring held by the batch out gets NO_SPACE from ``state_get`` (before: the
    worker taken for a protocol breaker, ``crash``). The code decides (here: drop); nothing is
    a fault, the worker stays, and a read that fits returns the whole value. In-process the
    same capsules are all done: the limit is the channel's (pni.toml says so)."""
    from pan_runtime.node.trust import CodeOrigin

    src = SOURCES / "bigstate.c"
    code = default_plugins().builders.find(runtime, ".c").build(BuildRequest([src], runtime, [], [], "bigstate"))
    outcomes: dict[str, list[str]] = {}
    ring = 0
    for iso in ("process", "in_process"):
        # the budget is a hang guard: a capsule's reads of large values are not timed here
        config = NodeConfig(isolation={runtime: iso}, breaker_threshold=1000, budget=Budget(time_ms=60_000))
        with Node(1, config=config) as node:
            entry = node.install(code, origin=CodeOrigin.LOCAL)
            ring = ring or entry.loaded.ring_size  # type: ignore[attr-defined] # the worker's, first
            app = Application(node)
            results = []
            for body in (_bigstate_body(0, ring // 4 + 1),  # over what the channel carries
                         _bigstate_body(0, ring // 8),  # fits: stored
                         _bigstate_body(1, ring // 8, reads=8),  # eight replies of an eighth: more than the room
                         _bigstate_body(1, ring // 8, reads=1)):  # one fits
                done, drops = entry.stats.done, sum(entry.stats.drops.values())
                app.send(code, body)
                node.process()
                results.append("done" if entry.stats.done > done else "drop" if sum(entry.stats.drops.values()) > drops
                               else "lost")
            assert entry.stats.errors == 0, entry.stats.as_dict()  # no capsule was a fault
            outcomes[iso] = results
            if iso == "process":
                assert node.runtime(runtime).statistics()["worker_deaths"] == 0
    assert outcomes["in_process"] == ["done", "done", "done", "done"]
    assert outcomes["process"] == ["drop", "done", "drop", "done"]
