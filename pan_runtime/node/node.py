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
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pan_runtime.data.address import ADDRESS_SIZE, NodeAddress
from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT, FLAG_SYSTEM, HEADER_SIZE, Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment, SegmentPool
from pan_runtime.errors import (
    CapsuleError,
    ClosedError,
    CodeObjectError,
    PanError,
    PniVersionError,
    RuntimeFault,
)
from pan_runtime.node import pni
from pan_runtime.node.cache import Breaker, CacheEntry, CodeCache, DiskStore
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.events import CapsuleDropped, CodeLoaded, CodeQuarantined, CodeUnloaded, Event
from pan_runtime.node.links import AppLink, Delivery, NetLink
from pan_runtime.node.routing import RoutingTable
from pan_runtime.node.softstate import SoftState
from pan_runtime.node.stats import CodeStats, NodeStats, format_table
from pan_runtime.node.trust import CodeOrigin, TrustPolicy
from pan_runtime.plugin.plugins import Plugins, load_plugins
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


class NodeConfig:
    """Tunables of a node; every field has a default that suits an embedded node."""

    def __init__(
        self,
        *,
        queue_limit: int = 4096,
        batch: int = 1,
        budget: Budget | None = None,
        cache_bytes: int = 256 << 20,
        cache_dir: str | None = None,
        state_entries: int = 4096,
        state_bytes: int = 4 << 20,
        state_ttl_ms: int = 60_000,
        pool_buffers: int = 1024,
        pool_buffer_size: int = 9216,
        hop_limit: int = DEFAULT_HOP_LIMIT,
        runtime_options: Mapping[str, Mapping[str, Any]] | None = None,
        runtimes: Sequence[str] | None = None,
        breaker_threshold: int = 5,
        copy_on_send: bool = False,
        fast_path: bool = True,
    ):
        self.queue_limit = queue_limit
        self.batch = max(1, batch)
        self.budget = budget or Budget()
        self.cache_bytes = cache_bytes
        self.cache_dir = cache_dir
        self.state_entries = state_entries
        self.state_bytes = state_bytes
        self.state_ttl_ms = state_ttl_ms
        self.pool_buffers = pool_buffers
        self.pool_buffer_size = pool_buffer_size
        self.hop_limit = hop_limit
        self.runtime_options = {k: dict(v) for k, v in (runtime_options or {}).items()}
        self.runtimes = list(runtimes) if runtimes is not None else None
        self.breaker_threshold = breaker_threshold
        #: copy capsule data before sending (the bench's ``activecopy`` configuration)
        self.copy_on_send = copy_on_send
        #: let UDP netlinks finish common capsules in compiled code (pan_runtime.net.udp_fast)
        self.fast_path = fast_path


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
        self.host = pni.PniHost(self, logging.getLogger(f"pan.code.{self.name}"))
        self.host.current = None  # type: ignore[assignment]  # no capsule runs outside run/finish
        #: callables that fold counters kept elsewhere into the node's (see ``sync_counters``)
        self.counter_sources: list[Callable[[], None]] = []
        self.cache = CodeCache(self.config.cache_bytes)
        self.disk = DiskStore(self.config.cache_dir) if self.config.cache_dir else None
        self.routes = RoutingTable()
        self.neighbors: dict[NodeAddress, NetLink] = {}
        self.stats = NodeStats()
        self.runtime_stats: dict[str, CodeStats] = {}
        self.queue: deque[_Queued] = deque()
        self.portmapper: bytes | None = None
        self.events: deque[Event] = deque(maxlen=1000)
        self.on_event: Callable[[Event], None] | None = None
        #: called with (capsule, queued item) when a capsule's code is not cached; returns
        #: True if it took the capsule (demand loading parks it), False to drop it
        self.on_missing_code: Callable[[Capsule, Any], bool] | None = None
        #: called with system capsules (flag bit 0), e.g. the demand-loading protocol
        self.on_system_capsule: Callable[[Capsule, Any], None] | None = None
        self._runtimes: dict[str, Runtime] = {}
        self._apps: list[AppLink] = []
        self._tokens: dict[tuple[bytes, int], weakref.ref[AppLink]] = {}
        self._link_tokens: dict[tuple[bytes, int], int] = {}
        self._env_pool: list[Environment] = [Environment() for _ in range(self.config.batch)]
        self._call_envs: list[Environment] = []
        self._handover_env = Environment()
        self._closed = False
        self._budget = self.config.budget

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unload every code object (``finalize`` runs), drop queued capsules, close runtimes."""
        if self._closed:
            return
        self.plugins.manager.hook.pan_node_stopping(node=self)
        while self.queue:
            self.queue.popleft().seg.release()
        for entry in list(self.cache):
            entry.pinned = False
            entry.dependants.clear()
            self._unload(entry, "close")
        for app in list(self._apps):
            app.close()
        for link in set(self.neighbors.values()):
            link.close()
        for rt in self._runtimes.values():
            try:
                rt.close()
            except Exception:
                log.exception("closing runtime %s", rt.name)
        self._closed = True
        self.pool.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"node {self.name} is closed")

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------------ runtimes
    def runtime(self, name: str) -> Runtime:
        """The node's instance of runtime ``name`` (made on first use)."""
        rt = self._runtimes.get(name)
        if rt is not None:
            return rt
        allowed = self.config.runtimes
        if allowed is not None and name not in allowed:
            raise CodeObjectError(f"runtime {name!r} is not enabled on node {self.name} (enabled: {', '.join(allowed)})")
        if name not in self.plugins.runtimes:
            why = self.plugins.failures.get(name, "no plugin registers it")
            raise CodeObjectError(f"runtime {name!r} is not available: {why}")
        cls = self.plugins.runtimes.get(name)
        reason = cls.available()
        if reason is not None:
            raise CodeObjectError(f"runtime {name!r} is unavailable here: {reason}")
        options = dict(self.config.runtime_options.get(name, {}))
        if self.config.cache_dir and "cache_dir" not in options:
            options["cache_dir"] = self.config.cache_dir
        rt = cls(options)
        self._runtimes[name] = rt
        self.runtime_stats.setdefault(name, CodeStats())
        return rt

    # ------------------------------------------------------------------ code objects
    def install(
        self,
        code: CodeObject,
        *,
        origin: CodeOrigin = CodeOrigin.LOCAL,
        pin: bool = False,
    ) -> CacheEntry:
        """Load ``code`` (its dependencies must be installed first), run ``init``, cache it.

        Raises ``CodeObjectError`` (or ``TrustError``) naming what refused it.
        """
        self._check_open()
        existing = self.cache.get(code.name)
        if existing is not None:
            existing.pinned = existing.pinned or pin
            return existing
        if not pni.version_compatible(code.manifest.pni_version):
            raise PniVersionError(
                f"code object {code.short_name} was built for PNI {code.manifest.pni_version}; this node "
                f"serves PNI {pni.PNI_VERSION} (same major, minor <= {pni.PNI_VERSION.split('.')[1]})"
            )
        rt = self.runtime(code.runtime)
        self.trust.check(code, rt.isolation, origin)
        deps: list[CacheEntry] = []
        for dep in code.manifest.dependencies:
            if dep == code.name:
                raise CodeObjectError(f"code object {code.short_name} depends on itself")
            e = self.cache.get(dep)
            if e is None:
                raise CodeObjectError(
                    f"code object {code.short_name} depends on {dep.hex()[:12]}, which is not installed; "
                    "install its dependencies first"
                )
            deps.append(e)
        victims = self.cache.victims(code.size)
        if victims is None:
            raise CodeObjectError(
                f"code object {code.short_name} ({code.size} bytes) does not fit the code cache "
                f"({self.cache.max_bytes} bytes, the rest pinned or depended on)"
            )
        for v in victims:
            entry = self.cache.peek(v)
            if entry is not None:
                self._unload(entry, "evicted")
                self.cache.evictions += 1
        loaded = rt.load(code, [d.loaded for d in deps], self.host)
        entry = CacheEntry(
            code=code,
            runtime=rt.name,
            loaded=loaded,
            state=SoftState(self.config.state_entries, self.config.state_bytes, self.config.state_ttl_ms, self.now_ns),
            origin=origin.value,
            pinned=pin,
            breaker=Breaker(threshold=self.config.breaker_threshold),
        )
        self.cache.add(entry)
        env = self._call_env(entry)
        saved = self.host.current
        self.host.current = env
        try:
            rc = loaded.init()
        except RuntimeFault as fault:
            rc = fault
        finally:
            self.host.current = saved
            self._release_call_env(env)
        if not isinstance(rc, int) or rc < 0:
            self.cache.remove(code.name)
            entry.state.clear()
            try:
                loaded.unload()
            except Exception:
                log.exception("unloading %s after a failed init", code.short_name)
            why = rc if isinstance(rc, RuntimeFault) else f"init returned {pni.status_name(rc)}"
            raise CodeObjectError(f"code object {code.short_name} refused installation: {why}")
        for d in deps:
            d.dependants.add(code.name)
        if self.disk is not None:
            self.disk.put(code)
        self._emit(CodeLoaded(code.hex_name, rt.name, origin.value))
        self.plugins.manager.hook.pan_code_loaded(node=self, name=code.hex_name, runtime=rt.name)
        return entry

    def install_from_disk(self) -> int:
        """Install every code object in the cache directory (dependencies first); returns the count."""
        if self.disk is None:
            return 0
        pending = [c for c in (self.disk.get(n) for n in self.disk.names()) if c is not None]
        done = 0
        progress = True
        while pending and progress:
            progress = False
            for code in list(pending):
                if all(d in self.cache for d in code.manifest.dependencies):
                    pending.remove(code)
                    try:
                        self.install(code, origin=CodeOrigin.LOCAL)
                        done += 1
                    except PanError as exc:
                        log.warning("not reloading %s from disk: %s", code.short_name, exc)
                    progress = True
        return done

    def uninstall(self, name: bytes | CodeObject) -> None:
        """Remove a code object (``finalize`` runs, its soft state and segments are released)."""
        key = name.name if isinstance(name, CodeObject) else name
        entry = self.cache.peek(key)
        if entry is None:
            raise CodeObjectError(f"code object {key.hex()[:12]} is not installed")
        if entry.dependants:
            raise CodeObjectError(
                f"code object {entry.code.short_name} is a dependency of "
                f"{', '.join(d.hex()[:12] for d in sorted(entry.dependants))}; uninstall those first"
            )
        self._unload(entry, "uninstall")
        if self.disk is not None:
            self.disk.remove(key)

    def _unload(self, entry: CacheEntry, reason: str) -> None:
        env = self._call_env(entry)
        saved = self.host.current
        self.host.current = env
        try:
            entry.loaded.finalize()
        except Exception as exc:
            log.warning("finalize of %s failed: %s", entry.code.short_name, exc)
        finally:
            self.host.current = saved
            self._release_call_env(env)
        try:
            entry.loaded.unload()
        except Exception:
            log.exception("unloading %s", entry.code.short_name)
        entry.state.clear()
        entry.ring.release_all()
        self.cache.remove(entry.code.name)
        for dep in entry.code.manifest.dependencies:
            d = self.cache.peek(dep)
            if d is not None:
                d.dependants.discard(entry.code.name)
        if self.portmapper == entry.code.name:
            self.portmapper = None
        for key in [k for k in self._tokens if k[0] == entry.code.name]:
            del self._tokens[key]
        for key in [k for k in self._link_tokens if k[0] == entry.code.name]:
            del self._link_tokens[key]
        self._emit(CodeUnloaded(entry.code.hex_name, reason))
        self.plugins.manager.hook.pan_code_unloaded(node=self, name=entry.code.hex_name, reason=reason)

    def use_portmapper(self, code: CodeObject | bytes) -> None:
        """Make an installed code object (exporting ``lookup``) this node's portmapper."""
        name = code.name if isinstance(code, CodeObject) else code
        entry = self.cache.peek(name)
        if entry is None or "lookup" not in entry.code.manifest.exports:
            raise CodeObjectError("the portmapper must be installed and export 'lookup'")
        entry.pinned = True
        self.portmapper = name

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
        for key in [k for k, ref in self._tokens.items() if ref() is link or ref() is None]:
            del self._tokens[key]
        for key in [k for k in self._link_tokens if k[1] == id(link)]:
            del self._link_tokens[key]

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
            self.host.current = None  # type: ignore[assignment]  # a fast path's runs start from none
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
            self._fault(entry, verdict)
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
        route = self.routes.lookup_raw(dest_raw)
        if route is None:
            self._drop(entry, "no_route", str(NodeAddress(dest_raw)))
            return False
        hop = route.next_hop
        link = self.neighbors.get(hop)
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
        token = self._portmap(port)
        if token is None or token < 0:
            self._drop(entry, "no_port", str(port))
            return
        pm = self.portmapper
        assert pm is not None
        link = self._resolve_token(pm, token)
        if link is None:
            self._drop(entry, "dead_link", str(port))
            return
        if link.deliver(Delivery(port, body.tobytes(), cap.name)):
            entry.stats.delivered += 1
            self.stats.delivered += 1
        else:
            self._drop(entry, "dead_link", str(port))

    def _portmap(self, port: int) -> int | None:
        if self.portmapper is None:
            return None
        pm = self.cache.peek(self.portmapper)
        if pm is None:
            return None
        try:
            return self.call_export(pm, "lookup", port, 0)
        except RuntimeFault as fault:
            log.warning("portmapper lookup of port %d faulted: %s", port, fault)
            return None

    def _fault(self, entry: CacheEntry, fault: RuntimeFault) -> None:
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
            self._emit(CodeQuarantined(entry.code.hex_name, entry.breaker.trips, entry.breaker.open_until))
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
        self._emit(CapsuleDropped(reason, entry.code.hex_name, detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dropped a %s capsule: %s %s", self.name, entry.code.short_name, reason, detail)

    def count_drop(self, reason: str, detail: str = "") -> None:
        """Count (and log at debug level) a capsule dropped before any code object saw it;
        links and the demand loader report their drops here too."""
        self.stats.drops[reason] += 1
        self._emit(CapsuleDropped(reason, "", detail))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dropped a capsule: %s %s", self.name, reason, detail)

    # ------------------------------------------------------------------ services for the PNI host
    def soft_state(self, code: CodeObject) -> SoftState:
        entry = self.cache.peek(code.name)
        if entry is None:
            raise CodeObjectError(f"code object {code.short_name} is not installed")
        return entry.state

    def _send_new(self, env: Environment, body: Segment, dest: NodeAddress, direct: bool) -> int:
        cap_src = env.capsule
        code = env.code
        if cap_src is None or code is None:
            return pni.DENIED
        entry = self.cache.peek(code.name)
        cap = Capsule(cap_src.name, cap_src.home, body.retain(), hop_limit=self.config.hop_limit)
        try:
            if direct:
                link = self.neighbors.get(dest)
                if link is None:
                    return pni.NOT_FOUND
                buffers = cap.buffers()
                size = sum(len(b) for b in buffers)
                if size > link.mtu:
                    return pni.TOO_BIG
                if not link.send(buffers, dest):
                    return pni.OK  # lost on the wire, like any datagram
                self.stats.sent += 1
            else:
                if dest == self.address:
                    # sending to ourselves: queue it as if it arrived
                    self.receive_buffers(cap.buffers(), self.address)
                    return pni.OK
                route = self.routes.lookup(dest)
                if route is None:
                    return pni.NO_ROUTE
                link = self.neighbors.get(route.next_hop)
                if link is None:
                    return pni.NO_ROUTE
                buffers = cap.buffers()
                if sum(len(b) for b in buffers) > link.mtu:
                    return pni.TOO_BIG
                if link.send(buffers, route.next_hop):
                    self.stats.sent += 1
            if entry is not None:
                entry.stats.sent += 1
            return pni.OK
        finally:
            cap.release()

    def send_toward(self, env: Environment, dest: NodeAddress, body: Segment) -> int:
        return self._send_new(env, body, dest, direct=False)

    def send_neighbor(self, env: Environment, neighbor: NodeAddress, body: Segment) -> int:
        return self._send_new(env, body, neighbor, direct=True)

    def link_token(self, code: CodeObject, link: Any) -> int:
        key = (code.name, id(link))
        tok = self._link_tokens.get(key)
        if tok is None:
            tok = secrets.randbits(63) or 1
            self._link_tokens[key] = tok
            self._tokens[(code.name, tok)] = weakref.ref(link)
        return tok

    def _resolve_token(self, code_name: bytes, token: int) -> AppLink | None:
        ref = self._tokens.get((code_name, token))
        link = ref() if ref is not None else None
        if link is None or link.closed:
            return None
        return link

    def deliver(self, env: Environment, token: int, port: int, body: Segment) -> int:
        code = env.code
        if code is None:
            return pni.DENIED
        link = self._resolve_token(code.name, token)
        if link is None:
            return pni.DENIED
        name = env.capsule.name if env.capsule is not None else code.name
        if not link.deliver(Delivery(port, body.tobytes(), name)):
            return pni.DENIED
        self.stats.delivered += 1
        entry = self.cache.peek(code.name)
        if entry is not None:
            entry.stats.delivered += 1
        return pni.OK

    def mtu_toward(self, dest: NodeAddress) -> int:
        route = self.routes.lookup(dest)
        if route is None:
            return pni.NO_ROUTE
        link = self.neighbors.get(route.next_hop)
        if link is None:
            return pni.NO_ROUTE
        return max(0, link.mtu - HEADER_SIZE)

    def neighbor_addresses(self) -> list[NodeAddress]:
        return sorted(self.neighbors)

    def route_lookup(self, dest: NodeAddress) -> tuple[NodeAddress, int] | None:
        r = self.routes.lookup(dest)
        return None if r is None else (r.next_hop, r.metric)

    def route_set(self, code: CodeObject, dest: NodeAddress, next_hop: NodeAddress, metric: int) -> int:
        if next_hop not in self.neighbors:
            return pni.NOT_FOUND
        if dest == self.address:
            return pni.DENIED
        return pni.OK if self.routes.set_dynamic(dest, next_hop, metric, code.name) else pni.DENIED

    def _call_env(self, entry: CacheEntry) -> Environment:
        env = self._call_envs.pop() if self._call_envs else Environment()
        env.code = entry.code
        env.budget = self._budget
        env.origin_kind = Origin.APPLICATION
        env.sent_bytes = 0
        env.allocated = 0
        return env

    def _release_call_env(self, env: Environment) -> None:
        env.clear()
        self._call_envs.append(env)

    def call_export(self, entry: CacheEntry, export: str, a0: int, a1: int) -> int:
        """Call ``export`` of an installed code object in an environment of its own."""
        if export not in entry.code.manifest.exports:
            return pni.NOT_FOUND
        env = self._call_env(entry)
        saved = self.host.current
        self.host.current = env
        try:
            return int(entry.loaded.call_export(export, a0, a1))
        finally:
            self.host.current = saved
            self._release_call_env(env)

    def dep_call(self, code: CodeObject, dep: int, export: str, a0: int, a1: int) -> int:
        deps = code.manifest.dependencies
        if not 0 <= dep < len(deps):
            return pni.NOT_FOUND
        entry = self.cache.peek(deps[dep])
        if entry is None:
            return pni.NOT_FOUND
        try:
            return self.call_export(entry, export, a0, a1)
        except RuntimeFault as fault:
            self._fault(entry, fault)
            return pni.NOT_FOUND

    # ------------------------------------------------------------------ statistics
    def sync_counters(self) -> None:
        """Fold counters kept outside the node's objects (the UDP fast path's) into them."""
        for source in self.counter_sources:
            source()

    def code_stats(self) -> dict[str, dict[str, Any]]:
        self.sync_counters()
        return {e.code.hex_name: {"runtime": e.runtime, "label": e.code.short_name, **e.stats.as_dict()} for e in self.cache}

    def runtime_totals(self) -> dict[str, CodeStats]:
        self.sync_counters()
        totals: dict[str, CodeStats] = {}
        for e in self.cache:
            totals.setdefault(e.runtime, CodeStats()).merge(e.stats)
        return totals

    def statistics(self) -> dict[str, Any]:
        """Everything the node counts, as plain data."""
        self.sync_counters()
        return {
            "node": str(self.address),
            **self.stats.as_dict(),
            "queue": len(self.queue),
            "pool_free": self.pool.available,
            "cache": {"entries": len(self.cache), "bytes": self.cache.bytes_used, "evictions": self.cache.evictions},
            "code": self.code_stats(),
            "runtimes": self._runtime_statistics(),
            "quarantined": [e.code.hex_name for e in self.cache if not e.breaker.allows(self.now_ns())],
        }

    def _runtime_statistics(self) -> dict[str, dict[str, Any]]:
        out = {k: v.as_dict() for k, v in self.runtime_totals().items()}
        for name, rt in self._runtimes.items():
            try:
                extra = rt.statistics()
            except Exception as exc:  # a runtime's counters must not break the node's report
                log.warning("runtime %s statistics failed: %s", name, exc)
                continue
            if extra:
                out.setdefault(name, CodeStats().as_dict()).update(extra)
        return out

    def format_statistics(self) -> str:
        self.sync_counters()
        rows = []
        now = self.now_ns()
        for e in self.cache:
            s = e.stats
            rows.append(
                [
                    e.code.short_name,
                    e.runtime,
                    str(s.capsules_in),
                    str(s.forwarded),
                    str(s.delivered),
                    str(s.done),
                    str(s.dropped),
                    str(s.errors),
                    f"{(s.time_ns / s.capsules_in / 1000) if s.capsules_in else 0:.2f}",
                    "quarantined" if not e.breaker.allows(now) else "",
                ]
            )
        head = f"node {self.name}: received {self.stats.received}, injected {self.stats.injected}, sent {self.stats.sent}, delivered {self.stats.delivered}"
        drops = ", ".join(f"{k}={v}" for k, v in sorted(self.stats.drops.items())) or "none"
        table = format_table(rows, ["code", "runtime", "in", "fwd", "dlv", "done", "drop", "err", "µs/cap", ""])
        return f"{head}\nnode drops: {drops}\n{table}"


_DEFAULT_PLUGINS: Plugins | None = None


def default_plugins() -> Plugins:
    """The process-wide plugin set (entry points plus the built-in null runtime), loaded once."""
    global _DEFAULT_PLUGINS
    if _DEFAULT_PLUGINS is None:
        from pan_runtime.plugin import nullrt

        _DEFAULT_PLUGINS = load_plugins(extra=[nullrt])
    return _DEFAULT_PLUGINS
