"""Registers the ``native`` runtime and its builder with pan (entry point ``pan.runtimes``)."""

from __future__ import annotations

from typing import Any

from pan_runtime.plugin.hookspecs import hookimpl

__all__ = ["pan_register_runtimes", "pan_register_builders", "pan_register_sources"]


@hookimpl
def pan_register_runtimes(registry: Any) -> None:
    from pan_native.runtime import NativeRuntime

    registry.add(NativeRuntime)


@hookimpl
def pan_register_builders(registry: Any) -> None:
    from pan_native.builder import NativeBuilder

    registry.add(NativeBuilder())


@hookimpl
def pan_register_sources(registry: Any) -> None:
    """pan's C reference protocols (shared with wasm); the conformance cases ship with pan."""
    from pan_runtime.plugin.sources import shipped_protocols

    directory, files, inputs = shipped_protocols("c")
    registry.add_protocols("native", directory, files, inputs=inputs)
