"""The code table: a node's runtimes and the code objects loaded into them.

Installing checks the PNI version, the trust policy, the load limits and the dependencies,
makes room in the code cache, loads the code into its runtime and runs ``init``; unloading
runs ``finalize`` and releases everything the code object held. Code from the network is
installed in two steps so that compiling it never holds up the node's thread: ``prepare``
(the same checks, and the runtime's costly work as a ``LoadJob`` the caller runs elsewhere),
``adopt`` (the job's result), then ``install``. The table also keeps which code object is the
node's portmapper and calls exports (``lookup``, dependency calls) in an environment of
their own.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import (
    CodeObjectError,
    FaultReason,
    PanError,
    PniVersionError,
    RuntimeFault,
    RuntimeUnavailable,
)
from pan_runtime.isolation.mechanism import Mechanism, process_unavailable
from pan_runtime.isolation.supervisor import WorkerRuntime, WorkerSettings
from pan_runtime.node import pni
from pan_runtime.node.cache import Breaker, CacheEntry, CodeCache, DiskStore
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.events import CodeLoaded, CodeQuarantined, CodeUnloaded
from pan_runtime.node.softstate import SoftState
from pan_runtime.node.stats import CodeStats
from pan_runtime.node.trust import CodeOrigin
from pan_runtime.plugin.runtime import Runtime, as_fault

if TYPE_CHECKING:
    from pan_runtime.node.node import Node
    from pan_runtime.plugin.loadjob import LoadJob

__all__ = ["CodeTable"]

log = logging.getLogger("pan.node")


class CodeTable:
    """The runtimes a node made and the code objects it holds (cache, disk store, portmapper)."""

    def __init__(self, node: Node):
        self._node = node
        config = node.config
        self.cache = CodeCache(config.cache_bytes)
        self.disk = DiskStore(config.cache_dir) if config.cache_dir else None
        #: runtime name -> the node's instance of it (made on first use)
        self.runtimes: dict[str, Runtime] = {}
        self.runtime_stats: dict[str, CodeStats] = {}
        #: name of the code object that maps ports to application links, if any
        self.portmapper: bytes | None = None
        self._call_envs: list[Environment] = []

    # ------------------------------------------------------------------ runtimes
    def runtime(self, name: str) -> Runtime:
        """The node's instance of runtime ``name`` (made on first use); ``RuntimeUnavailable``
        when the node does not enable it, no plugin registers it or it cannot run here."""
        rt = self.runtimes.get(name)
        if rt is not None:
            return rt
        node = self._node
        allowed = node.config.runtimes
        if allowed is not None and name not in allowed:
            raise RuntimeUnavailable(
                f"runtime {name!r} is not enabled on node {node.name} (enabled: {', '.join(allowed)})"
            )
        plugins = node.plugins
        if name not in plugins.runtimes:
            why = plugins.failures.get(name, "no plugin registers it")
            raise RuntimeUnavailable(f"runtime {name!r} is not available: {why}")
        cls = plugins.runtimes.get(name)
        reason = cls.available()
        if reason is not None:
            raise RuntimeUnavailable(f"runtime {name!r} is unavailable here: {reason}")
        options = dict(node.config.runtime_options.get(name, {}))
        if node.config.cache_dir and "cache_dir" not in options:
            options["cache_dir"] = node.config.cache_dir
        if node.config.mechanism(name) is Mechanism.PROCESS:
            why = process_unavailable()
            if why is not None:
                raise RuntimeUnavailable(f"runtime {name!r} is configured with isolation process, which is unavailable here: {why}")
            settings = WorkerSettings(
                config=node.config, address=node.address, clock_is_monotonic=node.now_ns is time.monotonic_ns, node_name=node.name,
                control_env=self._control_env,
            )
            rt = WorkerRuntime(cls, options, settings, node.host)
        else:
            rt = cls(options)
        rt.load_limits = node.config.load_limits
        self.runtimes[name] = rt
        self.runtime_stats.setdefault(name, CodeStats())
        return rt

    # ------------------------------------------------------------------ install, unload
    def install(self, code: CodeObject, origin: CodeOrigin = CodeOrigin.LOCAL, pin: bool = False) -> CacheEntry:
        """Load ``code`` (its dependencies installed first), run ``init``, cache it."""
        existing = self.cache.get(code.name)
        if existing is not None:
            existing.pinned = existing.pinned or pin
            return existing
        node = self._node
        rt, deps = self._admit(code, origin)
        self._make_room(code)
        loaded = rt.load(code, [d.loaded for d in deps], node.host)
        config = node.config
        entry = CacheEntry(
            code=code,
            runtime=rt.name,
            loaded=loaded,
            state=SoftState(
                config.state_entries, config.state_bytes, config.state_ttl_ms, node.now_ns, node.soft_state
            ),
            origin=origin.value,
            pinned=pin,
            breaker=Breaker(threshold=config.breaker_threshold),
        )
        self.cache.add(entry)
        env, saved = self._enter(entry)
        try:
            rc: int | RuntimeFault = loaded.init()
        except Exception as exc:  # a runtime's own failure is a fault too, never the node's
            rc = as_fault(exc, rt.name, code.short_name)
        finally:
            self._leave(env, saved)
        if not isinstance(rc, int) or rc < 0:
            self.cache.remove(code.name)
            entry.state.clear()
            try:
                loaded.unload()
            except Exception:
                log.exception("unloading %s after a failed init", code.short_name)
            why = rc if isinstance(rc, RuntimeFault) else f"init returned {pni.status_name(rc)}"
            reason = rc.reason if isinstance(rc, RuntimeFault) else None
            raise CodeObjectError(f"code object {code.short_name} refused installation: {why}", reason)
        for d in deps:
            d.dependants.add(code.name)
        if self.disk is not None:
            self.disk.keep(code)  # best effort: see DiskStore
        node.emit(CodeLoaded(code.hex_name, rt.name, origin.value))
        return entry

    def prepare(self, code: CodeObject, origin: CodeOrigin) -> LoadJob | None:
        """Every check ``install`` makes, then the runtime's costly part of loading ``code`` as a
        ``LoadJob`` to run off the node's thread (None: installing is cheap, or it is installed)."""
        if code.name in self.cache:
            return None
        rt, deps = self._admit(code, origin)
        return rt.prepare(code, [d.loaded for d in deps])

    def adopt(self, code: CodeObject, result: bytes) -> None:
        """Give ``code``'s runtime the result of the job ``prepare`` returned."""
        self.runtime(code.runtime).adopt(code, result)

    def _admit(self, code: CodeObject, origin: CodeOrigin) -> tuple[Runtime, list[CacheEntry]]:
        """The checks before any work: PNI version, runtime, trust, load limits, dependencies."""
        if not pni.version_compatible(code.manifest.pni_version):
            raise PniVersionError(
                f"code object {code.short_name} was built for PNI {code.manifest.pni_version}; this node "
                f"serves PNI {pni.PNI_VERSION} (same major, minor <= {pni.PNI_VERSION.split('.')[1]})"
            )
        node = self._node
        rt = self.runtime(code.runtime)
        node.trust.check(code, rt.isolation, origin, runtime=rt.name)
        node.config.load_limits.require(f"code object {code.short_name} bytes", code.size, "code_bytes", FaultReason.CODE_TOO_BIG)
        rt.check(code)
        return rt, self._dependencies(code)

    def _dependencies(self, code: CodeObject) -> list[CacheEntry]:
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
        return deps

    def _make_room(self, code: CodeObject) -> None:
        victims = self.cache.victims(code.size)
        if victims is None:
            raise CodeObjectError(
                f"code object {code.short_name} ({code.size} bytes) does not fit the code cache "
                f"({self.cache.max_bytes} bytes, the rest pinned or depended on)"
            )
        for v in victims:
            entry = self.cache.peek(v)
            if entry is not None:
                self.unload(entry, "evicted")
                self.cache.evictions += 1

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
                        self._node.install(code, origin=CodeOrigin.LOCAL)
                        done += 1
                    except PanError as exc:
                        log.warning("not reloading %s from disk: %s", code.short_name, exc)
                    progress = True
        return done

    def uninstall(self, name: bytes | CodeObject) -> None:
        """Remove a code object that nothing depends on (``finalize`` runs; its disk copy goes)."""
        key = name.name if isinstance(name, CodeObject) else name
        entry = self.cache.peek(key)
        if entry is None:
            raise CodeObjectError(f"code object {key.hex()[:12]} is not installed")
        if entry.dependants:
            raise CodeObjectError(
                f"code object {entry.code.short_name} is a dependency of "
                f"{', '.join(d.hex()[:12] for d in sorted(entry.dependants))}; uninstall those first"
            )
        self.unload(entry, "uninstall")
        if self.disk is not None:
            self.disk.forget(key)

    def unload(self, entry: CacheEntry, reason: str) -> None:
        """Run ``finalize``, unload the code and release its soft state, segments and tokens."""
        env, saved = self._enter(entry)
        try:
            entry.loaded.finalize()
        except Exception as exc:
            log.warning("finalize of %s failed: %s", entry.code.short_name, exc)
        finally:
            self._leave(env, saved)
        try:
            entry.loaded.unload()
        except Exception:
            log.exception("unloading %s", entry.code.short_name)
        entry.state.clear()
        entry.buffers.release_all()
        name = entry.code.name
        self.cache.remove(name)
        for dep in entry.code.manifest.dependencies:
            d = self.cache.peek(dep)
            if d is not None:
                d.dependants.discard(name)
        if self.portmapper == name:
            self.portmapper = None
        node = self._node
        node.services.forget_code(name)
        node.pins.forget(name)
        node.emit(CodeUnloaded(entry.code.hex_name, reason))

    def close(self) -> None:
        """Unload every code object (pinned and depended-on ones too), then close the runtimes."""
        for entry in list(self.cache):
            entry.pinned = False
            entry.dependants.clear()
            self.unload(entry, "close")
        for rt in self.runtimes.values():
            try:
                rt.close()
            except Exception:
                log.exception("closing runtime %s", rt.name)

    def after_fault(self, entry: CacheEntry, fault: RuntimeFault) -> None:
        """Reset ``entry``'s code if its runtime asks, and quarantine it after repeated faults."""
        node = self._node
        now = node.now_ns()
        if entry.loaded.needs_reset:
            self.cache.generation += 1
            try:
                entry.loaded.reset()
            except Exception:
                log.exception("resetting %s", entry.code.short_name)
        if entry.breaker.record_fault(now):
            self.cache.generation += 1
            node.emit(CodeQuarantined(entry.code.hex_name, entry.breaker.trips, entry.breaker.open_until))
            log.warning(
                "quarantined %s for %.1fs after repeated faults (last: %s)",
                entry.code.short_name,
                entry.breaker.current_backoff / 1e9,
                fault,
            )

    # ------------------------------------------------------------------ calls outside a capsule
    def use_portmapper(self, code: CodeObject | bytes) -> None:
        """Make an installed code object (exporting ``lookup``) the node's portmapper."""
        name = code.name if isinstance(code, CodeObject) else code
        entry = self.cache.peek(name)
        if entry is None or "lookup" not in entry.code.manifest.exports:
            raise CodeObjectError("the portmapper must be installed and export 'lookup'")
        entry.pinned = True
        self.portmapper = name

    def portmap(self, port: int) -> int | None:
        """The link token the portmapper holds for ``port`` (negative: none), None without one
        or when the lookup faulted: the fault is counted on the portmapper with its reason (and
        resets it if its runtime asks), like a fault of any call the node makes to code."""
        if self.portmapper is None:
            return None
        pm = self.cache.peek(self.portmapper)
        if pm is None:
            return None
        try:
            return self.call_export(pm, "lookup", port, 0)
        except RuntimeFault as fault:
            self._node.count_fault(pm, fault)
            return None

    def call_export(self, entry: CacheEntry, export: str, a0: int, a1: int) -> int:
        """Call ``export`` of an installed code object in an environment of its own; every
        failure is a ``RuntimeFault`` with its reason (a runtime's own exception included)."""
        if export not in entry.code.manifest.exports:
            return pni.NOT_FOUND
        env, saved = self._enter(entry)
        try:
            return int(entry.loaded.call_export(export, a0, a1))
        except RuntimeFault:
            raise
        except Exception as exc:
            raise as_fault(exc, entry.runtime, entry.code.short_name) from exc
        finally:
            self._leave(env, saved)

    def _control_env(self, code: CodeObject) -> Environment:
        """A fresh application-origin environment of ``code``: what a worker's PNI calls outside
        any capsule (its ``init``, an export, ``finalize``) are served in."""
        env = Environment()
        env.code = code
        env.budget = self._node.config.budget
        env.origin_kind = Origin.APPLICATION
        return env

    def _enter(self, entry: CacheEntry) -> tuple[Environment, Environment]:
        """Let the host serve a fresh application-origin environment of ``entry``; returns it
        and the environment it replaced (give both to ``_leave``)."""
        env = self._call_envs.pop() if self._call_envs else Environment()
        env.code = entry.code
        env.budget = self._node.config.budget
        env.origin_kind = Origin.APPLICATION
        env.sent_bytes = 0
        env.allocated = 0
        host = self._node.host
        saved = host.current
        host.current = env
        return env, saved

    def _leave(self, env: Environment, saved: Environment) -> None:
        self._node.host.current = saved
        env.clear()
        self._call_envs.append(env)
