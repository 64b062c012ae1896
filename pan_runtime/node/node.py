"""The node: takes capsules from its queue, finds their code, runs it in an environment,
carries out what the code decided, and keeps counting.

No I/O of its own: links and applications hand it capsules (``node/queue.py`` holds them) and
what leaves goes to a link; the caller drives it (an in-process ``Network``, a UDP event
loop, a test), with ``now_ns`` from an injectable clock.

Dispatch: parse -> look up code -> environment -> runtime ``accept`` (alone, or in a batch
with capsules of the same code object already queued) -> carry out the verdict -> release.
A capsule that is malformed, whose code faults or exceeds its budget, or that cannot be
routed is dropped and counted with a reason; the node goes on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from pan_runtime.data.address import ADDRESS_SIZE, NodeAddress
from pan_runtime.data.capsule import FLAG_SYSTEM, Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment, SegmentPool
from pan_runtime.data.wire import HEADER_SIZE, NAME_OFFSET, NAME_SIZE
from pan_runtime.errors import CapsuleError, ClosedError, OwnershipError, PanError, RuntimeFault
from pan_runtime.isolation.supervisor import WorkerCode
from pan_runtime.node import pni, stats
from pan_runtime.node.cache import CacheEntry
from pan_runtime.node.codetable import CodeTable
from pan_runtime.node.config import NodeConfig
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.events import CapsuleDropped, Event
from pan_runtime.node.faultlog import FaultLog
from pan_runtime.node.ledger import Ledger
from pan_runtime.node.links import AppLink, Delivery, NetLink
from pan_runtime.node.offload import Offload
from pan_runtime.node.pins import Pins
from pan_runtime.node.ports import Ports, may_force
from pan_runtime.node.queue import CapsuleQueue, Queued
from pan_runtime.node.quota import BufferQuota
from pan_runtime.node.services import Services
from pan_runtime.node.softstate import SoftStateStore
from pan_runtime.node.stats import NodeStats
from pan_runtime.node.trust import CodeOrigin, TrustPolicy
from pan_runtime.plugin.loadjob import LoadJob
from pan_runtime.plugin.plugins import Plugins, default_plugins
from pan_runtime.plugin.runtime import Runtime, as_fault

__all__ = ["Node", "NodeConfig"]

log = logging.getLogger("pan.node")

_KIND_MASK = 0xFF
_NETWORK = Origin.NETWORK
_FORWARD = pni.VERDICT_FORWARD
_DELIVER = pni.VERDICT_DELIVER
_DONE = pni.VERDICT_DONE
_DROP = pni.VERDICT_DROP
_NAME_END = NAME_OFFSET + NAME_SIZE


class Node:
    """An active node. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        address: NodeAddress | str | int,
        *,
        config: NodeConfig | None = None,
        trust: TrustPolicy | None = None,
        plugins: Plugins | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        name: str | None = None,
    ):
        if isinstance(address, int):
            address = NodeAddress.from_int(address)
        elif isinstance(address, str):
            address = NodeAddress.parse(address)
        self.address = address
        self._address_raw = address.raw
        self.name = name or str(address)
        self.config = config or NodeConfig()
        self.trust = trust or TrustPolicy()
        self.plugins = plugins if plugins is not None else default_plugins()
        self.now_ns = clock
        self.pool = SegmentPool(self.config.pool_buffer_size, self.config.pool_buffers)
        #: what code objects may hold of the pool past their calls, and the reserve they may not
        self.buffers = BufferQuota(self.pool, self.config.code_buffers, self.config.pool_reserve)
        #: the node-wide bound on soft state, shared by every code object's
        self.soft_state = SoftStateStore(self.config.state_total_bytes)
        #: what the PNI host asks of the node; keeps the neighbours, routes and application links
        self.services = Services(self)
        self.routes = self.services.routes
        self.neighbors = self.services.neighbors
        self.host = pni.PniServer(self.services, logging.getLogger(f"pan.code.{self.name}"), clock)
        #: outside run/finish no capsule's environment is current: a host call then comes from
        #: code the fast path is running, and the server has its environment built (``build``)
        self.host.current = self.host.unbuilt
        #: the runtimes and the code objects loaded into them
        self.codes = CodeTable(self)
        self.cache = self.codes.cache
        self.disk = self.codes.disk
        #: which application link owns each port, and who pins which code object
        self.ports = Ports(self, self.config.app_ports)
        self.pins = Pins(self)
        #: callables that fold counters kept elsewhere into the node's (see ``sync_counters``)
        self.counter_sources: list[Callable[[], None]] = []
        self.stats = NodeStats()
        self.events: deque[Event] = deque(maxlen=1000)
        self.on_event: Callable[[Event], None] | None = None
        #: what each neighbour's capsules cost, and the neighbours throttled for it
        self.ledger = Ledger(self.config, clock, self.emit)
        #: capsules waiting for ``process`` (bounded; counts and drops what it takes in)
        self.queue = CapsuleQueue(self.pool, self.config.queue_limit, self.stats, self.count_drop, self.ledger)
        #: faults of code objects as WARNING lines, rate-limited per code object
        self.fault_log = FaultLog(log, clock)
        #: called with (capsule, queued item) when a capsule's code is not cached; returns
        #: True if it took the capsule (demand loading parks it), False to drop it
        self.on_missing_code: Callable[[Capsule, Any], bool] | None = None
        #: called with system capsules (flag bit 0), e.g. the demand-loading protocol
        self.on_system_capsule: Callable[[Capsule, Any], None] | None = None
        #: called with (capsule, reason, detail) when a parsed capsule is dropped, before it is
        #: released: error reports to its home (``pan_runtime.net.reports``)
        self.on_drop: Callable[[Capsule, str, str], None] | None = None
        #: work finishing outside the node's thread (the demand loader's compiles): a driver
        #: with nothing else to do calls each; it returns whether that work is still pending
        self.background: list[Callable[[], bool]] = []
        self._next_hop = self.services.next_hop
        self._env_pool: list[Environment] = [Environment() for _ in range(self.config.batch)]
        self._handover_env = Environment()
        #: batches out to worker processes (process isolation) and capsules waiting for them
        self.offload = Offload(self)
        self._closed = False
        self._budget = self.config.budget
        self.plugins.manager.hook.pan_node_started(node=self)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unload every code object (``finalize`` runs), drop queued capsules, close runtimes."""
        if self._closed:
            return
        self.plugins.manager.hook.pan_node_stopping(node=self)
        self.offload.close()
        self.queue.clear()
        self.codes.close()
        self.services.close()
        self._closed = True
        self.pool.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"node {self.name} is closed")

    def emit(self, event: Event) -> None:
        """Record ``event`` (the last 1000 are kept) and pass it to ``on_event``."""
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------------ code objects (the code table)
    def runtime(self, name: str) -> Runtime:
        """The node's instance of runtime ``name`` (made on first use), or ``RuntimeUnavailable``."""
        return self.codes.runtime(name)

    def install(
        self, code: CodeObject, *, origin: CodeOrigin = CodeOrigin.LOCAL, pin: bool = False, owner: AppLink | None = None
    ) -> CacheEntry:
        """Load ``code`` (its dependencies first), run ``init``, cache it; ``CodeObjectError``
        (or ``TrustError``) names what refused it. ``pin``: held by ``owner`` (an application
        link, until it closes; None: the node itself), never evicted meanwhile."""
        self._check_open()
        self._learn_signatures(code)
        entry = self.codes.install(code, origin, pin)
        if pin:
            self.pins.pin(code.name, owner)
        return entry

    def _learn_signatures(self, code: CodeObject) -> None:
        """An installed code object given again with signatures by more keys (``pan sign`` or
        ``--key`` after a first unsigned install) takes that copy: its neighbours fetch it
        from here with the signatures they need. Never fewer signers, never a bad one."""
        entry = self.cache.peek(code.name)
        if entry is None or not code.signatures or entry.code is code:
            return
        old = {s.public_key for s in entry.code.signatures}
        if old < {s.public_key for s in code.signatures}:
            code.check_signatures()
            entry.code = code

    def prepare(self, code: CodeObject, *, origin: CodeOrigin = CodeOrigin.NETWORK) -> LoadJob | None:
        """Check ``code`` as ``install`` would and return the costly part of loading it (a
        ``LoadJob`` to run off this thread, then ``adopt``), or None when installing is cheap."""
        self._check_open()
        return self.codes.prepare(code, origin)

    def adopt(self, code: CodeObject, result: bytes) -> None:
        """Hand ``code``'s runtime the result of the job ``prepare`` returned; ``install`` next."""
        self._check_open()
        self.codes.adopt(code, result)

    def install_from_disk(self) -> int:
        """Install every code object in the cache directory (dependencies first); returns the count."""
        return self.codes.install_from_disk()

    def uninstall(self, name: bytes | CodeObject, *, by: AppLink | None = None, force: bool = False) -> None:
        """Remove a code object (``finalize`` runs, its soft state and segments are released).

        ``by``: the application link asking (None: the node itself); ``OwnershipError`` if
        another holds a pin on the code, or it is the portmapper other links' ports go through.
        """
        key = name.name if isinstance(name, CodeObject) else bytes(name)
        self.pins.check_uninstall(key, by, force)
        if key == self.codes.portmapper:
            self._check_portmapper_change(by, force)
        self.codes.uninstall(key)

    def use_portmapper(self, code: CodeObject | bytes, *, by: AppLink | None = None, force: bool = False) -> None:
        """Make an installed code object (exporting ``lookup``) this node's portmapper.

        ``by``: the application link asking; replacing a portmapper that other links' ports go
        through is an ``OwnershipError``. The ports stay bound (to the new portmapper).
        """
        name = code.name if isinstance(code, CodeObject) else bytes(code)
        old = self.codes.portmapper
        if old is not None and old != name:
            self._check_portmapper_change(by, force)
        self.codes.use_portmapper(name)
        if old is not None and old != name:
            self.pins.refresh(old)

    def _check_portmapper_change(self, by: AppLink | None, force: bool) -> None:
        if by is None:
            return
        others = self.ports.holders() - {by}
        if others and not may_force(by, force):
            raise OwnershipError(
                f"the portmapper carries ports of {len(others)} other application(s); it cannot be "
                "replaced or uninstalled while they hold them" + (" (root: use force)" if by.uid == 0 else "")
            )

    def bind_port(self, link: AppLink, port: int, *, force: bool = False) -> None:
        """Bind ``port`` to application ``link`` through the portmapper, now (``node/ports.py``)."""
        self._check_open()
        self.ports.bind(link, port, force)

    def unbind_port(self, link: AppLink, port: int, *, force: bool = False) -> None:
        self._check_open()
        self.ports.unbind(link, port, force)

    @property
    def portmapper(self) -> bytes | None:
        """Name of the code object that maps ports to application links, if any."""
        return self.codes.portmapper

    def call_export(self, entry: CacheEntry, export: str, a0: int, a1: int) -> int:
        """Call ``export`` of an installed code object in an environment of its own."""
        return self.codes.call_export(entry, export, a0, a1)

    # ------------------------------------------------------------------ links and routes (kept by the services)
    def add_neighbor(self, address: NodeAddress, link: NetLink) -> None:
        """Reach neighbour ``address`` over ``link`` (with a route to it unless one exists)."""
        self.services.add_neighbor(address, link)

    def add_route(self, dest: NodeAddress, next_hop: NodeAddress, metric: int = 1) -> None:
        self.routes.add_static(dest, next_hop, metric)

    def attach(
        self, name: str = "app", sink: Callable[[Delivery], None] | None = None, *, uid: int | None = None, pid: int | None = None
    ) -> AppLink:
        """A new application link on this node (the in-process application API uses it);
        ``uid``/``pid`` name the application's process (default: this one)."""
        self._check_open()
        return self.services.attach(name, sink, uid, pid)

    def detach(self, link: AppLink) -> None:
        """Forget an application link; tokens that named it, its ports and its pins go with it."""
        self.services.detach(link)
        self.ports.release(link)
        self.pins.release(link)

    # ------------------------------------------------------------------ input (the queue's intake)
    def receive_buffers(self, buffers: Iterable[memoryview], prev_hop: NodeAddress | None, link: Any = None) -> bool:
        """Queue a datagram from a neighbour (copied into the node's pool); False if dropped."""
        return self.queue.receive_buffers(buffers, prev_hop, link)

    def receive_segment(self, seg: Segment, prev_hop: NodeAddress | None, link: Any = None) -> bool:
        """Queue a received segment (its reference moves to the node); False if dropped."""
        return self.queue.receive_segment(seg, prev_hop, link)

    def inject(self, data: bytes | bytearray | memoryview, app: AppLink) -> bool:
        """Queue a capsule an application injected; its origin is that application link.

        A capsule for the portmapper is a port request: checked against who owns the port and
        run now (``Ports.request``; its refusal is raised: ``OwnershipError``, ...).
        """
        self._check_open()
        app.check_open()
        pm = self.codes.portmapper
        if pm is not None and len(data) >= HEADER_SIZE and data[NAME_OFFSET:_NAME_END] == pm:
            self.stats.injected += 1
            self.ports.request(app, data)
            return True
        if len(data) >= HEADER_SIZE:
            app.note_sent(data)
        return self.queue.inject(data, app)

    def requeue(self, capsule: Capsule, item: Queued) -> None:
        """Put a parked capsule (from ``on_missing_code``) back at the front of the queue."""
        self.queue.requeue(capsule, item)

    # ------------------------------------------------------------------ dispatch
    def process(self, limit: int | None = None) -> int:
        """Evaluate queued capsules (all, or up to ``limit``); returns how many were taken."""
        self._check_open()
        done = 0
        queue = self.queue.items  # the deque itself: no call per capsule for the queue
        batch_max = self.config.batch
        while queue and (limit is None or done < limit):
            item = queue.popleft()
            done += 1
            if batch_max > 1 and queue:
                group = self.queue.pop_run(item, batch_max if limit is None else min(batch_max, limit - done + 1))
                if group is not None:
                    done += len(group) - 1
                    self._dispatch_batch(group)
                    continue
            self._dispatch(item)
        return done

    def _parse(self, item: Queued) -> Capsule | None:
        seg = item.seg
        try:
            cap = Capsule.parse(seg)
        except CapsuleError as exc:
            self.count_drop(f"malformed:{exc.reason}", str(exc))
            return None
        except PanError as exc:
            self.count_drop("malformed", str(exc))
            return None
        finally:
            seg.release()
        if item.origin is _NETWORK:
            if cap.hop_limit == 0:
                self.count_drop("hop_limit", cap=cap)
                cap.release()
                return None
            cap.hop_limit -= 1
        return cap

    def _lookup(self, cap: Capsule, item: Queued) -> CacheEntry | None:
        if cap.flags & FLAG_SYSTEM:
            if self.on_system_capsule is not None:
                try:
                    self.on_system_capsule(cap, item)
                except Exception:
                    log.exception("system capsule handler failed")
                    self.count_drop("system_error")
            else:
                self.count_drop("system_unsupported")
            cap.release()
            return None
        entry = self.cache.get(cap.name)
        if entry is None:
            if self.on_missing_code is not None and self.on_missing_code(cap, item):
                return None
            self.count_drop("no_code", cap.name.hex()[:12], cap)
            cap.release()
            return None
        if entry.breaker.open_until and not entry.breaker.allows(self.now_ns()):
            self._drop(entry, "quarantined", cap=cap)
            cap.release()
            return None
        return entry

    def _dispatch(self, item: Queued) -> None:
        if self.ledger.blocked and self.queue.refused(item):  # throttled since it was queued
            return
        cap = self._parse(item)
        if cap is None:
            return
        entry = self._lookup(cap, item)
        if entry is None:
            return
        env = self._env_pool[0]
        env.setup(entry.code, cap, item.origin, item.link, item.prev_hop, self._budget)
        self.run(entry, env, cap)

    def run(self, entry: CacheEntry, env: Environment, cap: Capsule) -> None:
        """Run ``accept`` on a capsule whose environment is set up, count it and ``finish`` it
        (a code object in a worker: hand it over, ``finish`` comes with its verdict)."""
        if type(entry.loaded) is WorkerCode:
            own = self.offload.env()
            own.setup(entry.code, cap, env.origin_kind, env.origin_link, env.prev_hop, env.budget)
            env.clear()
            self.offload.run(entry, [own])
            return
        self.host.current = env
        entry.stats.capsules_in += 1
        t0 = time.perf_counter_ns()
        try:
            verdict: int | RuntimeFault = entry.loaded.accept(env)
        except Exception as exc:
            verdict = as_fault(exc, entry.runtime, entry.code.short_name)
        self.finish(entry, env, cap, verdict, time.perf_counter_ns() - t0)

    def _dispatch_batch(self, items: list[Queued]) -> None:
        if self.ledger.blocked:  # throttled since they were queued
            items = [item for item in items if not self.queue.refused(item)]
        caps = [(cap, item) for item in items if (cap := self._parse(item)) is not None]
        entry = None
        runnable: list[tuple[Capsule, Queued]] = []
        for cap, item in caps:
            e = self._lookup(cap, item)
            if e is not None:
                entry = e
                runnable.append((cap, item))
        if entry is None:
            return
        if type(entry.loaded) is WorkerCode:  # handed over: the verdicts come later
            own = []
            for cap, it in runnable:
                env = self.offload.env()
                own.append(env.setup(entry.code, cap, it.origin, it.link, it.prev_hop, self._budget))
            self.offload.run(entry, own)
            return
        pool = self._env_pool
        while len(pool) < len(runnable):
            pool.append(Environment())
        envs = pool[: len(runnable)]
        for env, (cap, it) in zip(envs, runnable, strict=True):
            env.setup(entry.code, cap, it.origin, it.link, it.prev_hop, self._budget)
        entry.stats.capsules_in += len(envs)
        self.host.current = envs[0]
        t0 = time.perf_counter_ns()
        try:
            verdicts: list[int | RuntimeFault] = list(entry.loaded.accept_batch(envs))
        except Exception as exc:
            verdicts = [as_fault(exc, entry.runtime, entry.code.short_name)] * len(envs)
        per = (time.perf_counter_ns() - t0) // len(envs)
        for env, (cap, _), verdict in zip(envs, runnable, verdicts, strict=True):
            self.finish(entry, env, cap, verdict, per)

    # ------------------------------------------------------------------ outcomes
    def finish(self, entry: CacheEntry, env: Environment, cap: Capsule, verdict: int | RuntimeFault, time_ns: int) -> None:
        """Account a run's time and use, carry out its verdict (or fault), release the capsule."""
        env.usage.time_ns = time_ns
        stats = entry.stats
        stats.add_time(time_ns)
        stats.add_usage(env)
        if env.prev_hop is not None and env.origin_kind is _NETWORK:
            self.ledger.charge(env.prev_hop, time_ns, verdict)
        try:
            self._outcome(entry, env, cap, verdict)
        finally:
            self.host.current = self.host.unbuilt  # a fast path's runs start from none built
            env.clear()
            cap.release()

    def hand_over(
        self,
        entry: CacheEntry,
        wire: Segment | None,
        link: NetLink,
        prev_hop: NodeAddress,
        result: int | RuntimeFault | None = None,
        time_ns: int = 0,
        *,
        running: bool = False,
    ) -> bool:
        """The door for a capsule a fast path read and does not finish: it enters the node here.

        ``wire``: the datagram (its reference moves to the node) from neighbour ``prev_hop`` on
        ``link``, parsed here (taking its hop) like any. ``result``: what the fast path's run of
        ``entry`` gave, finished here; None: the node runs it now. ``running``: the code runs now
        and reached the host, so its environment is made current and left open until the fast
        path finishes it (``wire`` None and the run's result). Returns whether capsules wait in
        the queue (the fast path then leaves new ones to it).
        """
        env = self._handover_env
        cap = env.capsule
        if wire is not None:
            self.stats.received += 1
            cap = self._parse(Queued(wire, _NETWORK, link, prev_hop))
            if cap is None:  # the fast path checked the header: only a bug gets here
                return bool(self.queue.items)
            env.setup(entry.code, cap, _NETWORK, link, prev_hop, self._budget)
            if result is None and not running:
                self.run(entry, env, cap)
                return bool(self.queue.items)
            entry.stats.capsules_in += 1
            if running:
                self.host.current = env
                return bool(self.queue.items)
        if result is None or cap is None:
            raise ValueError("hand_over: a capsule left running needs the run's result")
        self.finish(entry, env, cap, result, time_ns)
        return bool(self.queue.items)

    def _outcome(self, entry: CacheEntry, env: Environment, cap: Capsule, verdict: int | RuntimeFault) -> None:
        if isinstance(verdict, RuntimeFault):
            self.count_fault(entry, verdict, cap)
            return
        if entry.breaker.open_until:
            entry.breaker.record_success()
            self.cache.generation += 1
        if verdict < 0:
            self._drop(entry, f"status:{pni.status_name(verdict)}")
            return
        kind = verdict & _KIND_MASK
        arg = verdict >> 8
        if kind == _FORWARD:
            self._forward(entry, env, cap, arg)
        elif kind == _DONE:
            entry.stats.done += 1
        elif kind == _DROP:
            self._drop(entry, "code_drop")
        elif kind == _DELIVER:
            self._deliver_port(entry, cap, cap.body, arg)
        else:
            self._drop(entry, "bad_verdict", f"verdict {verdict:#x}")

    def _forward(self, entry: CacheEntry, env: Environment, cap: Capsule, offset: int) -> None:
        body = cap.body
        if offset + ADDRESS_SIZE > body.length:
            self._drop(entry, "bad_verdict", f"FORWARD({offset}) past a {body.length}-byte body")
            return
        view = body._view
        if view is not None:
            raw = view[offset : offset + ADDRESS_SIZE].tobytes()
        else:
            buf = bytearray(ADDRESS_SIZE)
            body.read_into(offset, memoryview(buf))
            raw = bytes(buf)
        if raw == self._address_raw:
            if offset + ADDRESS_SIZE + 2 > body.length:
                self._drop(entry, "bad_verdict", "FORWARD at destination without a port")
                return
            pb = bytearray(2)
            body.read_into(offset + ADDRESS_SIZE, memoryview(pb))
            self._deliver_port(entry, cap, body, int.from_bytes(pb, "big"))
            return
        if self._send_capsule(entry, cap, raw):
            entry.stats.forwarded += 1

    def _send_capsule(self, entry: CacheEntry, cap: Capsule, dest_raw: bytes) -> bool:
        found = self._next_hop(dest_raw)
        if found is None:
            self._drop(entry, "no_route", f"no route to {NodeAddress(dest_raw)}", cap)
            return False
        hop, link = found
        if link is None:
            self._drop(entry, "no_link", f"no link to the next hop {hop}", cap)
            return False
        buffers = cap.buffers()
        if len(buffers) == 1:
            size = len(buffers[0])
        else:
            size = 0
            for b in buffers:
                size += len(b)
        if size > link.mtu:
            self._drop(entry, "too_big", f"{size} bytes > link MTU {link.mtu}", cap)
            return False
        if self.config.copy_on_send:
            buffers = [memoryview(b"".join(bytes(b) for b in buffers))]
        if link.send(buffers, hop):
            self.stats.sent += 1
            return True
        self._drop(entry, "link_lost")
        return False

    def _deliver_port(self, entry: CacheEntry, cap: Capsule, body: Segment, port: int) -> None:
        link, why = self.ports.resolve(port)
        if link is None:
            self._drop(entry, why, f"port {port}", cap)
            return
        if link.deliver(Delivery(port, body.tobytes(), cap.name)):
            entry.stats.delivered += 1
            self.stats.delivered += 1
        else:
            self._drop(entry, "dead_link", str(port))

    def count_fault(self, entry: CacheEntry, fault: RuntimeFault, cap: Capsule | None = None) -> None:
        """Count a fault of ``entry``'s code (on capsule ``cap``) as a drop with its reason, reset
        the code if the runtime asks, and quarantine it after repeated faults."""
        entry.stats.errors += 1
        self._drop(entry, fault.reason, str(fault), cap)
        self.fault_log.note(self.name, entry.code, entry.runtime, fault)
        self.codes.after_fault(entry, fault)

    def _drop(self, entry: CacheEntry, reason: str, detail: str = "", cap: Capsule | None = None) -> None:
        """Count a capsule of ``entry``'s code dropped (``count_drop``: one no code object saw)."""
        entry.stats.drops[reason] += 1
        self.emit(CapsuleDropped(reason, entry.code.hex_name, detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dropped a %s capsule: %s %s", self.name, entry.code.short_name, reason, detail)
        if cap is not None and self.on_drop is not None:
            self.on_drop(cap, reason, detail)

    def count_drop(self, reason: str, detail: str = "", cap: Capsule | None = None) -> None:
        """Count (and log at debug level) a capsule dropped before any code object saw it;
        links and the demand loader report their drops here too. ``cap``: the capsule, when it
        was parsed (not yet released): its home may be told (``on_drop``)."""
        self.stats.drops[reason] += 1
        self.emit(CapsuleDropped(reason, "", detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dropped a capsule: %s %s", self.name, reason, detail)
        if cap is not None and self.on_drop is not None:
            self.on_drop(cap, reason, detail)

    def count_refusal(self, entry: CacheEntry | None, reason: str) -> None:
        """Count a resource refused to code (``pan_runtime.node.quota.Refusal``): on the node
        and on ``entry``'s code object."""
        self.stats.refused[reason] += 1
        if entry is not None:
            entry.stats.refused[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: refused %s: %s", self.name, entry.code.short_name if entry else "code", reason)

    # ------------------------------------------------------------------ statistics
    def sync_counters(self) -> None:
        """Fold counters kept outside the node's objects (the UDP fast path's) into them."""
        for source in self.counter_sources:
            source()

    # the readers live in node/stats.py; bound here as methods (``node.statistics()``)
    statistics = stats.statistics
    code_stats = stats.code_stats
    runtime_totals = stats.runtime_totals
    format_statistics = stats.format_statistics
