"""The node: receives capsules, finds their code, runs it in an environment, carries out
what the code decided, and keeps counting.

The node does no I/O of its own: links hand it datagrams (``receive_buffers``) and
applications hand it capsules (``inject``); it queues them (bounded) and ``process``
evaluates them one at a time, handing whatever leaves to a link. Everything is driven by
the caller (an in-process ``Network``, a UDP event loop, a test), with ``now_ns`` from an
injectable clock.

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
from pan_runtime.data.capsule import FLAG_SYSTEM, HEADER_SIZE, Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment, SegmentPool
from pan_runtime.errors import CapsuleError, ClosedError, PanError, RuntimeFault
from pan_runtime.node import pni, stats
from pan_runtime.node.cache import CacheEntry
from pan_runtime.node.codetable import CodeTable
from pan_runtime.node.config import NodeConfig
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.events import CapsuleDropped, CodeQuarantined, Event
from pan_runtime.node.links import AppLink, Delivery, NetLink
from pan_runtime.node.services import Services
from pan_runtime.node.stats import CodeStats, NodeStats
from pan_runtime.node.trust import CodeOrigin, TrustPolicy
from pan_runtime.plugin.plugins import Plugins, default_plugins
from pan_runtime.plugin.runtime import Runtime, as_fault

__all__ = ["Node", "NodeConfig"]

log = logging.getLogger("pan.node")

_KIND_MASK = 0xFF
_NETWORK = Origin.NETWORK
_APPLICATION = Origin.APPLICATION
_FORWARD = pni.VERDICT_FORWARD
_DELIVER = pni.VERDICT_DELIVER
_DONE = pni.VERDICT_DONE
_DROP = pni.VERDICT_DROP


class _Queued:
    __slots__ = ("seg", "origin", "link", "prev_hop")

    def __init__(self, seg: Segment, origin: Origin, link: Any, prev_hop: NodeAddress | None):
        self.seg = seg
        self.origin = origin
        self.link = link
        self.prev_hop = prev_hop


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
        #: what the PNI host asks of the node; owns the neighbours and routes
        self.services = Services(self)
        self.routes = self.services.routes
        self.neighbors = self.services.neighbors
        self.host = pni.PniServer(self.services, logging.getLogger(f"pan.code.{self.name}"))
        #: outside run/finish no capsule's environment is current: a host call then comes from
        #: code the fast path is running, and the server has its environment built (``build``)
        self.host.current = self.host.unbuilt
        #: the runtimes and the code objects loaded into them
        self.codes = CodeTable(self)
        self.cache = self.codes.cache
        self.disk = self.codes.disk
        #: callables that fold counters kept elsewhere into the node's (see ``sync_counters``)
        self.counter_sources: list[Callable[[], None]] = []
        self.stats = NodeStats()
        self.queue: deque[_Queued] = deque()
        self.events: deque[Event] = deque(maxlen=1000)
        self.on_event: Callable[[Event], None] | None = None
        #: called with (capsule, queued item) when a capsule's code is not cached; returns
        #: True if it took the capsule (demand loading parks it), False to drop it
        self.on_missing_code: Callable[[Capsule, Any], bool] | None = None
        #: called with system capsules (flag bit 0), e.g. the demand-loading protocol
        self.on_system_capsule: Callable[[Capsule, Any], None] | None = None
        self._next_hop = self.services.next_hop
        self._apps: list[AppLink] = []
        self._env_pool: list[Environment] = [Environment() for _ in range(self.config.batch)]
        self._handover_env = Environment()
        self._closed = False
        self._budget = self.config.budget
        self.plugins.manager.hook.pan_node_started(node=self)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unload every code object (``finalize`` runs), drop queued capsules, close runtimes."""
        if self._closed:
            return
        self.plugins.manager.hook.pan_node_stopping(node=self)
        while self.queue:
            self.queue.popleft().seg.release()
        self.codes.close()
        for app in list(self._apps):
            app.close()
        for link in set(self.neighbors.values()):
            link.close()
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
        """The node's instance of runtime ``name`` (made on first use); ``RuntimeUnavailable``
        when it is not enabled, not registered or cannot run here."""
        return self.codes.runtime(name)

    def install(self, code: CodeObject, *, origin: CodeOrigin = CodeOrigin.LOCAL, pin: bool = False) -> CacheEntry:
        """Load ``code`` (its dependencies must be installed first), run ``init``, cache it.

        Raises ``CodeObjectError`` (or ``TrustError``) naming what refused it.
        """
        self._check_open()
        return self.codes.install(code, origin, pin)

    def install_from_disk(self) -> int:
        """Install every code object in the cache directory (dependencies first); returns the count."""
        return self.codes.install_from_disk()

    def uninstall(self, name: bytes | CodeObject) -> None:
        """Remove a code object (``finalize`` runs, its soft state and segments are released)."""
        self.codes.uninstall(name)

    def use_portmapper(self, code: CodeObject | bytes) -> None:
        """Make an installed code object (exporting ``lookup``) this node's portmapper."""
        self.codes.use_portmapper(code)

    @property
    def portmapper(self) -> bytes | None:
        """Name of the code object that maps ports to application links, if any."""
        return self.codes.portmapper

    def call_export(self, entry: CacheEntry, export: str, a0: int, a1: int) -> int:
        """Call ``export`` of an installed code object in an environment of its own."""
        return self.codes.call_export(entry, export, a0, a1)

    # ------------------------------------------------------------------ links and routes
    def add_neighbor(self, address: NodeAddress, link: NetLink) -> None:
        self.neighbors[address] = link
        self.routes.generation += 1  # what a route's next hop reaches changed (see snapshot.generation)
        if self.routes.lookup(address) is None:
            self.routes.add_static(address, address, 1)

    def add_route(self, dest: NodeAddress, next_hop: NodeAddress, metric: int = 1) -> None:
        self.routes.add_static(dest, next_hop, metric)

    def attach(self, name: str = "app", sink: Callable[[Delivery], None] | None = None) -> AppLink:
        """A new application link on this node (the in-process application API uses it)."""
        self._check_open()
        link = AppLink(self, name, sink)
        self._apps.append(link)
        return link

    def detach(self, link: AppLink) -> None:
        """Forget an application link; tokens that named it die with it."""
        link.closed = True
        if link in self._apps:
            self._apps.remove(link)
        self.services.forget_link(link)

    # ------------------------------------------------------------------ input
    def receive_buffers(self, buffers: Iterable[memoryview], prev_hop: NodeAddress | None, link: Any = None) -> bool:
        """Queue a datagram from a neighbour (copied into the node's pool); False if dropped."""
        self.stats.received += 1
        if len(self.queue) >= self.config.queue_limit:
            self.count_drop("queue_full")
            return False
        pool = self.pool
        if len(buffers) == 1:  # type: ignore[arg-type]
            (only,) = buffers
            total = len(only)
        else:
            total = 0
            for b in buffers:
                total += len(b)
        if total > pool.buffer_size:
            self.count_drop("too_big", f"{total} bytes > pool buffer {pool.buffer_size}")
            return False
        try:
            slot = pool.take_slot()
        except PanError:
            self.count_drop("pool_exhausted")
            return False
        dst = pool.slot_view(slot)
        pos = 0
        for b in buffers:
            n = len(b)
            dst[pos : pos + n] = b
            pos += n
        self.queue.append(_Queued(pool.segment_for_slot(slot, total), _NETWORK, link, prev_hop))
        return True

    def receive_segment(self, seg: Segment, prev_hop: NodeAddress | None, link: Any = None) -> bool:
        """Queue a received segment (its reference moves to the node); False if dropped."""
        self.stats.received += 1
        if len(self.queue) >= self.config.queue_limit:
            seg.release()
            self.count_drop("queue_full")
            return False
        self.queue.append(_Queued(seg, _NETWORK, link, prev_hop))
        return True

    def inject(self, data: bytes | bytearray | memoryview, app: AppLink) -> bool:
        """Queue a capsule an application injected; its origin is that application link."""
        self._check_open()
        app.check_open()
        self.stats.injected += 1
        if len(self.queue) >= self.config.queue_limit:
            self.count_drop("queue_full")
            return False
        n = len(data)
        if n <= self.pool.buffer_size:
            seg = self.pool.allocate(n)
            seg.view()[:] = data
        else:
            seg = Segment.owned(data)
        self.queue.append(_Queued(seg, _APPLICATION, app, None))
        return True

    def requeue(self, capsule: Capsule, item: Any) -> None:
        """Put a parked capsule (from ``on_missing_code``) back at the front of the queue."""
        wire = capsule.wire
        assert wire is not None
        wire.retain()
        capsule.release()
        self.queue.appendleft(_Queued(wire, item.origin, item.link, item.prev_hop))

    # ------------------------------------------------------------------ dispatch
    def process(self, limit: int | None = None) -> int:
        """Evaluate queued capsules (all, or up to ``limit``); returns how many were taken."""
        self._check_open()
        done = 0
        queue = self.queue
        batch_max = self.config.batch
        while queue and (limit is None or done < limit):
            item = queue.popleft()
            done += 1
            if batch_max > 1 and queue:
                name = bytes(item.seg.view()[4:36]) if item.seg.length >= HEADER_SIZE else None
                group = [item]
                while (
                    name is not None
                    and queue
                    and len(group) < batch_max
                    and (limit is None or done < limit)
                    and queue[0].seg.length >= HEADER_SIZE
                    and queue[0].seg.view()[4:36] == name
                ):
                    group.append(queue.popleft())
                    done += 1
                if len(group) > 1:
                    self._dispatch_batch(group)
                    continue
            self._dispatch(item)
        return done

    def _parse(self, item: _Queued) -> Capsule | None:
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
                self.count_drop("hop_limit")
                cap.release()
                return None
            cap.hop_limit -= 1
        return cap

    def _lookup(self, cap: Capsule, item: _Queued) -> CacheEntry | None:
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
            self.count_drop("no_code", cap.name.hex()[:12])
            cap.release()
            return None
        if entry.breaker.open_until and not entry.breaker.allows(self.now_ns()):
            self._drop(entry, "quarantined")
            cap.release()
            return None
        return entry

    def _dispatch(self, item: _Queued) -> None:
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
        """Run ``accept`` on a capsule whose environment is set up, count it, carry out the
        verdict and release the capsule (also the UDP fast path's way for code it cannot enter)."""
        self.host.current = env
        entry.stats.capsules_in += 1
        t0 = time.perf_counter_ns()
        try:
            verdict: int | RuntimeFault = entry.loaded.accept(env)
        except Exception as exc:
            verdict = as_fault(exc, entry.runtime, entry.code.short_name)
        self.finish(entry, env, cap, verdict, time.perf_counter_ns() - t0)

    def _dispatch_batch(self, items: list[_Queued]) -> None:
        caps: list[tuple[Capsule, _Queued]] = []
        for item in items:
            cap = self._parse(item)
            if cap is not None:
                caps.append((cap, item))
        if not caps:
            return
        entry = None
        runnable: list[Capsule] = []
        for cap, item in caps:
            e = self._lookup(cap, item)
            if e is None:
                continue
            entry = e
            runnable.append(cap)
        if entry is None or not runnable:
            return
        pool = self._env_pool
        while len(pool) < len(runnable):
            pool.append(Environment())
        envs = pool[: len(runnable)]
        item_of = {id(c): it for c, it in caps}
        for env, cap in zip(envs, runnable, strict=True):
            it = item_of[id(cap)]
            env.setup(entry.code, cap, it.origin, it.link, it.prev_hop, self._budget)
        entry.stats.capsules_in += len(envs)
        self.host.current = envs[0]
        t0 = time.perf_counter_ns()
        try:
            verdicts: list[int | RuntimeFault] = list(entry.loaded.accept_batch(envs))
        except Exception as exc:
            verdicts = [as_fault(exc, entry.runtime, entry.code.short_name)] * len(envs)
        per = (time.perf_counter_ns() - t0) // len(envs)
        for env, cap, verdict in zip(envs, runnable, verdicts, strict=True):
            self.finish(entry, env, cap, verdict, per)

    # ------------------------------------------------------------------ outcomes
    def finish(self, entry: CacheEntry, env: Environment, cap: Capsule, verdict: int | RuntimeFault, time_ns: int) -> None:
        """Account a run's time and use, carry out its verdict (or fault), release the capsule;
        the UDP fast path hands over this way every capsule it does not finish itself."""
        env.usage.time_ns = time_ns
        stats = entry.stats
        stats.add_time(time_ns)
        stats.add_usage(env)
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

        ``wire`` is the datagram (its reference moves to the node) from neighbour ``prev_hop`` on ``link``;
        the node parses it and takes its hop (``_parse``, as for every capsule from a link).
        ``result`` is what the fast path's run of ``entry`` gave (a verdict or a fault),
        finished here like any run; None: the node runs it now. ``running``: the code is
        running now and reached the host, so its environment is made current and left open;
        the fast path finishes it later with ``wire`` None and the run's result. Returns
        whether capsules wait in the queue (the fast path then leaves new ones to it).
        """
        env = self._handover_env
        if wire is None:
            cap = env.capsule
        else:
            self.stats.received += 1
            parsed = self._parse(_Queued(wire, _NETWORK, link, prev_hop))
            if parsed is None:  # the fast path checked the header: only a bug gets here
                return bool(self.queue)
            cap = parsed
            env.setup(entry.code, cap, _NETWORK, link, prev_hop, self._budget)
            if result is None and not running:
                self.run(entry, env, cap)
                return bool(self.queue)
            entry.stats.capsules_in += 1
            if running:
                self.host.current = env
                return bool(self.queue)
        if result is None:
            raise ValueError("hand_over: a capsule left running needs the run's result")
        self.finish(entry, env, cap, result, time_ns)
        return bool(self.queue)

    def _outcome(self, entry: CacheEntry, env: Environment, cap: Capsule, verdict: int | RuntimeFault) -> None:
        if isinstance(verdict, RuntimeFault):
            self.count_fault(entry, verdict)
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

    def _send_capsule(self, entry: CacheEntry | None, cap: Capsule, dest_raw: bytes) -> bool:
        found = self._next_hop(dest_raw)
        if found is None:
            self._drop(entry, "no_route", str(NodeAddress(dest_raw)))
            return False
        hop, link = found
        if link is None:
            self._drop(entry, "no_link", str(hop))
            return False
        buffers = cap.buffers()
        if len(buffers) == 1:
            size = len(buffers[0])
        else:
            size = 0
            for b in buffers:
                size += len(b)
        if size > link.mtu:
            self._drop(entry, "too_big", f"{size} bytes > link MTU {link.mtu}")
            return False
        if self.config.copy_on_send:
            buffers = [memoryview(b"".join(bytes(b) for b in buffers))]
        if link.send(buffers, hop):
            self.stats.sent += 1
            return True
        self._drop(entry, "link_lost")
        return False

    def _deliver_port(self, entry: CacheEntry, cap: Capsule, body: Segment, port: int) -> None:
        codes = self.codes
        token = codes.portmap(port)
        if token is None or token < 0:
            self._drop(entry, "no_port", str(port))
            return
        pm = codes.portmapper
        assert pm is not None
        link = self.services.resolve_token(pm, token)
        if link is None:
            self._drop(entry, "dead_link", str(port))
            return
        if link.deliver(Delivery(port, body.tobytes(), cap.name)):
            entry.stats.delivered += 1
            self.stats.delivered += 1
        else:
            self._drop(entry, "dead_link", str(port))

    def count_fault(self, entry: CacheEntry, fault: RuntimeFault) -> None:
        """Count a fault of ``entry``'s code as a drop with its reason, reset the code if the
        runtime asks, and quarantine it after repeated faults."""
        entry.stats.errors += 1
        self._drop(entry, fault.reason, str(fault))
        now = self.now_ns()
        if entry.loaded.needs_reset:
            self.cache.generation += 1
            try:
                entry.loaded.reset()
            except Exception:
                log.exception("resetting %s", entry.code.short_name)
        if entry.breaker.record_fault(now):
            self.cache.generation += 1
            self.emit(CodeQuarantined(entry.code.hex_name, entry.breaker.trips, entry.breaker.open_until))
            log.warning(
                "quarantined %s for %.1fs after repeated faults (last: %s)",
                entry.code.short_name,
                entry.breaker.current_backoff / 1e9,
                fault,
            )

    def _drop(self, entry: CacheEntry | None, reason: str, detail: str = "") -> None:
        if entry is None:
            self.count_drop(reason, detail)
            return
        entry.stats.drops[reason] += 1
        self.emit(CapsuleDropped(reason, entry.code.hex_name, detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dropped a %s capsule: %s %s", self.name, entry.code.short_name, reason, detail)

    def count_drop(self, reason: str, detail: str = "") -> None:
        """Count (and log at debug level) a capsule dropped before any code object saw it;
        links and the demand loader report their drops here too."""
        self.stats.drops[reason] += 1
        self.emit(CapsuleDropped(reason, "", detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dropped a capsule: %s %s", self.name, reason, detail)

    # ------------------------------------------------------------------ statistics
    def sync_counters(self) -> None:
        """Fold counters kept outside the node's objects (the UDP fast path's) into them."""
        for source in self.counter_sources:
            source()

    def statistics(self) -> dict[str, Any]:
        """Everything the node counts, as plain data."""
        return stats.statistics(self)

    def code_stats(self) -> dict[str, dict[str, Any]]:
        """Each installed code object's counters, by hex name."""
        return stats.code_stats(self)

    def runtime_totals(self) -> dict[str, CodeStats]:
        """The installed code objects' counters summed per runtime."""
        return stats.runtime_totals(self)

    def format_statistics(self) -> str:
        """The node's counters as text (``pan node`` prints it)."""
        return stats.format_statistics(self)
