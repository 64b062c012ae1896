"""pluggy registration of the ``jvm`` runtime and its builder (entry point ``pan.runtimes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pan_runtime.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from pan_runtime.plugin.builders import BuilderRegistry
    from pan_runtime.plugin.plugins import RuntimeRegistry
    from pan_runtime.plugin.sources import SourceRegistry


@hookimpl
def pan_register_runtimes(registry: RuntimeRegistry) -> None:
    from pan_jvm.runtime import JvmRuntime

    registry.add(JvmRuntime)


@hookimpl
def pan_register_builders(registry: BuilderRegistry) -> None:
    from pan_jvm.builder import JvmBuilder

    registry.add(JvmBuilder())


@hookimpl
def pan_register_sources(registry: SourceRegistry) -> None:
    """pan's Java reference protocols; the conformance cases ship with pan."""
    from pan_runtime.plugin.sources import shipped_protocols

    directory, files, inputs = shipped_protocols("java")
    registry.add_protocols("jvm", directory, files, inputs=inputs)
