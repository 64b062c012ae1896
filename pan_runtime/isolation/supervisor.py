"""The node's side of process isolation: the ``Runtime`` and ``LoadedCode`` that stand for a
runtime's code running in worker processes, and the supervision of those workers.

One worker per code object (``WorkerRuntime.load``), up to ``NodeConfig.workers`` per runtime;
past it, loading is refused (``CodeObjectError``, reason ``too_many_workers``) rather than
sharing a worker, since code objects sharing a process could read each other's capsules and
soft state (native code can read anything in its process). A runaway capsule therefore holds
only its own code object's worker. The node hands batches over without waiting (``submit``;
``pan_runtime.node.offload`` drives it) and reads their verdicts when the worker writes
(``collect``); it gives each batch its budget (``Budget.time_ms`` per capsule, plus
``NodeConfig.worker_grace_ms``) from when the worker could start it, then kills the worker
(SIGKILL): the capsule is a fault ``killed_budget``. ``accept``/``accept_batch`` hand over
and wait (``settle``), for callers without an event loop.

A worker that dies (a fault signal, ``abort``, a direct ``exit_group``, its memory limit) costs
the capsules of the batch it was running, each counted as a fault with the reason read from
how it ended (``crash``, ``abort``, ``killed_memory``, ``killed_budget``); the node's breaker
quarantines a code object whose capsules keep faulting. The worker is started again on the next
capsule for its code object: at once after a first death, then after a back-off
(``worker_backoff_ms``, doubled on each further death in a row up to 5 s; a batch that runs
ends the row); until then its capsules are dropped as ``worker_down``. A restarted worker runs ``init`` again (its code's globals are new);
soft state is the node's (the worker forwards every ``state_*`` call), so it survives, as does
everything else the node holds (routes, queued capsules, pool buffers, application links).
``init`` is the code's: it runs under ``NodeConfig.worker_init_ms`` (past it the worker is
killed), and under an event loop a restart sends ``INIT`` without waiting for it (``started``
reads the answer; the code object's capsules wait in the node meanwhile; an ``init`` that has
used ``worker_demote_ms`` of CPU time gets its worker demoted as a long batch does, ``steer``,
until it answers). Restarting takes the code object's warm standby when it has one
(``NodeConfig.worker_standbys``, ``pan_runtime.isolation.standby``: a worker with that code
object linked and confined, waiting for ``INIT``), so it costs ``init``; else a spare worker
when one is ready (``NodeConfig.worker_spares``, a worker that has made its runtime and waits
for a code object), so it costs linking the code and ``init``; else a whole start (an
interpreter and the runtime; a JVM takes longest). Spares and standbys are started in the
background after each load and restart.

Channel costs per batch: the node copies each body into the ring (one copy: the worker has no
access to the node's pool, which holds every other capsule) and back out after the verdicts
(the code may have rewritten it); the worker runs the code over the body in place in the ring
(no copy). One eventfd wake-up each way per batch, plus one round trip per PNI call the worker
cannot answer itself. The UDP fast path writes batches into the ring itself (``submit_raw``,
``pan_runtime/net/_fastpath_worker.c``); they take their place among the batches out here.
While the node lends the channel to the fast path's worker lane (``lent``, see
``pan_runtime.node.offload``), C produces on the down ring and reads the up ring itself;
every method here that touches the channel or the batches out takes it back first, and the
batches C has out then join those here (``adopt_raw``), oldest first, their clocks kept.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pan_runtime import pni_api
from pan_runtime.data.segments import Segment
from pan_runtime.errors import CodeObjectError, FaultReason, RuntimeFault, WorkerError
from pan_runtime.isolation import priority, verdicts, wire
from pan_runtime.isolation.channel import Channel, ring_size_for
from pan_runtime.isolation.protocol import CAPSULE as _CAP
from pan_runtime.isolation.protocol import EXIT_MEMORY, EXIT_PROTOCOL, FORWARDED, WORKER_MODULE, Kind
from pan_runtime.isolation.protocol import NO_HOP as _NO_HOP
from pan_runtime.isolation.standby import Standby, wanted
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

if TYPE_CHECKING:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Environment
    from pan_runtime.node.pni import PniServer

__all__ = ["WorkerRuntime", "WorkerCode", "WorkerSettings"]

log = logging.getLogger("pan.isolation")

#: the longest back-off between restarts of a worker that keeps dying
MAX_BACKOFF_NS = 5_000_000_000
_FAULT_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGSYS, signal.SIGTRAP}
#: the PNI status for a missing soft-state entry (``pni_api``)
NOT_FOUND = pni_api.NOT_FOUND
NO_SPACE = pni_api.NO_SPACE
#: room a value's reply leaves in the ring to the worker for the small replies after it (a
#: status, a few ints), so that a reply the node owes the worker always fits
_REPLY_SLACK = 4096
#: what ``WorkerCode.steer`` times when no batch is out: a restart's ``init`` in progress
_INIT = object()


class WorkerSettings:
    """What a node tells its workers: limits, budget, soft-state bounds, its address and clock."""

    def __init__(self, *, config: Any, address: Any, clock_is_monotonic: bool, node_name: str,
                 control_env: Callable[[CodeObject], Environment] | None = None):
        self.config = config
        self.address = address
        self.clock_is_monotonic = clock_is_monotonic
        self.node_name = node_name
        #: a fresh application-origin environment of a code object (the node's): what its
        #: worker's PNI calls during ``init``, an export or ``finalize`` are served in, whatever
        #: capsule the node happens to be serving when it starts or restarts the worker
        self.control_env = control_env

    def hello(self, runtime: type[Runtime], options: dict[str, Any]) -> bytes:
        c = self.config
        b = c.budget
        import dataclasses

        try:
            json.dumps(options)
        except (TypeError, ValueError) as exc:
            raise CodeObjectError(
                f"runtime {runtime.name}: its options go to its workers as JSON, and these cannot ({exc}); "
                "give them as plain values in [runtimes.options.NAME]"
            ) from None
        return json.dumps({
            "runtime": runtime.name,
            # the class itself, by module and name: the worker imports it, so a runtime given
            # to the node by a plugin module (not an entry point) runs in workers too
            "class": f"{runtime.__module__}:{runtime.__qualname__}",
            "options": options,
            "load_limits": dataclasses.asdict(c.load_limits),
            "budget": dataclasses.asdict(b),
            "address": self.address.raw.hex(),
            "clock": "monotonic" if self.clock_is_monotonic else "node",
            "state_entries": c.state_entries,
            "state_bytes": c.state_bytes,
            "state_ttl_ms": c.state_ttl_ms,
            "memory": c.worker_memory,
            "nice": getattr(c, "worker_nice", 0),
            # how long the worker polls its ring after its last record before it sleeps
            "poll_ns": c.worker_poll_ns() if hasattr(c, "worker_poll_ns") else 0,
        }).encode()

    @property
    def cpus(self) -> frozenset[int]:
        """The CPUs workers run on (``limits.worker_cpus``; empty: the node's, which are the
        process's before ``limits.thread_cpus`` pinned a thread, not the pinned thread's one)."""
        spawn = getattr(self.config, "worker_cpu_set", None)
        return spawn() if spawn is not None else frozenset(getattr(self.config, "worker_cpus", ()))


#: what a batch's ``done`` is called with: its environments, a verdict or fault for each, and
#: the nanoseconds from handing it over to its verdicts
Done = Callable[[Sequence["Environment"], list["int | RuntimeFault"], int], None]


class RawBatch(Protocol):
    """A batch the C fast path wrote into the ring itself (``submit_raw``): no environments."""

    def finish(self, view: memoryview, payload: memoryview) -> None:
        """Carry out its VERDICTS record (``payload``, not yet released; ``view``: the batch's
        payload); raises ``WorkerError`` for a record that breaks the layout."""

    def environments(self, view: memoryview) -> Sequence[Environment]:
        """Environments for its capsules, for a PNI call the worker forwards for one of them."""


class _Batch:
    """Capsules handed to a worker whose verdicts have not come back."""

    __slots__ = ("envs", "n", "view", "offsets", "budget_ns", "hold", "done", "t0", "started", "raw")

    def __init__(self, envs: Sequence[Environment] | None, view: memoryview, offsets: list[int], budget_ns: int, hold: int, done: Done,
                 n: int = 0, raw: RawBatch | None = None):
        #: the capsules' environments (None: a batch the C fast path wrote, ``submit_raw``)
        self.envs = envs
        self.n = len(envs) if envs is not None else n
        #: a batch the fast path wrote (``submit_raw``): what carries out its verdicts
        self.raw = raw
        self.view = view
        self.offsets = offsets
        self.budget_ns = budget_ns
        #: where the batch's record starts in the ring to the worker (held until its verdicts are read)
        self.hold = hold
        self.done = done
        self.t0 = time.monotonic_ns()
        #: when the worker could start it (the verdicts of the batch before it came back)
        self.started = self.t0


class _Died(Exception):
    def __init__(self, reason: FaultReason, detail: str):
        super().__init__(detail)
        self.reason = reason


#: worker processes killed and closed that had not ended yet (``reap_killed``)
_killed: list[subprocess.Popen[bytes]] = []


def reap_killed(timeout_s: float = 0.0) -> None:
    """Reap the killed workers that have ended since (waiting up to ``timeout_s`` for the
    rest: a node closing waits, its thread does not); one that does not end is logged."""
    end = time.monotonic() + timeout_s
    for p in list(_killed):
        try:
            if timeout_s:
                p.wait(max(0.0, end - time.monotonic()))
            else:
                p.poll()
        except subprocess.TimeoutExpired:
            log.error("worker %d did not die %.0f s after its SIGKILL", p.pid, timeout_s)
            continue
        if p.returncode is not None:
            _killed.remove(p)


def _end_if_past(proc: _Process, deadline_ns: int) -> None:
    """Kill ``proc`` and raise its ``_Died`` once ``deadline_ns`` (monotonic) has passed.
    Looked at when the worker has written nothing more and after each PNI call served: a
    worker that calls again as soon as it has its reply would otherwise keep the node serving
    calls past its budget, until the replies filled the ring to it (held by the batch out)."""
    if time.monotonic_ns() >= deadline_ns:
        proc.kill(FaultReason.KILLED_BUDGET)
        raise proc.death()


class _Process:
    """One running worker: its process, pidfd and channel."""

    def __init__(self, runtime: str, ring_size: int, background: bool = False, cpus: frozenset[int] = frozenset()):
        reap_killed()
        self.ch = Channel.create(ring_size)
        debug = log.isEnabledFor(logging.DEBUG)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(os.getpid()), *map(str, self.ch.fds()), str(ring_size)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None if debug else subprocess.DEVNULL,
                pass_fds=self.ch.fds(),
                close_fds=True,
            )
        except OSError:
            self.ch.close()
            raise
        if cpus:  # before the interpreter starts any thread: every thread it makes inherits them
            try:
                os.sched_setaffinity(self.proc.pid, cpus)
            except OSError as exc:
                log.warning("cannot put a %s worker on CPUs %s: %s", runtime, sorted(cpus), exc)
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.killed_for: FaultReason | None = None
        #: called with this process before its descriptors close (an event loop watching its
        #: pidfd stops watching it)
        self.on_close: Callable[[_Process], None] | None = None
        #: its threads are at the lowest priority (``priority.demote``)
        self.lowered = False
        self._clock: int | None = None
        if background:
            # the standby of a code object whose worker died (or a spare after a death) makes
            # its runtime when the CPU has nothing else to do: a code object that keeps killing
            # its worker must not delay other code's capsules with interpreter or JVM starts;
            # it is raised once it is needed (``ready_for_use``). The first standby and spares
            # start at the normal priority, so a first restart finds them ready on a busy
            # machine too.
            self.lower_priority()

    def kill(self, reason: FaultReason | None = None) -> None:
        """SIGKILL it, without waiting for it to end: a killed worker's exit (its memory torn
        down) held the node's thread 2 ms in the median and up to 15 ms; it is reaped when
        closed or later (``reap_killed``)."""
        if self.proc.poll() is None:
            if self.killed_for is None:  # the first kill's reason is its death's
                self.killed_for = reason
            if self.lowered:  # a killed thread must run to end: not only when the CPU is idle
                self.raise_priority()
            self.proc.kill()

    def cpu_ns(self) -> int | None:
        """CPU time its main thread (the one running the code) has used; None once it ended."""
        if self._clock is None:
            try:
                self._clock = priority.open_clock(self.proc.pid)
            except OSError:
                return None
        return priority.read_clock(self._clock)

    def lower_priority(self) -> None:
        """Every thread at the lowest priority (``priority.demote``)."""
        self.lowered = True
        priority.demote(self.proc.pid)

    def raise_priority(self) -> None:
        """Every thread back at the normal priority (``priority.restore``)."""
        self.lowered = False
        if self.proc.poll() is None:
            priority.restore(self.proc.pid)

    def ready_for_use(self) -> None:
        """A standby or spare is about to serve (or is waited for): at the normal priority."""
        if self.lowered:
            self.raise_priority()

    def close(self) -> None:
        self.kill()
        if self.on_close is not None:
            self.on_close(self)
            self.on_close = None
        if self._clock is not None:
            os.close(self._clock)
            self._clock = None
        try:
            os.close(self.pidfd)
        except OSError:
            pass
        self.ch.close()
        if self.proc.poll() is None:  # killed and still ending: reaped later
            _killed.append(self.proc)

    def death(self) -> _Died:
        """Why the process ended (it has ended, or the node has killed it)."""
        if self.killed_for is not None:
            return _Died(self.killed_for, f"the worker was killed ({self.killed_for.value})")
        rc = self.proc.wait()
        if rc == EXIT_MEMORY:
            return _Died(FaultReason.KILLED_MEMORY, "the worker reached its memory limit (limits.worker_memory)")
        if rc < 0:
            sig = signal.Signals(-rc) if -rc in signal.Signals._value2member_map_ else None
            name = sig.name if sig else f"signal {-rc}"
            if sig == signal.SIGABRT:
                return _Died(FaultReason.ABORT, "the worker aborted (SIGABRT)")
            if sig == signal.SIGKILL:  # not the node's kill: the kernel's out-of-memory killer
                return _Died(FaultReason.KILLED_MEMORY, "the worker was killed by SIGKILL (out of memory)")
            return _Died(FaultReason.CRASH, f"the worker died of {name}")
        if rc == EXIT_PROTOCOL:
            return _Died(FaultReason.CRASH, "the worker broke its channel's protocol")
        return _Died(FaultReason.CRASH, f"the worker exited with status {rc}")


class WorkerRuntime(Runtime):
    """Runs one runtime's code objects in worker processes (a worker per code object)."""

    isolation = Isolation.PROCESS

    def __init__(self, inner: type[Runtime], options: dict[str, Any], settings: WorkerSettings, host: PniServer):
        super().__init__(options)
        self.name = inner.name  # type: ignore[misc]
        self.inner = inner
        self.payload = inner.payload  # type: ignore[misc]
        self.limits = inner.limits  # type: ignore[misc]
        self.settings = settings
        self.host = host
        self.live: set[WorkerCode] = set()
        self.counters = {
            "worker_starts": 0, "worker_restarts": 0, "worker_kills": 0, "worker_deaths": 0, "spares_used": 0,
            "worker_warm_restarts": 0, "standbys_started": 0, "worker_demotions": 0, "worker_idle_deaths": 0,
            "standby_deaths": 0,
            # batches (and their capsules) the C fast path wrote into workers' rings itself
            "worker_fast_batches": 0, "worker_fast_capsules": 0,
        }
        #: load order of the code objects, for the choice of standbys (``standby.wanted``)
        self.loads = 0
        self.deaths: dict[str, int] = {}
        #: started workers with the runtime made (HELLO sent) and no code object yet: a restart
        #: takes one and only links its code (``NodeConfig.worker_spares``)
        self.spares: list[_Process] = []
        c = settings.config
        #: the ring of a spare: a batch of full pool buffers and code objects up to 1 MiB
        self.spare_ring = ring_size_for(max(1, c.batch) * (c.pool_buffer_size + _CAP.size + 16) + (1 << 20))
        #: a batch that has run this long gets its worker demoted (``priority``; 0: never)
        self.demote_ns = getattr(c, "worker_demote_ms", 0) * 1_000_000
        why = priority.restorable(getattr(c, "worker_nice", 0)) if self.demote_ns else None
        if why is not None:
            log.warning("%s: workers running long are not demoted (limits.worker_demote_ms): %s", settings.node_name, why)
            self.demote_ns = 0
        #: standbys and spares started to replace those a restart took run at ``SCHED_IDLE``
        #: until used (``_Process``): only when the node may raise them again
        #: (``priority.restorable``)
        self.background_idle = priority.restorable(getattr(c, "worker_nice", 0)) is None
        #: whether a restart may wait on the node's thread for a standby still making its
        #: runtime (a node without an event loop has nothing to come back to it with)
        self.patient = True
        #: bumped each time a worker process of this runtime is started (the node's event loop
        #: watches every one's pidfd: ``processes``)
        self.spawns = 0

    def processes(self) -> list[_Process]:
        """Every worker process running now: the code objects' own, standbys and spares."""
        out = [wc.proc for wc in self.live if wc.proc is not None]
        out += [wc.standby.proc for wc in self.live if wc.standby is not None]
        return out + self.spares

    def prune(self) -> int:
        """Close standbys and spares that have died (counted ``standby_deaths``) and start
        new ones; returns how many were found dead."""
        dead = 0
        for wc in self.live:
            if wc.standby is not None and not wc.standby.alive():
                wc.standby.close()
                wc.standby = None
                dead += 1
        for proc in [p for p in self.spares if p.proc.poll() is not None]:
            self.spares.remove(proc)
            proc.close()
            dead += 1
        if dead:
            self.counters["standby_deaths"] += dead
            log.warning("%s: %d %s standby or spare worker(s) died; starting others", self.settings.node_name, dead, self.name)
            self.refill()
        return dead

    def take_spare(self, ring_size: int) -> _Process | None:
        """A spare whose ring holds ``ring_size`` bytes and whose process still runs, or None."""
        while self.spares:
            proc = self.spares.pop(0)
            if proc.proc.poll() is None and proc.ch.ring_size >= ring_size:
                self.counters["spares_used"] += 1
                proc.ready_for_use()
                return proc
            proc.close()
        return None

    def take_standby(self, wc: WorkerCode) -> Standby | None:
        """``wc``'s own warm standby (made for it, still running), or None; its process is
        ``wc``'s worker from now on, and a new standby is made for it by the next ``refill``."""
        sb = wc.standby
        wc.standby = None
        if sb is None:
            return None
        if sb.owner is wc and sb.alive() and sb.proc.ch.ring_size >= wc.ring_size:
            sb.proc.ready_for_use()
            return sb
        sb.close()
        return None

    def refill(self) -> None:
        """Start spares up to ``worker_spares`` and standbys for the code objects that should
        have one (``worker_standbys``); they make their runtime (and a standby links its code
        and confines itself) while the node goes on."""
        self._refill_spares()
        self._refill_standbys()

    def _refill_standbys(self) -> None:
        keep = wanted(self.live, self.settings.config.worker_standbys)
        for wc in self.live:
            if wc not in keep and wc.standby is not None:
                wc.standby.close()
                wc.standby = None
        for wc in keep:
            if wc.standby is not None and not wc.standby.alive():
                wc.standby.close()
                wc.standby = None
            if wc.standby is None:
                try:
                    proc = _Process(self.name, wc.ring_size, background=self.background_idle and wc.deaths > 0,
                                    cpus=self.settings.cpus)
                except OSError as exc:
                    log.warning("cannot start a standby %s worker: %s", self.name, exc)
                    return
                ok = proc.ch.down.put(Kind.HELLO, self.settings.hello(self.inner, dict(self.options)))
                ok = ok and proc.ch.down.put(Kind.LOAD, wc.load_record())
                if not ok:
                    log.warning("a standby %s worker's channel took no HELLO and LOAD", self.name)
                    proc.close()
                    return
                proc.ch.wake_worker()
                wc.standby = Standby(proc, wc)
                self.spawns += 1
                self.counters["standbys_started"] += 1

    def _refill_spares(self) -> None:
        while len(self.spares) < self.settings.config.worker_spares:
            try:
                proc = _Process(self.name, self.spare_ring, background=self.background_idle and bool(self.deaths),
                                cpus=self.settings.cpus)
                if not proc.ch.down.put(Kind.HELLO, self.settings.hello(self.inner, dict(self.options))):
                    raise WorkerError("a spare's channel took no HELLO")
            except (OSError, CodeObjectError, WorkerError) as exc:
                log.warning("cannot start a spare %s worker: %s", self.name, exc)
                return
            proc.ch.wake_worker()
            self.spares.append(proc)
            self.spawns += 1

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> LoadedCode:
        limit = self.settings.config.workers
        if len(self.live) >= limit:
            raise CodeObjectError(
                f"{code.short_name}: runtime {self.name} already runs {len(self.live)} workers, limits.workers = {limit} "
                "(process isolation gives each code object a worker of its own)",
                FaultReason.TOO_MANY_WORKERS,
            )
        wc = WorkerCode(self, code, deps, host)
        self.loads += 1
        wc.order = self.loads
        wc.start(initial=True)
        self.live.add(wc)
        self.refill()
        return wc

    def close(self) -> None:
        for wc in list(self.live):
            wc.stop()
        for proc in self.spares:
            proc.close()
        self.spares.clear()
        reap_killed(5.0)  # every process the node started has ended when it closes

    def statistics(self) -> dict[str, int]:
        out = {
            "workers": sum(1 for w in self.live if w.proc is not None),
            "spares": len(self.spares),
            "standbys": sum(1 for w in self.live if w.standby is not None),
            **self.counters,
        }
        out.update({f"worker_{k}": v for k, v in self.deaths.items()})
        # how the running workers ran their capsules, as they report it (Ring.put_counters):
        # calls into the runtime's C batch entry, capsules those ran, capsules run in Python
        calls = ran = python = 0
        for w in self.live:
            if w.proc is not None:
                c, r, p = w.proc.ch.up.counters()
                calls, ran, python = calls + c, ran + r, python + p
        out.update({"worker_entry_calls": calls, "worker_entry_capsules": ran, "worker_python_capsules": python})
        return out

    def versions(self) -> dict[str, str]:
        return self.inner.versions() if isinstance(self.inner.__dict__.get("versions"), classmethod) else {}


class WorkerCode(LoadedCode):
    """A code object in its worker; every call crosses the channel under a deadline."""

    def __init__(self, runtime: WorkerRuntime, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer):
        super().__init__(code, host)
        self.rt = runtime
        #: the dependency closure, dependencies first: the worker links those of this runtime
        #: itself and calls the others through the node
        self.deps: list[CodeObject] = []
        for d in deps:
            for c in [*(d.deps if isinstance(d, WorkerCode) else ()), d.code]:
                if c not in self.deps:
                    self.deps.append(c)

        self.proc: _Process | None = None
        c = runtime.settings.config
        self.ring_size = ring_size_for(max(1, c.batch) * (c.pool_buffer_size + _CAP.size + 16) + sum(d.size for d in self.deps) + code.size)
        self.backoff_ns = c.worker_backoff_ms * 1_000_000
        self.restart_at = 0
        self.deaths_in_row = 0
        self._envs: Sequence[Environment] = ()
        #: a worker linked and confined for this code object alone, waiting for INIT
        #: (``pan_runtime.isolation.standby``), and what the choice of standbys reads
        self.standby: Standby | None = None
        self.deaths = 0
        self.order = 0
        #: batches handed to the worker, oldest first, and how many capsules they hold
        self.inflight: deque[_Batch] = deque()
        self.inflight_n = 0
        #: called with this code object before its worker's descriptors close (the node's
        #: event loop stops watching them)
        self.on_down: Callable[[WorkerCode], None] | None = None
        self.closed = False
        #: resets sent behind batches out whose answers have not been read
        self.resets_out = 0
        #: the batch whose running long demoted the worker (``priority``), until it ends, or
        #: ``_INIT``: a restart's ``init`` running long, until it answers
        self.demoted: _Batch | object | None = None
        #: the batch (or ``_INIT``) whose CPU time is being watched, and the worker's CPU time
        #: when it was first seen
        self._cpu_batch: _Batch | object | None = None
        self._cpu_mark = 0
        self._cpu_due = 0
        #: set while the node's C fast path holds this worker's channel (its worker lane,
        #: ``pan_runtime.node.offload``): called to take it back (the batches C has out become
        #: ordinary batches here) before anything here reads or writes the channel
        self.lent: Callable[[], None] | None = None
        #: a restarted worker's INIT is out and unanswered: when the node kills it (monotonic
        #: ns; ``worker_init_ms`` from when it was sent). No batch goes down until it answers.
        self.init_due: int | None = None

    # -- lifecycle --------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The process id of the worker running this code object now (None while it is down)."""
        return self.proc.proc.pid if self.proc is not None else None

    def load_record(self) -> bytes | memoryview:
        """The ``LOAD`` record: the code object, then its dependency closure."""
        return wire.encode([self.code.to_pco(), *(d.to_pco() for d in self.deps)])

    def start(self, initial: bool = False) -> None:
        """Start the worker and load the code object (``init`` is the node's call). A restart
        takes the code object's warm standby when it has one (``_warm``)."""
        rt = self.rt
        c = rt.settings.config
        if not initial and self._warm():
            return
        proc = rt.take_spare(self.ring_size)
        spare = proc is not None
        if proc is None:
            try:
                proc = _Process(rt.name, self.ring_size, cpus=rt.settings.cpus)
            except OSError as exc:
                raise CodeObjectError(f"{self.code.short_name}: cannot start a worker: {exc}", FaultReason.CRASH) from None
        self.proc = proc
        rt.spawns += 1
        rt.counters["worker_starts"] += 1
        if not initial:
            rt.counters["worker_restarts"] += 1
        deadline = time.monotonic_ns() + c.worker_start_ms * 1_000_000
        try:
            if spare:  # its HELLO went down when it was started: its answer is all that is left
                self._control(Kind.HELLO, b"", deadline, raw=True, put=False)
            else:
                self._control(Kind.HELLO, rt.settings.hello(rt.inner, dict(rt.options)), deadline, raw=True)
            self._control(Kind.LOAD, self.load_record(), deadline, raw=True)
        except (RuntimeFault, CodeObjectError) as exc:
            self._down(None)
            raise CodeObjectError(f"{self.code.short_name}: the worker could not load it: {exc}", exc.reason) from None

    def _warm(self) -> bool:
        """Take this code object's standby as its worker: its answers to HELLO and LOAD (sent
        when it was started) are all that is left. False when it has none or it failed."""
        rt = self.rt
        sb = rt.take_standby(self)
        if sb is None:
            return False
        self.proc = sb.proc
        deadline = time.monotonic_ns() + rt.settings.config.worker_start_ms * 1_000_000
        try:
            for vals in sb.answers:  # read already (``Standby.ready``)
                self._answered(vals)
            for _ in range(2 - len(sb.answers)):
                self._control(Kind.HELLO, b"", deadline, raw=True, put=False)
        except (RuntimeFault, CodeObjectError) as exc:
            log.warning("%s: the standby of %s failed (%s); starting a worker", rt.settings.node_name, self.code.short_name, exc)
            self._down(None)
            return False
        rt.spawns += 1
        rt.counters["worker_starts"] += 1
        rt.counters["worker_restarts"] += 1
        rt.counters["worker_warm_restarts"] += 1
        return True

    @staticmethod
    def _answered(vals: list[wire.Value]) -> None:
        """A standby's answer to ``HELLO`` or ``LOAD``, read before: ``CodeObjectError`` unless
        it says done."""
        if len(vals) in (3, 4) and vals[0] == 0 and isinstance(vals[1], int):
            return
        why, text = (vals[1], vals[2]) if len(vals) >= 3 else (b"", b"malformed result")
        try:
            reason = FaultReason(why.decode()) if isinstance(why, bytes) else FaultReason.CRASH
        except (UnicodeDecodeError, ValueError):
            reason = FaultReason.CRASH
        raise CodeObjectError(text.decode("utf-8", "replace") if isinstance(text, bytes) else "malformed result", reason)

    def awaiting_standby(self) -> bool:
        """Down, with a standby that has not finished starting: a node with an event loop
        restarts from it once it has (``Offload.tick``), without waiting on its thread."""
        sb = self.standby
        if self.proc is None and sb is not None and sb.alive() and not sb.ready():
            sb.proc.ready_for_use()  # waited for now: it finishes its start at the normal priority
            return True
        return False

    def stop(self) -> None:
        if self.lent is not None:
            self.lent()
        self.demoted = None
        self.init_due = None
        if self.proc is not None:
            if self.on_down is not None:
                self.on_down(self)
            self.proc.close()
            self.proc = None
        if self.standby is not None:
            self.standby.close()
            self.standby = None
        self.rt.live.discard(self)

    def _down(self, died: _Died | None) -> None:
        """Forget the dead (or killed) worker; the next capsule after the back-off starts another."""
        if self.lent is not None:
            self.lent()
        self.demoted = None  # its replacement starts at the normal priority
        self.init_due = None
        if self.proc is not None:
            if self.on_down is not None:
                self.on_down(self)
            self.proc.close()
            self.proc = None
        if died is None:
            return
        rt = self.rt
        self.deaths += 1
        rt.counters["worker_deaths"] += 1
        if died.reason is FaultReason.KILLED_BUDGET:
            rt.counters["worker_kills"] += 1
        rt.deaths[died.reason.value] = rt.deaths.get(died.reason.value, 0) + 1
        first = rt.settings.config.worker_backoff_ms * 1_000_000
        if self.deaths_in_row == 0:
            self.backoff_ns = 0  # a first death: start again at once
        elif self.deaths_in_row == 1:
            self.backoff_ns = first
        else:
            self.backoff_ns = min(MAX_BACKOFF_NS, self.backoff_ns * 2)
        self.deaths_in_row += 1
        self.restart_at = time.monotonic_ns() + self.backoff_ns
        log.warning("%s: worker of %s ended: %s; restarting after %.0f ms", rt.settings.node_name,
                    self.code.short_name, died, self.backoff_ns / 1e6)

    def _ensure(self) -> None:
        """A running worker whose ``init`` has answered: started again when the back-off has
        passed; else ``RuntimeFault`` ``worker_down`` (a restart whose ``init`` has not answered
        yet included, when an event loop drives the node: see ``restart``)."""
        if self.proc is None:
            if time.monotonic_ns() < self.restart_at:
                raise RuntimeFault(f"{self.code.short_name}: its worker is down (restarting)", FaultReason.WORKER_DOWN)
            if not self.rt.patient and self.awaiting_standby():
                raise RuntimeFault(f"{self.code.short_name}: its worker is down (its standby is still starting)", FaultReason.WORKER_DOWN)
            self._start_again()
        if self.init_due is not None:
            self._init_answered(wait=self.rt.patient)

    def _start_again(self) -> None:
        """Start the worker (from its standby, a spare or anew) and send it ``INIT`` without
        waiting for the answer (``init_due``); ``RuntimeFault`` ``worker_down`` when it cannot
        start, the failure counted as a death (so the back-off grows) unless its end was."""
        deaths = self.deaths
        try:
            self.start()
            self._put(Kind.INIT, b"")
        except (CodeObjectError, RuntimeFault, WorkerError) as exc:
            if self.deaths == deaths:
                self._down(_Died(FaultReason.WORKER_DOWN, str(exc)))
            raise RuntimeFault(f"{self.code.short_name}: its worker could not be restarted: {exc}", FaultReason.WORKER_DOWN) from None
        finally:
            self.rt.refill()  # the spare or standby this start took is replaced while the node goes on
        self._cpu_batch = None  # this worker's init is timed from ``steer``'s first look at it
        self.init_due = self._init_deadline()

    def _init_deadline(self) -> int:
        return time.monotonic_ns() + self.rt.settings.config.worker_init_ms * 1_000_000

    def _init_answered(self, wait: bool) -> None:
        """Read the restarted worker's answer to ``INIT`` (serving the PNI calls its ``init``
        makes), waiting for it up to ``init_due`` when ``wait``. ``RuntimeFault`` ``worker_down``
        while it has not come (not waiting), or when ``init`` refused, faulted or ran past
        ``init_due`` (the worker killed: ``killed_budget``) or the worker died: then the worker
        is down, its end counted. A worker demoted for a long ``init`` (``steer``) is restored
        before the node waits for it and once ``init`` has answered, before anything else goes
        down to it."""
        due = self.init_due
        assert due is not None and self.proc is not None
        if wait:
            self._restore_for_init()
        try:
            vals = self._wait(due, Kind.RESULT) if wait else self._read(Kind.RESULT, due)
        except (_Died, WorkerError) as exc:
            fault = self._fail(exc)
            raise RuntimeFault(f"{self.code.short_name}: init in its restarted worker: {fault}", FaultReason.WORKER_DOWN) from None
        if vals is None:
            raise RuntimeFault(f"{self.code.short_name}: its worker is starting (init has not answered)", FaultReason.WORKER_DOWN)
        self.init_due = None
        self._restore_for_init()
        try:
            rc = self._result(vals)
            if rc >= 0:
                return
            why = f"init returned {rc} in the restarted worker"
        except RuntimeFault as fault:
            why = f"init faulted in the restarted worker: {fault}"
        self._down(_Died(FaultReason.WORKER_DOWN, why))
        raise RuntimeFault(f"{self.code.short_name}: {why}", FaultReason.WORKER_DOWN)

    def _restore_for_init(self) -> None:
        """The worker demoted for its ``init`` (``steer``) back at the normal priority: the node
        waits for it, or ``init`` has answered. ``RuntimeFault`` ``worker_down`` when it could
        not be restored (it is down then: ``_restore``)."""
        if self.demoted is None:
            return
        self._restore()
        if self.proc is None:
            why = "its restarted worker could not be restored to the normal priority"
            raise RuntimeFault(f"{self.code.short_name}: {why}", FaultReason.WORKER_DOWN)

    def started(self) -> bool:
        """Whether the worker is past its ``init`` (looked at without waiting): False while a
        restart's ``init`` has not answered; True once it has, or the worker is down after a
        failed one (logged; its next capsule starts it again after the back-off)."""
        if self.init_due is None or self.proc is None:
            return True
        try:
            self._init_answered(wait=False)
        except RuntimeFault as fault:
            if self.init_due is not None:
                return False
            log.warning("%s: %s", self.rt.settings.node_name, fault)
        return True

    def restart(self) -> bool:
        """Start the worker again after it ended with nothing out (the node's event loop saw its
        pidfd), without waiting for a capsule to find it gone; False while the back-off lasts
        (``restart_at``) or when there is nothing to restart. A failed start is counted and
        logged as in ``_ensure``. Under an event loop ``init``'s answer is read later
        (``started``): the node's thread never waits for the code's ``init``."""
        if self.closed or self.proc is not None or time.monotonic_ns() < self.restart_at:
            return False
        try:
            self._start_again()
            if self.rt.patient:
                self._init_answered(wait=True)
        except RuntimeFault as fault:
            log.warning("%s: %s", self.rt.settings.node_name, fault)
            return False
        return True

    # -- priority -----------------------------------------------------------------------
    def _timed(self) -> _Batch | object | None:
        """What ``steer`` times: the oldest batch out, else a restart's ``init`` in progress
        (``_INIT``; no batch goes down before it answers), else nothing."""
        if self.inflight:
            return self.inflight[0]
        if self.init_due is not None and self.proc is not None:
            return _INIT
        return None

    def steer(self, now: int) -> int | None:
        """Demote the worker once its current batch has used ``worker_demote_ms`` of CPU time per
        capsule, or a restart's ``init`` has used ``worker_demote_ms`` (every thread at
        ``SCHED_IDLE``, ``priority``); restore it once that batch has ended or its own budget is
        over (an ``init`` is restored when it answers, ``_init_answered``, or its worker is
        killed at ``init_due``); returns when to look again (monotonic ns), or None.
        CPU time of the thread running the code, not wall time: on a machine busy with other
        work an honest batch waits for the CPU longer than it runs."""
        if self.lent is not None:
            self.lent()
        demoted = self.demoted
        head = self._timed()
        if demoted is not None and demoted is not head:
            self._restore()
        elif isinstance(demoted, _Batch) and self.proc is not None and self.proc.lowered:
            # its own budget is over: back at the normal priority, a runtime that enforces its
            # budget stops the code within the grace instead of being killed and restarted
            # (which costs the node more than the code's last milliseconds do)
            over = demoted.started + demoted.budget_ns - self.rt.settings.config.worker_grace_ms * 1_000_000
            if now < over:
                return over
            try:
                self.proc.raise_priority()
            except OSError:
                pass
            return None
        demote_ns = self.rt.demote_ns
        if not demote_ns or head is None or self.demoted is not None or self.proc is None:
            return None
        if self._cpu_batch is head and now < self._cpu_due:
            return self._cpu_due
        used = self.proc.cpu_ns()
        if used is None:
            return None  # it has ended: its pidfd says so
        if isinstance(head, _Batch):
            demote_ns *= head.n  # per capsule, as the budget
        if self._cpu_batch is not head:  # first look at this batch: its CPU time counts from here
            self._cpu_batch = head
            self._cpu_mark = used
            self._cpu_due = now + demote_ns
            return self._cpu_due
        left = demote_ns - (used - self._cpu_mark)
        if left > 0:  # it cannot have used the rest before this
            self._cpu_due = now + left
            return self._cpu_due
        self.demoted = head
        self._cpu_batch = None
        try:
            self.proc.lower_priority()
        except OSError as exc:
            log.warning("%s: cannot demote the worker of %s: %s", self.rt.settings.node_name, self.code.short_name, exc)
            return None
        self.rt.counters["worker_demotions"] += 1
        return None

    def _restore(self) -> None:
        """The demoted batch ended (or ``init`` answered): the worker gets the normal priority back."""
        self.demoted = None
        proc = self.proc
        if proc is None or proc.proc.poll() is not None:
            return
        try:
            proc.raise_priority()
        except OSError as exc:  # not allowed after all: a worker left demoted serves no one
            log.warning("%s: cannot restore the worker of %s (%s); replacing it", self.rt.settings.node_name, self.code.short_name, exc)
            if not self.inflight:
                self._down(None)

    # -- the channel ------------------------------------------------------------------
    def _put(self, kind: int, payload: bytes | memoryview) -> None:
        if self.lent is not None:
            self.lent()
        proc = self.proc
        assert proc is not None
        if not proc.ch.down.put(kind, payload):
            raise WorkerError("the channel to the worker is full")
        proc.ch.wake_worker()

    def _wait(self, deadline_ns: int, expect: int) -> list[wire.Value]:
        """Serve the worker's PNI calls until its answer (of kind ``expect``) arrives; a dead
        or late worker raises ``_Died`` (a late one is killed first)."""
        proc = self.proc
        assert proc is not None
        while True:
            vals = self._read(expect, deadline_ns)
            if vals is not None:
                return vals
            proc.ch.wait_up(max(0, deadline_ns - time.monotonic_ns()) / 1e9, proc.pidfd)

    def _read(self, expect: int, deadline_ns: int) -> list[wire.Value] | None:
        """What ``_wait`` does without waiting: the answer when the worker has written it (its
        PNI calls served meanwhile, in an environment of this code object's own), None when
        not yet; ``_Died`` when the worker ended or is past ``deadline_ns`` (killed first)."""
        proc = self.proc
        assert proc is not None
        ch = proc.ch
        while True:
            rec = ch.up.get()
            if rec is None:
                break
            kind, payload, _ = rec
            vals = wire.decode(payload)
            if kind == Kind.CALL:
                reply = self._answer(vals)
                ch.up.release()
                self._put(Kind.REPLY, wire.encode(reply))  # type: ignore[arg-type]
                _end_if_past(proc, deadline_ns)
                continue
            ch.up.release()
            if kind != expect:
                raise WorkerError(f"the worker answered with record kind {kind}, expected {expect}")
            return vals
        if proc.proc.poll() is not None:
            raise proc.death()
        _end_if_past(proc, deadline_ns)
        return None

    def _fail(self, exc: Exception) -> RuntimeFault:
        """The worker is gone or broken: take it down, the fault to count."""
        if isinstance(exc, _Died):
            died = exc
        else:  # a protocol violation: the worker is hostile or broken
            assert self.proc is not None
            self.proc.kill(FaultReason.CRASH)
            died = _Died(FaultReason.CRASH, f"the worker broke its channel's protocol: {exc}")
        self._down(died)
        return RuntimeFault(f"{self.code.short_name}: {died}", died.reason)

    def _control(self, kind: int, payload: bytes | memoryview, deadline_ns: int, raw: bool = False, put: bool = True) -> int:
        if self.lent is not None:
            self.lent()
        if self.init_due is not None:  # a restart's init first: this call goes to a worker past it
            self._init_answered(wait=self.rt.patient)
        if self.demoted is not None:  # the node waits for this answer: not at the lowest priority
            self._restore()
        if self.inflight:  # a control record's answer comes after the verdicts of every batch out
            self.settle(lambda: not self.inflight)
            if self.proc is None:
                raise RuntimeFault(f"{self.code.short_name}: its worker went down", FaultReason.WORKER_DOWN)
        try:
            while self.resets_out:  # answers to resets sent behind batches: read before this one's
                self._wait(deadline_ns, Kind.RESULT)
                self.resets_out -= 1
        except (_Died, WorkerError) as exc:
            raise self._fail(exc) from None
        try:
            if put:
                self._put(kind, payload)
            vals = self._wait(deadline_ns, Kind.RESULT)
        except (_Died, WorkerError) as exc:
            raise self._fail(exc) from None
        return self._result(vals, raw)

    def _result(self, vals: list[wire.Value], raw: bool = False) -> int:
        """A control record's answer: its value, or its fault raised (``CodeObjectError`` when
        ``raw``, else ``RuntimeFault``); a malformed answer takes the worker down."""
        if len(vals) != 3 and len(vals) != 4:
            raise self._fail(WorkerError("malformed result"))
        self.needs_reset = bool(vals[-1])
        if vals[0] == 0 and isinstance(vals[1], int):
            return vals[1]
        reason, message = vals[1], vals[2]
        if not isinstance(reason, bytes) or not isinstance(message, bytes):
            raise self._fail(WorkerError("malformed fault"))
        try:
            why = FaultReason(reason.decode())
        except (UnicodeDecodeError, ValueError):
            why = FaultReason.RUNTIME_ERROR
        if raw:
            raise CodeObjectError(message.decode("utf-8", "replace"), why)
        raise RuntimeFault(message.decode("utf-8", "replace"), why)

    def _budget_deadline(self, n: int) -> int:
        c = self.rt.settings.config
        return time.monotonic_ns() + int((n * c.budget.time_ms + c.worker_grace_ms) * 1_000_000)

    # -- PNI calls the worker forwards -----------------------------------------------
    def _answer(self, vals: list[wire.Value]) -> list[wire.Value]:
        """The reply to a PNI call the worker sent (``_serve``); when the node's side raises, a
        host bug and not the code's, it is logged and the call answered ``BAD_ARGUMENT`` (the
        shape every call's reply can take). A malformed call is the worker's: ``WorkerError``."""
        try:
            return self._serve(vals)
        except WorkerError:
            raise
        except Exception:
            log.exception("%s: serving a PNI call of %s's worker", self.rt.settings.node_name, self.code.short_name)
            return [pni_api.BAD_ARGUMENT, b""]

    def _serve(self, vals: list[wire.Value]) -> list[wire.Value]:
        if len(vals) < 2 or not isinstance(vals[0], bytes) or not isinstance(vals[1], int):
            raise WorkerError("malformed call")
        name = vals[0].decode("ascii", "replace")
        shape = FORWARDED.get(name)
        index = vals[1]
        args = vals[2:]
        if shape is None:
            raise WorkerError(f"the worker asked for {name!r}, which is not a forwarded call")
        want = shape.replace("o", "")
        if len(args) != len(want):
            raise WorkerError(f"{name}: {len(args)} arguments, expected {len(want)}")
        for a, s in zip(args, want, strict=True):
            if (s == "i") != isinstance(a, int):
                raise WorkerError(f"{name}: argument of the wrong type")
        host = self.host
        envs = self._envs
        if 0 <= index < len(envs):
            env = envs[index]
        elif index == -1 and not envs:
            make = self.rt.settings.control_env
            env = make(self.code) if make is not None else host.current
        else:
            raise WorkerError(f"{name}: no capsule {index} in this batch")
        saved = host.current
        host.current = env
        try:
            if name == "state_value":
                if env.code is None:
                    return [NOT_FOUND, b""]
                value = host.node.soft_state(env.code).get(args[0])
                if value is None:
                    return [NOT_FOUND, b""]
                data = value if isinstance(value, bytes) else value.tobytes()
                # larger than the channel carries (as the worker's own puts), or the room is
                # held by the replies of the batch out: refused, and the replies after it fit
                ch = self.proc.ch  # type: ignore[union-attr]
                if len(data) + _REPLY_SLACK > min(ch.max_payload, ch.down.room()):
                    return [NO_SPACE, b""]
                return [len(data), data]
            if "s" in shape:
                data = args[-1]
                assert isinstance(data, bytes)
                handle = env.register(Segment.owned(data))
                return [int(getattr(host, name)(*args[:-1], handle))]
            if "o" in shape:
                out = bytearray(16)
                rc = int(getattr(host, name)(*args, memoryview(out)))
                return [rc, bytes(out)]
            if name == "dep_call":
                return [int(host.dep_call(args[0], args[1], args[2], args[3]))]  # type: ignore[arg-type]
            if name == "dep_export":
                return [self._dep_export(*args)]  # type: ignore[arg-type]
            return [int(getattr(host, name)(*args))]
        finally:
            host.current = saved

    def _dep_export(self, dep: bytes, export: bytes, a0: int, a1: int) -> int:
        """Call ``export`` of ``dep``, a direct dependency of this code object (the node's
        instance of it, in its own runtime), as ``dep_call`` does (a fault is counted against
        it); a dependency further down the closure, in another runtime, is not reachable."""
        deps = self.code.manifest.dependencies
        if dep not in deps:
            return NOT_FOUND
        return int(self.host.dep_call(deps.index(dep), export, a0, a1))

    # -- LoadedCode -------------------------------------------------------------------
    def init(self) -> int:
        if self.proc is None:
            return -1
        return self._control(Kind.INIT, b"", self._init_deadline())

    def accept(self, env: Environment) -> int:
        out = self.accept_batch([env])[0]
        if isinstance(out, RuntimeFault):
            raise out
        return out

    def accept_batch(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        """Hand ``envs`` to the worker and wait for their verdicts (the node's asynchronous
        dispatch uses ``submit`` and ``collect`` instead)."""
        got: list[list[int | RuntimeFault]] = []

        def done(_envs: Sequence[Environment], out: list[int | RuntimeFault], _ns: int) -> None:
            got.append(out)

        while not self.submit(envs, done):  # the ring is full of batches out: wait for one
            self._settle_head()
        self.settle(lambda: bool(got))
        return got[0]

    # -- asynchronous dispatch ----------------------------------------------------------
    def submit(self, envs: Sequence[Environment], done: Done) -> bool:
        """Hand a batch to the worker without waiting: ``done`` is called once with its verdicts
        (from ``collect``), or at once with a fault for each capsule when it cannot be handed
        over. False: the ring holds too much not yet answered, or a restarted worker's ``init``
        has not answered yet; try again after a ``collect`` (or once ``started``). The
        environments (and their capsules) belong to the batch until ``done``."""
        if self.lent is not None:
            self.lent()
        n = len(envs)
        if self.closed:
            done(envs, [RuntimeFault(f"{self.code.short_name}: unloaded", FaultReason.WORKER_DOWN)] * n, 0)
            return True
        try:
            self._ensure()
        except RuntimeFault as fault:
            if self.init_due is not None:
                return False  # its init runs: these wait for it
            done(envs, [fault] * n, 0)
            return True
        proc = self.proc
        assert proc is not None
        ring = proc.ch.down
        hold = ring.head
        body_at = 8 + ((n * _CAP.size + 7) & ~7)
        total = body_at + sum((e.length + 7) & ~7 for e in envs)
        try:
            if self.inflight and ring.room() - total < proc.ch.max_payload:
                return False  # room for a reply to the worker's calls stays free
            view = ring.reserve(Kind.BATCH, total)
        except WorkerError as exc:
            fault = RuntimeFault(f"{self.code.short_name}: a batch of {total} bytes does not fit the channel: {exc}", FaultReason.RUNTIME_ERROR)
            done(envs, [fault] * n, 0)
            return True
        if view is None:
            if self.inflight:
                return False
            done(envs, [RuntimeFault(f"{self.code.short_name}: the channel is full", FaultReason.WORKER_DOWN)] * n, 0)
            return True
        struct.pack_into("<I", view, 0, n)
        pos = 8
        offsets = []
        at = body_at
        for env in envs:
            cap = env.capsule
            assert cap is not None and env.body is not None
            prev = env.prev_hop.raw if env.prev_hop is not None else _NO_HOP
            _CAP.pack_into(view, pos, int(env.origin_kind), cap.hop_limit, env.length, cap.home.raw, cap.name, prev, 0)
            pos += _CAP.size
            env.body.read_into(0, view[at : at + env.length])
            offsets.append(at)
            at += (env.length + 7) & ~7
        ring.commit()
        if not self.inflight:
            ring.hold = hold
        proc.ch.wake_worker()
        self.inflight.append(_Batch(envs, view, offsets, self._budget_ns(n), hold, done))
        self.inflight_n += n
        return True

    def submit_raw(self, n: int, total: int, raw: RawBatch, done: Done) -> tuple[memoryview, memoryview, int, int] | None:
        """Reserve a BATCH record of ``total`` payload bytes for ``n`` capsules that the C fast
        path writes itself, and count it out (behind the batches out, under the same budget):
        (payload view, head view, the head to publish there once the payload is in, the eventfd
        that wakes the worker). Its verdicts go to ``raw.finish``; ``done`` gets None for the
        environments and a fault per capsule when the worker goes down with it, else an empty
        list. None: it cannot go now (no worker up, the ring full): nothing was reserved."""
        if self.lent is not None:
            self.lent()
        proc = self.proc
        if self.closed or proc is None or self.init_due is not None:
            return None
        ring = proc.ch.down
        hold = ring.head
        try:
            if self.inflight and ring.room() - total < proc.ch.max_payload:
                return None
            view = ring.reserve(Kind.BATCH, total)
        except WorkerError:
            return None
        if view is None:
            return None
        head = ring.advance()
        if not self.inflight:
            ring.hold = hold
        self.inflight.append(_Batch(None, view, [], self._budget_ns(n), hold, done, n, raw))
        self.inflight_n += n
        counters = self.rt.counters
        counters["worker_fast_batches"] += 1
        counters["worker_fast_capsules"] += n
        return view, ring.head_view, head, proc.ch.wake_down

    def adopt_raw(self, view: memoryview, raw: RawBatch, n: int, budget_ns: int, hold: int, t0: int, started: int) -> None:
        """Take a batch the fast path's worker lane wrote and still has out (``Offload``) as
        one of this code object's batches out, behind the others, its clock kept."""
        b = _Batch(None, view, [], budget_ns, hold, raw.done, n, raw)  # type: ignore[attr-defined]
        b.t0 = t0
        b.started = started
        if not self.inflight and self.proc is not None:
            self.proc.ch.down.hold = hold
        self.inflight.append(b)
        self.inflight_n += n

    def _budget_ns(self, n: int) -> int:
        c = self.rt.settings.config
        return int((n * c.budget.time_ms + c.worker_grace_ms) * 1_000_000)

    def look_due(self) -> int:
        """When the node must look at the batches out at the latest (monotonic ns): the oldest
        one's budget end, or sooner the time from which its CPU time counts toward demotion
        (``steer``); 1 when there is nothing out (look at once). The fast path's wait goes on
        after a handover until then (``Offload.admit``) instead of turning the event loop, so
        ``steer``'s first look at a batch that is still running comes at most
        ``worker_demote_ms`` per capsule after its start: a runaway batch is demoted once it has
        used that much CPU time from then (at most twice ``worker_demote_ms`` from its start)."""
        if self.lent is not None:
            self.lent()
        due = self.next_deadline()
        if due is None:
            return 1
        head = self.inflight[0]
        demote_ns = self.rt.demote_ns
        if demote_ns and self.demoted is None:
            due = min(due, head.started + demote_ns * head.n)
        return due

    def next_deadline(self) -> int | None:
        """When the oldest batch out runs past its budget (monotonic ns), or None."""
        if self.lent is not None:
            self.lent()
        if not self.inflight:
            return None
        head = self.inflight[0]
        return head.started + head.budget_ns

    def collect(self) -> int:
        """Read what the worker wrote without waiting: serve its PNI calls, carry the verdicts
        of finished batches to their ``done``; a worker dead, late past its budget (killed
        here) or breaking the protocol fails every batch out. Returns the batches finished."""
        if self.lent is not None:
            self.lent()
        proc = self.proc
        if proc is None or not (self.inflight or self.resets_out):
            return 0
        ch = proc.ch
        finished = 0
        try:
            while self.inflight or self.resets_out:
                rec = ch.up.get()
                if rec is None:
                    if not self.inflight:
                        break
                    if proc.proc.poll() is not None:
                        raise proc.death()
                    head = self.inflight[0]
                    _end_if_past(proc, head.started + head.budget_ns)
                    break
                kind, payload, _ = rec
                if kind == Kind.VERDICTS and self.inflight and self.inflight[0].raw is not None:
                    self._finish_raw(payload)
                    finished += 1
                    continue
                if kind == Kind.VERDICTS and self.inflight:
                    head = self.inflight[0]
                    assert head.envs is not None
                    out = self._verdicts(payload, head.envs, head.view, head.offsets)
                    now = self._pop_head()
                    finished += 1
                    head.done(head.envs, out, now - head.t0)
                    continue
                vals = wire.decode(payload)
                if kind == Kind.CALL:
                    if not self.inflight:
                        raise WorkerError("a PNI call with no capsule out")
                    head = self.inflight[0]
                    self._envs = head.envs if head.raw is None else head.raw.environments(head.view)
                    try:
                        reply = self._answer(vals)
                    finally:
                        self._envs = ()
                    ch.up.release()
                    self._put(Kind.REPLY, wire.encode(reply))  # type: ignore[arg-type]
                    _end_if_past(proc, head.started + head.budget_ns)
                    continue
                ch.up.release()
                if kind == Kind.RESULT and self.resets_out > 0 and len(vals) in (3, 4):
                    self.resets_out -= 1  # a reset sent while batches were out: done
                    continue
                raise WorkerError(f"the worker answered with record kind {kind}, expected {Kind.VERDICTS}")
        except (_Died, WorkerError) as exc:
            self._fail_inflight(exc)
        return finished

    def _finish_raw(self, payload: memoryview) -> None:
        """The verdicts of the oldest batch out, one the fast path wrote: carried out by its
        ``raw.finish`` before the record is released, then the batch is done."""
        head = self.inflight[0]
        assert head.raw is not None
        head.raw.finish(head.view, payload)
        now = self._pop_head()
        head.done(head.envs or (), [], now - head.t0)

    def _pop_head(self) -> int:
        """The oldest batch out has had its verdicts read: release its record, take it off,
        and let the next batch's start (its hold on the ring, its budget's clock) begin now;
        returns now."""
        ch = self.proc.ch  # type: ignore[union-attr]
        ch.up.release()
        head = self.inflight.popleft()
        self.inflight_n -= head.n
        now = time.monotonic_ns()
        if self.inflight:
            ch.down.hold = self.inflight[0].hold
            self.inflight[0].started = now
        else:
            ch.down.hold = None
        self.deaths_in_row = 0
        return now

    def _fail_inflight(self, exc: Exception) -> None:
        """The worker is gone: the batch it was running gets the fault of its end, those behind
        it ``worker_down``; each capsule is counted, none is lost."""
        self.resets_out = 0
        batches = list(self.inflight)
        self.inflight.clear()
        self.inflight_n = 0
        fault = self._fail(exc)
        now = time.monotonic_ns()
        for i, b in enumerate(batches):
            f = fault if i == 0 else RuntimeFault(f"{self.code.short_name}: its worker went down before this batch ran", FaultReason.WORKER_DOWN)
            b.done(b.envs or (), [f] * b.n, now - b.t0)

    def settle(self, until: Callable[[], bool]) -> None:
        """Wait for the worker (serving its calls, killing it past a batch's budget) until
        ``until()`` holds or nothing is out."""
        if self.lent is not None:
            self.lent()
        if self.demoted is not None:  # the node waits for it: not at the lowest priority
            self._restore()
        while not until():
            self.collect()
            proc = self.proc
            if until() or proc is None or not self.inflight:
                return
            left = self.inflight[0].started + self.inflight[0].budget_ns - time.monotonic_ns()
            proc.ch.wait_up(max(0, left) / 1e9, proc.pidfd)

    def _settle_head(self) -> None:
        """Wait until the oldest batch out is finished."""
        if self.inflight:
            head = self.inflight[0]
            self.settle(lambda: not self.inflight or self.inflight[0] is not head)

    def reap(self) -> None:
        """The worker ended with nothing out (its pidfd is readable): count its end."""
        if self.lent is not None:
            self.lent()
        proc = self.proc
        if proc is not None and not self.inflight and proc.proc.poll() is not None:
            self.rt.counters["worker_idle_deaths"] += 1
            self._down(proc.death())

    def abandon(self) -> None:
        """Unloading with batches out: each capsule is a fault ``worker_down``."""
        if self.lent is not None:
            self.lent()
        if self.inflight:
            batches = list(self.inflight)
            self.inflight.clear()
            self.inflight_n = 0
            fault = RuntimeFault(f"{self.code.short_name}: unloaded with capsules in its worker", FaultReason.WORKER_DOWN)
            self._down(None)  # it may be in the middle of one of them: it ends here
            for b in batches:
                b.done(b.envs or (), [fault] * b.n, 0)

    def _verdicts(self, payload: memoryview, envs: Sequence[Environment], view: memoryview, offsets: list[int]) -> list[int | RuntimeFault]:
        """The verdicts of a batch (``pan_runtime.isolation.verdicts``, every field checked:
        ``WorkerError``); the bodies of capsules that ran are copied back (the code may have
        rewritten them in place), their usage recorded."""
        self.needs_reset, got = verdicts.decode(payload, len(envs))
        out: list[int | RuntimeFault] = []
        for i, (env, (value, steps, fuel)) in enumerate(zip(envs, got, strict=True)):
            env.usage.steps = steps
            env.usage.fuel = fuel
            if isinstance(value, int):
                body = env.body
                assert body is not None
                body.write_from(0, view[offsets[i] : offsets[i] + env.length])
            out.append(value)
        return out

    def call_export(self, name: str, a0: int, a1: int) -> int:
        if name not in self.code.manifest.exports:
            return super().call_export(name, a0, a1)
        try:
            self._ensure()
        except RuntimeFault:
            raise
        return self._control(Kind.EXPORT, wire.encode([name.encode(), a0, a1]), self._budget_deadline(1))  # type: ignore[arg-type]

    def reset(self) -> None:
        if self.lent is not None:
            self.lent()
        self.needs_reset = False
        if self.proc is not None and self.inflight:
            # batches are out (this runs from a verdict's fault): the reset goes down behind
            # them and its answer is read among their verdicts
            try:
                self._put(Kind.RESET, b"")
            except WorkerError:
                return  # the ring is full of batches: the next fault asks again
            self.resets_out += 1
            return
        if self.proc is not None and self.init_due is None:  # a worker still in init is a fresh one
            self._control(Kind.RESET, b"", time.monotonic_ns() + self.rt.settings.config.worker_start_ms * 1_000_000)

    def finalize(self) -> int:
        if self.proc is None or self.init_due is not None:
            return 0  # no worker, or one whose init has not answered: nothing to finalize
        try:
            return self._control(Kind.FINALIZE, b"", self._budget_deadline(1))
        except RuntimeFault:
            return -1

    def unload(self) -> None:
        self.closed = True
        self.abandon()
        self.stop()
