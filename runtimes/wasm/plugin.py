"""Registers the wasm runtime and its builder with pan (entry point ``pan.runtimes``: wasm).

Importing this module never imports wasmtime; ``WasmRuntime.available()`` reports a missing
or unusable engine with the reason.
"""

from __future__ import annotations

from typing import Any

from pan_runtime.plugin.hookspecs import hookimpl
from pan_wasm.builder import WasmBuilder
from pan_wasm.runtime import WasmRuntime

__all__ = ["pan_register_runtimes", "pan_register_builders", "pan_register_sources"]


@hookimpl
def pan_register_runtimes(registry: Any) -> None:
    registry.add(WasmRuntime)


@hookimpl
def pan_register_builders(registry: Any) -> None:
    registry.add(WasmBuilder())


@hookimpl
def pan_register_sources(registry: Any) -> None:
    """pan's C reference protocols (shared with native); the conformance cases ship with pan."""
    from pan_runtime.plugin.sources import shipped_protocols

    directory, files, inputs = shipped_protocols("c")
    registry.add_protocols("wasm", directory, files, inputs=inputs)
