"""Capsules handed to worker processes: the node's side of asynchronous dispatch.

A code object in process isolation (``pan_runtime.isolation.supervisor.WorkerCode``) gets its
capsules in batches the node hands over without waiting (``WorkerCode.submit``); the node goes
on serving everything else. When the worker writes (its eventfd, watched by the node's event
loop) or ends (its pidfd), ``collect`` reads the verdicts, serves the PNI calls the worker
sent, and the node carries the verdicts out (``Node.finish``: forward, deliver, drop, counted
as any). A batch's budget is watched from outside (``tick``: the worker is killed past
``batch × Budget.time_ms + worker_grace_ms`` from when it could start the batch); a worker that
dies or is killed fails every capsule out, each counted as a fault with a reason.

Bounds: at most ``limits.worker_inflight`` capsules out per worker; past it, a code object's
capsules wait here, in order, up to ``limits.worker_queue``, and past that are dropped
(``worker_busy``). Capsules of one code object keep their order (one ring, one worker, one
queue). A node without an event loop (``asynchronous`` False: a bare ``Node`` driven by
``process``) waits for each batch as before, so ``process`` returns with its verdicts carried out.

Worker lanes: under the UDP fast path's wait (``attach`` with ``ready``), a code object's
worker gets a lane (``lane_type``, the fast path's ``WorkerLane``, given by the net layer):
C admits the capsules of a receive into the worker's ring and carries out plain verdicts
(forwards, drops) without the node's Python, while the node GRANTS it the channel (``_grant``:
nothing of the node's own out, waiting or pending for that worker, the worker up and not
demoted, its breaker closed). One authority at a time: the node TAKES the lane back
(``_take``, through ``WorkerCode.lent``) before it does anything with the worker (a budget
or demotion look in ``tick``, the worker's end, a batch of its own, a verdict C leaves to it,
closing), and the batches C has out then become ordinary batches out (``FastBatch``), so
budgets, deaths, faults and order are the node's as for any batch. C's counts go into the
node's statistics on every look at them (``sync_lanes``, one of the node's
``counter_sources``), and whenever the lane is taken.
"""

from __future__ import annotations

import functools
import os
import select
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import FaultReason, RuntimeFault
from pan_runtime.isolation.supervisor import WorkerCode, WorkerRuntime
from pan_runtime.node.config import POLL_SPIN_US
from pan_runtime.node.env import Environment
from pan_runtime.node.fastbatch import FastBatch, finish_left

if TYPE_CHECKING:
    from pan_runtime.isolation.supervisor import _Process
    from pan_runtime.node.cache import CacheEntry
    from pan_runtime.node.node import Node

__all__ = ["Offload"]

#: how often the loop looks whether a standby a restart waits for has finished starting
_STANDBY_POLL_NS = 2_000_000
#: watch descriptor ``fd`` for reading and call the callable when it is readable
Watch = Callable[[int, Callable[[], None]], None]


class Offload:
    """Batches out to workers, capsules waiting for them, and the descriptors watched."""

    def __init__(self, node: Node):
        self.node = node
        c = node.config
        self.inflight_limit = c.worker_inflight
        self.queue_limit = c.worker_queue
        #: hand over and go on (a driver polls: ``poll``, ``tick``, or the watched descriptors)
        self.asynchronous = False
        #: capsules waiting for their code object's worker to catch up, in order
        self.waiting: dict[WorkerCode, deque[Environment]] = {}
        #: code objects with batches out
        self.busy: dict[WorkerCode, CacheEntry] = {}
        self._watch: Watch | None = None
        self._unwatch: Callable[[int], None] | None = None
        self._ready_watch: Callable[[int, Callable[..., int]], None] | None = None
        self._watched: dict[WorkerCode, tuple[int, ...]] = {}
        #: every worker process's pidfd watched (code objects' workers, standbys, spares)
        self._pidfds: dict[int, _Process] = {}
        #: ``WorkerRuntime.spawns`` when its processes were last looked at
        self._spawns: dict[WorkerRuntime, int] = {}
        #: workers demoted for a batch running long, until they are restored (``steer``; a
        #: restart's ``init`` running long is restored when it answers, ``WorkerCode.started``)
        self._lowered: set[WorkerCode] = set()
        #: code objects whose worker ended idle, waiting for their back-off to restart it
        self._reviving: set[WorkerCode] = set()
        #: code objects whose restarted worker runs ``init``: their capsules wait here for it
        self._starting: set[WorkerCode] = set()
        self._free: list[Environment] = []
        self._entries: dict[WorkerCode, CacheEntry] = {}
        #: capsules handed over and dropped for want of room (counted on the code object too)
        self.handed = 0
        self.dropped = 0
        #: batches the fast path handed over (``admit``) and workers' verdicts collected from its
        #: wait (``_collected``), after which the wait went on without a turn of the event loop
        self.handovers_kept = 0
        self.collects_kept = 0
        #: the fast path's ``WorkerLane`` type (set by the net layer), or None: no lanes
        self.lane_type: Callable[..., Any] | None = None
        #: each worker code object's lane and its cache entry
        self._lanes: dict[WorkerCode, tuple[Any, CacheEntry]] = {}
        #: batches admitted and batches finished by C in a worker lane (no Python for them)
        self.lane_admitted = 0
        self.lane_finished = 0
        #: lane collects whose verdicts the fast path's wait found by spinning (a polling worker)
        self.lane_spun = 0
        #: lane batches handed to a worker that was not polling: its eventfd written to wake it
        self.lane_woke = 0
        #: ``NodeConfig.worker_poll_ns`` when the loop attached (0: the workers do not poll)
        self._poll_ns = 0
        node.counter_sources.append(self.sync_lanes)

    # -- drivers ------------------------------------------------------------------------
    def attach(self, watch: Watch, unwatch: Callable[[int], None], ready: Callable[[int, Callable[..., int]], None] | None = None) -> None:
        """Run asynchronously under an event loop that watches each busy worker's eventfd and
        every worker process's pidfd (``watch(fd, callback)``) and calls ``tick`` at least when
        it returns. ``ready(fd, callback)``, when the loop has it, watches a worker's eventfd
        with a callback its wait may call without returning (``EventLoop.add_ready``): the
        callback says by when the loop must turn (``_collected``)."""
        self._watch = watch
        self._unwatch = unwatch
        self._ready_watch = ready
        self.asynchronous = True
        self._poll_ns = self.node.config.worker_poll_ns()  # the node's CPUs as it runs now
        self._sweep()

    def poll(self) -> bool:
        """Collect what every busy worker wrote (a driver without descriptors to watch calls
        this); whether batches are still out."""
        for wc in list(self.busy):
            wc.collect()
            self._settled(wc)
        return bool(self.busy)

    def wait(self, timeout_s: float) -> bool:
        """Block until a busy worker writes or ends (at most ``timeout_s``, less when a batch's
        budget ends sooner), then ``poll``: for a driver with nothing else to do."""
        if not self.busy:
            return False
        due = self.tick()
        poller = select.poll()
        for wc in self.busy:
            if wc.proc is not None:
                poller.register(wc.proc.ch.wake_up, select.POLLIN)
                poller.register(wc.proc.pidfd, select.POLLIN)
        limit = timeout_s if due is None else min(timeout_s, due)
        for fd, _ in poller.poll(max(0, int(limit * 1000 + 0.999))):
            try:
                os.eventfd_read(fd)
            except OSError:  # the pidfd, or a count already read
                pass
        return self.poll()

    def tick(self) -> float | None:
        """Kill workers past a batch's budget (failing their capsules), demote those whose
        batch runs past ``worker_demote_ms`` and restore them when it ends, read restarted
        workers' answers to ``init`` (demoting those whose ``init`` runs past
        ``worker_demote_ms``: restored when it answers), restart workers that ended idle once
        their back-off has passed, and watch new worker processes' pidfds; the seconds until the
        next such deadline, or None."""
        self._sweep()
        now = self.node_now()
        nearest: int | None = None
        for wc, (lane, _entry) in list(self._lanes.items()):
            if lane.out:  # C's batches out: the node looks at them from their budget or demotion look on
                due = lane.due()
                if due <= now:
                    self._take(wc)
                elif nearest is None or due < nearest:
                    nearest = due
        for wc in list(self.busy):
            due = wc.next_deadline()
            if due is not None and due <= now:
                wc.collect()
                self._settled(wc)
                due = wc.next_deadline()
            if due is not None and (nearest is None or due < nearest):
                nearest = due
            low = wc.steer(now)
            if wc.demoted is not None:
                self._lowered.add(wc)
            if low is not None and (nearest is None or low < nearest):
                nearest = low
        for wc, (lane, _entry) in list(self._lanes.items()):
            if not lane.granted and wc not in self.busy:
                self._grant(wc)  # nothing of the node's in the way any more (a restart, a restore)
        for wc in [w for w in self._lowered if w not in self.busy or w.demoted is None]:
            wc.steer(now)  # its demoted batch ended: restored
            if wc.demoted is None:
                self._lowered.discard(wc)
        for wc in list(self._starting):
            if not self._started(wc):
                # its eventfd may be watched, or not yet; an init running long is demoted as a
                # batch is (restored when it answers)
                due = min(wc.init_due or now, now + _STANDBY_POLL_NS)
                low = wc.steer(now)
                if low is not None and low < due:
                    due = low
                if nearest is None or due < nearest:
                    nearest = due
        for wc in list(self._reviving):
            if wc.closed or wc.proc is not None or (now >= wc.restart_at and not wc.awaiting_standby()):
                self._reviving.discard(wc)
                self._revive(wc)
                continue
            due = wc.restart_at if now < wc.restart_at else now + _STANDBY_POLL_NS
            if nearest is None or due < nearest:
                nearest = due
        return None if nearest is None else max(0.0, (nearest - now) / 1e9)

    def out_look(self) -> float | None:
        """``tick`` for a thread other than the event loop's (a fast-path lane, which may have
        handed batches over itself): the seconds until its next look, or None when nothing is
        out. The loop's own wait was timed before such a batch went down and may sleep past
        its budget and demotion looks, so the thread that handed it over makes them."""
        if not self.busy and not any(lane.out for lane, _entry in self._lanes.values()):
            return None
        return self.tick()

    @staticmethod
    def node_now() -> int:
        import time

        return time.monotonic_ns()

    # -- dispatch -----------------------------------------------------------------------
    def env(self) -> Environment:
        return self._free.pop() if self._free else Environment()

    def run(self, entry: CacheEntry, envs: Sequence[Environment]) -> None:
        """Hand ``envs`` (set up, owned by the batch from now on) to ``entry``'s worker, or queue
        them behind what waits for it; without an event loop, wait for them."""
        wc = entry.loaded
        assert isinstance(wc, WorkerCode)
        if wc.lent is not None:
            wc.lent()
        entry.stats.capsules_in += len(envs)
        self._entries[wc] = entry
        if self.asynchronous:
            envs = self._within_pool(entry, wc, envs)
            if not envs:
                return
        q = self.waiting.get(wc)
        if q is None and (not wc.inflight or wc.inflight_n + len(envs) <= self.inflight_limit) and self._submit(entry, wc, envs):
            pass
        else:
            self._queue(entry, wc, envs)
        if not self.asynchronous:
            wc.settle(lambda: not wc.inflight and wc not in self.waiting)
            self._settled(wc)

    def door(self, entry: CacheEntry) -> Callable[..., Any] | None:
        """What the C fast path calls to write a batch of ``entry``'s capsules into its
        worker's ring itself (``admit``); None for code that does not run in a worker."""
        wc = entry.loaded
        if type(wc) is not WorkerCode:
            return None
        admit = functools.partial(self.admit, entry)
        if self.lane_type is None:
            return admit
        got = self._lanes.get(wc)
        if got is not None and got[1] is entry:
            return got[0]
        if got is not None:
            self._take(wc)
        lane = self.lane_type(admit, lambda in_wait=True, wc=wc: self._collected(wc, in_wait),
                              functools.partial(self._lane_left, wc, entry))
        self._lanes[wc] = (lane, entry)
        if wc in self._watched:  # its eventfd's callback becomes the lane
            self._forget(wc)
            self._watch_fds(wc)
        return lane

    def admit(self, entry: CacheEntry, n: int, total: int, meta: bytes, owner: Any) -> tuple[memoryview, memoryview, int, int, int] | None:
        """The C fast path read ``n`` capsules of ``entry`` in one receive and writes them into
        its worker's ring as one BATCH of ``total`` payload bytes if the node takes them now as
        ``run`` would hand them over at once: nothing of it waiting, within
        ``limits.worker_inflight`` and the pool bound, its worker up. Where C writes
        (``WorkerCode.submit_raw``) and when the event loop must look at the batches out
        (``WorkerCode.look_due``: C's wait goes on until the worker writes or then, without a
        turn of the loop for the handover), or None: C gives each capsule to the node's own
        path, which queues, sheds or restarts as always. ``meta``: what C keeps of each capsule
        (``FastBatch``); ``owner``: the ``UdpFastPath``."""
        wc = entry.loaded
        assert isinstance(wc, WorkerCode)
        if wc.lent is not None:  # its lane did not take these (a bound, the ring): the node looks
            wc.lent()
        if not self.asynchronous or wc in self.waiting or wc.proc is None or wc.init_due is not None:
            return None
        if wc.inflight and wc.inflight_n + n > self.inflight_limit:
            return None
        c = self.node.config
        if wc.inflight_n + n > max(1, (c.pool_buffers - c.pool_reserve) // 2) or self.node.pool.available < c.pool_reserve:
            return None
        raw = FastBatch(self, entry, wc, meta, owner)
        got = wc.submit_raw(n, total, raw, raw.done)
        if got is None:
            return None
        entry.stats.capsules_in += n
        self._entries[wc] = entry
        self.handed += n
        self.busy[wc] = entry
        self._watch_fds(wc)
        if self._ready_watch is None:
            return (*got, 1)  # the loop turns at once, as before
        self.handovers_kept += 1
        return (*got, wc.look_due())

    def _within_pool(self, entry: CacheEntry, wc: WorkerCode, envs: Sequence[Environment]) -> Sequence[Environment]:
        """The capsules of ``envs`` the node may hold for ``wc``'s worker; the rest dropped
        (``worker_busy``). Each holds a receive buffer until its verdict is back, so capsules
        out or waiting may not take the pool's reserve (``limits.pool_reserve``), nor one code
        object more than half of the rest: a slow worker cannot starve the node's receives."""
        node, c = self.node, self.node.config
        share = max(1, (c.pool_buffers - c.pool_reserve) // 2)
        held = wc.inflight_n + len(self.waiting.get(wc, ()))
        keep = []
        for env in envs:
            if held >= share:
                self._shed(entry, env, f"{held} capsules of it are out or waiting for its worker: half the pool "
                                       "beyond its reserve (limits.pool_buffers, limits.pool_reserve)")
            elif node.pool.available < c.pool_reserve:
                self._shed(entry, env, f"the receive pool is down to {node.pool.available} buffers, below its reserve "
                                       f"of {c.pool_reserve} (limits.pool_reserve), with capsules out to workers")
            else:
                keep.append(env)
                held += 1
        return keep

    def _shed(self, entry: CacheEntry, env: Environment, why: str) -> None:
        """Drop ``env``'s capsule as ``worker_busy`` and give its buffer back."""
        cap = env.capsule
        self.dropped += 1
        self.node._drop(entry, FaultReason.WORKER_BUSY.value, why, cap)
        env.clear()
        if cap is not None:
            cap.release()
        self._free.append(env)

    def _queue(self, entry: CacheEntry, wc: WorkerCode, envs: Sequence[Environment]) -> None:
        q = self.waiting.setdefault(wc, deque())
        for env in envs:
            if len(q) >= self.queue_limit:
                self._shed(entry, env, f"{len(q)} capsules wait for its worker (limits.worker_queue)")
            else:
                q.append(env)
        if not q:
            del self.waiting[wc]

    def _submit(self, entry: CacheEntry, wc: WorkerCode, envs: Sequence[Environment]) -> bool:
        def done(envs: Sequence[Environment], out: list[int | RuntimeFault], time_ns: int) -> None:
            self._done(entry, wc, envs, out, time_ns)

        if not wc.submit(envs, done):
            if wc.init_due is not None:  # a restart's init runs: they wait for it (``_started``)
                self._starting.add(wc)
                self._watch_fds(wc)
            return False
        self.handed += len(envs)
        if wc.inflight:
            self.busy[wc] = entry
            self._watch_fds(wc)
        return True

    def _done(self, entry: CacheEntry, wc: WorkerCode, envs: Sequence[Environment], out: list[int | RuntimeFault], time_ns: int) -> None:
        node = self.node
        per = time_ns // max(1, len(envs))
        for env, verdict in zip(envs, out, strict=True):
            cap = env.capsule
            assert cap is not None
            node.finish(entry, env, cap, verdict, per)
        self._free.extend(envs)
        self._pump(entry, wc)

    def _pump(self, entry: CacheEntry, wc: WorkerCode) -> None:
        """Hand waiting capsules of ``entry`` over while its worker has room."""
        q = self.waiting.get(wc)
        if q is None:
            return
        batch = max(1, self.node.config.batch)
        while q and (not wc.inflight or wc.inflight_n < self.inflight_limit):
            n = min(batch, len(q), max(1, self.inflight_limit - wc.inflight_n))
            envs = [q.popleft() for _ in range(n)]
            if not self._submit(entry, wc, envs):
                q.extendleft(reversed(envs))
                break
        if not q and self.waiting.get(wc) is q:
            del self.waiting[wc]

    def _settled(self, wc: WorkerCode) -> None:
        if not wc.inflight:
            entry = self.busy.pop(wc, None)
            if entry is not None and wc in self.waiting:
                self._pump(entry, wc)
            if wc not in self.busy and wc not in self.waiting:
                self._entries.pop(wc, None)

    # -- the event loop's descriptors ---------------------------------------------------
    def _watch_fds(self, wc: WorkerCode) -> None:
        """Watch a busy worker's eventfd (it wrote); its pidfd is watched from its start."""
        if self._watch is None or wc in self._watched or wc.proc is None:
            return
        proc = wc.proc
        self._watch_proc(wc.rt, proc)
        fds = (proc.ch.wake_up,)
        wc.on_down = self._forget
        ready = self._ready_watch
        lane = self._lanes.get(wc)
        for fd in fds:
            if ready is not None and lane is not None:
                ready(fd, lane[0])  # C collects what it can, calls _collected for the rest
            elif ready is not None:
                ready(fd, lambda in_wait=True, wc=wc: self._collected(wc, in_wait))
            else:
                self._watch(fd, lambda wc=wc: self._ready(wc))
        self._watched[wc] = fds

    def _sweep(self) -> None:
        """Watch the pidfd of every worker process started since the last look (cheap when
        none was: one counter per runtime)."""
        if self._watch is None:
            return
        for rt in self.node.codes.runtimes.values():
            if isinstance(rt, WorkerRuntime) and self._spawns.get(rt) != rt.spawns:
                rt.patient = False  # the loop comes back for a standby still starting
                self._spawns[rt] = rt.spawns
                for proc in rt.processes():
                    self._watch_proc(rt, proc)

    def _watch_proc(self, rt: WorkerRuntime, proc: _Process) -> None:
        if self._watch is None or proc.pidfd in self._pidfds:
            return
        self._pidfds[proc.pidfd] = proc
        proc.on_close = self._unwatch_proc
        self._watch(proc.pidfd, lambda: self._ended(rt, proc))

    def _unwatch_proc(self, proc: _Process) -> None:
        """``proc``'s descriptors are about to close: stop watching its pidfd."""
        if self._pidfds.get(proc.pidfd) is proc:
            del self._pidfds[proc.pidfd]
            if self._unwatch is not None:
                self._unwatch(proc.pidfd)

    def _ended(self, rt: WorkerRuntime, proc: _Process) -> None:
        """A worker process ended (its pidfd is readable). A code object's worker with batches
        out fails them (each capsule counted); one that was idle is counted
        (``worker_idle_deaths`` and the reason of its end) and started again at once, or after
        its back-off (one that died busy is, as before, on its next capsule: a code object whose
        capsules keep killing its worker is quarantined, and restarting it meanwhile would only
        cost standby starts). A standby or spare is replaced."""
        owner = next((wc for wc in rt.live if wc.proc is proc), None)
        if owner is not None and owner.lent is not None:
            owner.lent()
        idle = owner is not None and not owner.inflight
        if owner is None:
            rt.prune()
        elif owner.inflight:
            owner.collect()
            self._settled(owner)
        else:
            owner.reap()
        if self._pidfds.get(proc.pidfd) is proc and proc.proc.poll() is not None:
            self._unwatch_proc(proc)  # not closed by the above (a process no one holds)
        if idle and owner is not None and owner.proc is None:
            self._revive(owner)
        self._sweep()

    def _revive(self, wc: WorkerCode) -> None:
        """Start ``wc``'s worker again now, or when its back-off has passed (``tick``)."""
        if wc.closed or wc.proc is not None:
            return
        if self.node_now() < wc.restart_at or wc.awaiting_standby():
            self._reviving.add(wc)
            return
        if wc.restart() and wc.proc is not None:
            self._watch_proc(wc.rt, wc.proc)
            if wc.init_due is not None:  # its init's answer is read when the worker writes, or by tick
                self._starting.add(wc)
                self._watch_fds(wc)
                return
            self._pump_waiting(wc)

    def _pump_waiting(self, wc: WorkerCode) -> None:
        """Hand over the capsules waiting for ``wc``'s worker, now that it is up (``_pump``)."""
        entry = self._entries.get(wc)
        if entry is not None:
            self._pump(entry, wc)

    def _started(self, wc: WorkerCode) -> bool:
        """Whether ``wc``'s restarted worker has answered ``INIT`` (read now, without waiting;
        killed when past ``worker_init_ms``); once it has, or has failed, the capsules waiting
        for it go (or are dropped as ``worker_down`` when it failed) and its lane may be granted."""
        if not wc.closed and not wc.started():
            return False
        self._starting.discard(wc)
        self._pump_waiting(wc)
        if wc.proc is not None and wc not in self.busy:
            self._grant(wc)
        return True

    def _forget(self, wc: WorkerCode) -> None:
        """The worker's descriptors are about to close: stop watching them."""
        fds = self._watched.pop(wc, ())
        if self._unwatch is not None:
            for fd in fds:
                self._unwatch(fd)

    def _ready(self, wc: WorkerCode) -> int:
        """Collect what ``wc``'s worker wrote (or see to its start or end): the batches it finished."""
        if wc.lent is not None:
            wc.lent()
        proc = wc.proc
        if proc is None:
            self._forget(wc)
            return 0
        try:
            os.eventfd_read(proc.ch.wake_up)
        except (BlockingIOError, OSError):
            pass
        if wc.init_due is not None:
            self._started(wc)
        elif wc.inflight:
            finished = wc.collect()
            self._settled(wc)
            return finished
        else:
            wc.reap()  # the worker ended with nothing out (seen here before its pidfd was)
            if wc.proc is None or wc.proc is not proc:
                self._forget(wc)
            if wc.proc is None:
                self._revive(wc)  # as ``_ended`` would: its pidfd finds no owner any more
        return 0

    def _collected(self, wc: WorkerCode, in_wait: bool = True) -> int:
        """``_ready`` called from the fast path's wait, which goes on waiting unless this says
        otherwise: by when the event loop must turn (monotonic ns, ``WorkerCode.look_due`` of
        the batches still out; 0: no need; 1: at once). At once whenever the collect left
        anything for the loop: capsules queued for the node, a worker demoted, restarting or
        started, or this worker's process changed (gone, failed, replaced)."""
        proc = wc.proc
        rt = wc.rt
        spawns = rt.spawns
        finished = self._ready(wc)
        if (wc.proc is not proc or proc is None or rt.spawns != spawns or self.node.queue or self._lowered
                or self._reviving or wc.demoted is not None or wc in self.waiting):
            return 1
        if in_wait and finished:  # a wake-up that found nothing new (one read already) is no collect
            self.collects_kept += 1
        if wc.inflight:
            return wc.look_due()
        self._grant(wc)
        return 0

    # -- worker lanes ---------------------------------------------------------------------
    def _lane_left(self, wc: WorkerCode, entry: CacheEntry, owner: Any, rest: list[Any], per_ns: int) -> int:
        """What ``wc``'s lane left of a batch it collected (delivers, forwards C cannot route; a
        fault leaves the whole record to ``_collected``), finished here with the lane kept; by
        when the loop must turn, as ``_collected`` says it."""
        finish_left(self, entry, owner, rest, per_ns)
        return 1 if self.node.queue else 0

    def _grant(self, wc: WorkerCode) -> None:
        """Give ``wc``'s channel to its lane when nothing of the node's is in the way."""
        got = self._lanes.get(wc)
        proc = wc.proc
        if (got is None or proc is None or wc.lent is not None or wc.closed or wc.inflight or wc.resets_out
                or wc.init_due is not None
                or wc in self.waiting or wc.demoted is not None or wc.needs_reset or not self.asynchronous
                or self._ready_watch is None or proc.ch.down.hold is not None):
            return
        lane, entry = got
        if entry.loaded is not wc or entry.breaker.open_until:
            return
        if wc not in self._watched:
            self._watch_fds(wc)
            if wc not in self._watched:
                return
        c = self.node.config
        ms = 1_000_000
        ch = proc.ch
        # a worker polling on CPUs of its own answers within µs: the wait spins for it first
        spin = min(self._poll_ns, POLL_SPIN_US * 1000)
        lane.grant(ch.view, ch.down.head_at, ch.up.head_at, ch.ring_size, ch.down.head, ch.up.cursor, ch.wake_down,
                   ch.wake_up, int(c.budget.time_ms * ms), int(c.worker_grace_ms * ms), int(wc.rt.demote_ns or 0),
                   self.inflight_limit, max(1, (c.pool_buffers - c.pool_reserve) // 2), spin)
        wc.lent = functools.partial(self._take, wc)

    def _take(self, wc: WorkerCode) -> None:
        """Take ``wc``'s channel back from its lane: C's counts into the node's, the ring
        positions into its ``Ring`` objects, each batch C has out into ``wc``'s batches out."""
        wc.lent = None
        got = self._lanes.get(wc)
        if got is None:
            return
        lane, entry = got
        self._pull(wc, lane, entry)
        back = lane.take()
        if wc.closed:
            del self._lanes[wc]
        if back is None:
            return
        head, read, batches = back
        proc = wc.proc
        assert proc is not None  # its process changes only through wc, which takes the lane first
        ch = proc.ch
        ch.down.adopt(head=head)
        ch.up.adopt(read=read)
        for meta, at, total, hold, t0, started, budget_ns, n, owner in batches:
            raw = FastBatch(self, entry, wc, meta, owner)
            raw.t0 = t0
            wc.adopt_raw(ch.view[at : at + total], raw, n, budget_ns, hold, t0, started)
        if wc.inflight:
            self._entries[wc] = entry
            self.busy[wc] = entry
            self._watch_fds(wc)

    def _pull(self, wc: WorkerCode, lane: Any, entry: CacheEntry) -> None:
        """Fold what ``wc``'s lane counted into the node's counters."""
        cin, batches, forwarded, dropped, lost, steps, fuel, time_ns, max_ns, done, handovers, collects, spun, woke = lane.pull()
        self.lane_spun += spun
        self.lane_woke += woke
        if not (cin or done or collects):
            return
        entry.stats.capsules_in += cin
        entry.stats.add_finished_in_c(forwarded, dropped, lost, steps, fuel, time_ns, max_ns)
        counters = wc.rt.counters
        counters["worker_fast_batches"] += batches
        counters["worker_fast_capsules"] += cin
        self.handed += cin
        self.handovers_kept += handovers
        self.collects_kept += collects
        self.lane_admitted += batches
        self.lane_finished += done
        if done:
            wc.deaths_in_row = 0

    def sync_lanes(self) -> None:
        """Fold every lane's counts into the node's (before any statistics are read)."""
        for wc, (lane, entry) in list(self._lanes.items()):
            self._pull(wc, lane, entry)

    def close(self) -> None:
        """The node closes: every capsule out or waiting is counted (``worker_down``)."""
        for wc in list(self._lanes):
            self._take(wc)
        self._lanes.clear()
        for wc, q in list(self.waiting.items()):
            entry = self._entries.get(wc)
            for env in q:
                cap = env.capsule
                if entry is not None:
                    self.node._drop(entry, FaultReason.WORKER_DOWN.value, "the node closed", cap)
                env.clear()
                if cap is not None:
                    cap.release()
        self.waiting.clear()
        for wc in list(self.busy):
            wc.abandon()
        self.busy.clear()
        for wc in list(self._watched):
            self._forget(wc)
        for proc in list(self._pidfds.values()):
            self._unwatch_proc(proc)
            proc.on_close = None
        self._lowered.clear()
        self._reviving.clear()
        self._starting.clear()
        self._watch = None
        self._ready_watch = None

    def statistics(self) -> dict[str, int]:
        self.sync_lanes()
        return {
            "inflight": sum(wc.inflight_n for wc in self.busy) + sum(lane.out for lane, _ in self._lanes.values()),
            "waiting": sum(len(q) for q in self.waiting.values()),
            "handed": self.handed,
            "busy_drops": self.dropped,
            "handovers_kept": self.handovers_kept,
            "collects_kept": self.collects_kept,
            "lane_admitted": self.lane_admitted,
            "lane_finished": self.lane_finished,
            "lane_spun": self.lane_spun,
            "lane_woke": self.lane_woke,
        }
