"""Registers the restricted_py runtime and its builder with pan (entry point ``pan.runtimes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pan_runtime.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from pan_runtime.plugin.builders import BuilderRegistry
    from pan_runtime.plugin.plugins import RuntimeRegistry
    from pan_runtime.plugin.sources import SourceRegistry


@hookimpl
def pan_register_runtimes(registry: RuntimeRegistry) -> None:
    from pan_restricted_py.runtime import RestrictedPyRuntime

    registry.add(RestrictedPyRuntime)


@hookimpl
def pan_register_builders(registry: BuilderRegistry) -> None:
    from pan_restricted_py.builder import RestrictedPyBuilder

    registry.add(RestrictedPyBuilder())


@hookimpl
def pan_register_sources(registry: SourceRegistry) -> None:
    """pan's Python reference protocols; the conformance cases ship with pan."""
    from pan_runtime.plugin.sources import shipped_protocols

    directory, files, inputs = shipped_protocols("python")
    registry.add_protocols("restricted_py", directory, files, inputs=inputs)
