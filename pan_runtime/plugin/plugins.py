"""Finding runtimes: the plugin manager, the runtime registry and availability reports.

``load_plugins()`` builds a fresh pluggy manager (``make_plugin_manager``, never at import
time), registers every entry point in the group ``pan.runtimes`` and then calls the
registration hooks through the manager (``pm.hook.pan_register_runtimes(registry=...)``).
A plugin that fails to import, does not match the hook specifications, or raises while
registering is recorded with its reason and left out; it never stops the others. The
sources plugins register (``pan_register_sources``: reference protocols, conformance cases)
are in ``Plugins.sources``. A runtime
that reports itself unavailable is listed with its reason. ``default_plugins()`` is the
process-wide set nodes use unless given their own.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from pan_runtime.errors import PanError
from pan_runtime.plugin import hookspecs
from pan_runtime.plugin.builders import BuilderRegistry
from pan_runtime.plugin.runtime import LIMITS, Isolation, Runtime
from pan_runtime.plugin.sources import SourceRegistry

__all__ = ["RuntimeInfo", "RuntimeRegistry", "Plugins", "make_plugin_manager", "load_plugins", "default_plugins"]


@dataclass
class RuntimeInfo:
    """What ``pan runtimes`` prints for one runtime (or one plugin that failed to load)."""

    name: str
    isolation: str
    available: bool
    reason: str = ""
    source: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    #: the budget fields the runtime declares it enforces (``Runtime.limits``)
    limits: list[str] = field(default_factory=list)


class RuntimeRegistry:
    """Runtime classes keyed by their class-level ``name``."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Runtime]] = {}
        self._sources: dict[str, str] = {}
        self.current_source = ""

    def add(self, runtime_class: type[Runtime]) -> None:
        name = getattr(runtime_class, "name", None)
        if not isinstance(name, str) or not name:
            raise PanError(f"runtime class {runtime_class!r} has no class-level name")
        if not isinstance(getattr(runtime_class, "isolation", None), Isolation):
            raise PanError(f"runtime {name!r} has no Isolation level")
        limits = getattr(runtime_class, "limits", frozenset())
        if not isinstance(limits, frozenset) or not limits <= set(LIMITS):
            raise PanError(f"runtime {name!r}: limits must be a frozenset of {', '.join(LIMITS)}, got {limits!r}")
        if name in self._classes and self._classes[name] is not runtime_class:
            raise PanError(
                f"runtime name {name!r} registered twice: {self._classes[name].__module__} and {runtime_class.__module__}"
            )
        self._classes[name] = runtime_class
        self._sources[name] = self.current_source

    def get(self, name: str) -> type[Runtime]:
        try:
            return self._classes[name]
        except KeyError:
            raise PanError(f"no runtime named {name!r}; known: {', '.join(sorted(self._classes)) or 'none'}") from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def source(self, name: str) -> str:
        return self._sources.get(name, "")


@dataclass(eq=False)
class Plugins:
    """The loaded plugin state: the manager, registered runtimes, builders and sources, and failures."""

    manager: pluggy.PluginManager
    runtimes: RuntimeRegistry
    builders: BuilderRegistry
    failures: dict[str, str]
    sources: SourceRegistry = field(default_factory=SourceRegistry)

    def runtime_infos(self) -> list[RuntimeInfo]:
        infos = []
        for name in self.runtimes.names():
            cls = self.runtimes.get(name)
            try:
                reason = cls.available()
            except Exception as exc:  # an availability probe must never break the listing
                reason = f"availability check failed: {type(exc).__name__}: {exc}"
            versions: dict[str, str] = {}
            # only versions known without starting an engine (a classmethod) are listed here
            if reason is None and isinstance(inspect.getattr_static(cls, "versions"), classmethod):
                try:
                    versions = dict(cls.versions())
                except Exception:
                    versions = {}
            infos.append(
                RuntimeInfo(
                    name,
                    cls.isolation.value,
                    reason is None,
                    reason or "",
                    self.runtimes.source(name),
                    versions,
                    sorted(cls.limits),
                )
            )
        for ep_name, why in sorted(self.failures.items()):
            if ep_name not in self.runtimes:
                infos.append(RuntimeInfo(ep_name, "?", False, why, ep_name))
        return infos

    def available_runtimes(self) -> list[str]:
        return [i.name for i in self.runtime_infos() if i.available]


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager that knows pan's hook specifications and no plugin yet."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None, failures: dict[str, str]) -> None:
    """Register ``plugin``; one that does not match the hook specifications is refused and recorded."""
    label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        failures[label] = f"plugin {label} does not match pan's hooks: {exc}"


def _call_each(
    pm: pluggy.PluginManager,
    hook: str,
    kwargs: dict[str, Any],
    failures: dict[str, str],
    before: Callable[[str], None] | None = None,
) -> None:
    """Call ``hook`` through the manager once per implementing plugin (``before`` is told its
    name), so that one plugin's error is recorded against it and the others still run."""
    everyone = pm.get_plugins()
    for impl in getattr(pm.hook, hook).get_hookimpls():
        only = pm.subset_hook_caller(hook, remove_plugins=[p for p in everyone if p is not impl.plugin])
        if before is not None:
            before(impl.plugin_name)
        try:
            only(**kwargs)
        except Exception as exc:
            failures.setdefault(impl.plugin_name, f"{hook} failed: {type(exc).__name__}: {exc}")


def load_plugins(extra: list[Any] | None = None, entry_points: bool = True) -> Plugins:
    """A fresh manager with every ``pan.runtimes`` entry point (and ``extra`` plugin objects)
    registered, and the runtimes, builders and sources they register."""
    pm = make_plugin_manager()
    failures: dict[str, str] = {}
    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            try:
                plugin = ep.load()
            except Exception as exc:
                failures[ep.name] = f"plugin {ep.value} failed to import: {type(exc).__name__}: {exc}"
                continue
            if not pm.is_registered(plugin):
                _register(pm, plugin, ep.name, failures)
    for obj in extra or []:
        if not pm.is_registered(obj):
            _register(pm, obj, None, failures)
    runtimes = RuntimeRegistry()
    builders = BuilderRegistry()

    def source(name: str) -> None:
        runtimes.current_source = name

    _call_each(pm, "pan_register_runtimes", {"registry": runtimes}, failures, before=source)
    runtimes.current_source = ""
    _call_each(pm, "pan_register_builders", {"registry": builders}, failures)
    sources = SourceRegistry()

    def source_of_sources(name: str) -> None:
        sources.current_source = name

    _call_each(pm, "pan_register_sources", {"registry": sources}, failures, before=source_of_sources)
    sources.current_source = ""
    return Plugins(pm, runtimes, builders, failures, sources)


_DEFAULT_PLUGINS: Plugins | None = None


def default_plugins() -> Plugins:
    """The process-wide plugin set (entry points plus the built-in null runtime), loaded once."""
    global _DEFAULT_PLUGINS
    if _DEFAULT_PLUGINS is None:
        from pan_runtime.plugin import nullrt

        _DEFAULT_PLUGINS = load_plugins(extra=[nullrt])
    return _DEFAULT_PLUGINS
