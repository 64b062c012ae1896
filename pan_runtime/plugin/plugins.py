"""Finding runtimes: the plugin manager, the runtime registry and availability reports.

``make_plugin_manager()`` builds a fresh pluggy manager (never at import time), loads every
entry point in the group ``pan.runtimes`` and lets each plugin register its runtimes and
builders. A plugin that fails to import, or a runtime that reports itself unavailable, is
recorded with its reason; it never stops the others.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from dataclasses import dataclass, field
from typing import Any

import pluggy

from pan_runtime.errors import PanError
from pan_runtime.plugin import hookspecs
from pan_runtime.plugin.builders import BuilderRegistry
from pan_runtime.plugin.runtime import Isolation, Runtime

__all__ = ["RuntimeInfo", "RuntimeRegistry", "Plugins", "make_plugin_manager", "load_plugins"]


@dataclass
class RuntimeInfo:
    """What ``pan runtimes`` prints for one runtime (or one plugin that failed to load)."""

    name: str
    isolation: str
    available: bool
    reason: str = ""
    source: str = ""
    versions: dict[str, str] = field(default_factory=dict)


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
    """The loaded plugin state: the manager, registered runtimes and builders, and failures."""

    manager: pluggy.PluginManager
    runtimes: RuntimeRegistry
    builders: BuilderRegistry
    failures: dict[str, str]

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
                )
            )
        for ep_name, why in sorted(self.failures.items()):
            if ep_name not in self.runtimes:
                infos.append(RuntimeInfo(ep_name, "?", False, why, ep_name))
        return infos

    def available_runtimes(self) -> list[str]:
        return [i.name for i in self.runtime_infos() if i.available]


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(extra: list[Any] | None = None, entry_points: bool = True) -> Plugins:
    """A fresh manager with every ``pan.runtimes`` entry point (and ``extra`` plugin objects)."""
    pm = make_plugin_manager()
    failures: dict[str, str] = {}
    runtimes = RuntimeRegistry()
    builders = BuilderRegistry()
    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            try:
                plugin = ep.load()
            except Exception as exc:
                failures[ep.name] = f"plugin {ep.value} failed to import: {type(exc).__name__}: {exc}"
                continue
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=f"{ep.name}")
    for obj in extra or []:
        pm.register(obj)
    for impl in pm.hook.pan_register_runtimes.get_hookimpls():
        runtimes.current_source = impl.plugin_name
        try:
            impl.function(registry=runtimes)
        except Exception as exc:
            failures[impl.plugin_name] = f"registering runtimes failed: {type(exc).__name__}: {exc}"
    runtimes.current_source = ""
    for impl in pm.hook.pan_register_builders.get_hookimpls():
        try:
            impl.function(registry=builders)
        except Exception as exc:
            failures.setdefault(impl.plugin_name, f"registering builders failed: {type(exc).__name__}: {exc}")
    return Plugins(pm, runtimes, builders, failures)
