"""Registers the ``native`` runtime and its builder with pan (entry point ``pan.runtimes``)."""

from __future__ import annotations

from typing import Any

from pan_runtime.plugin.hookspecs import hookimpl

__all__ = ["pan_register_runtimes", "pan_register_builders"]


@hookimpl
def pan_register_runtimes(registry: Any) -> None:
    from pan_native.runtime import NativeRuntime

    registry.add(NativeRuntime)


@hookimpl
def pan_register_builders(registry: Any) -> None:
    from pan_native.builder import NativeBuilder

    registry.add(NativeBuilder())
