"""pan's ``native`` runtime: x86-64 ELF relocatable objects linked in-process by pan's own loader.

See README.md in this package. The plugin entry point is ``pan_native.plugin``. Nothing is
imported eagerly, so registering the plugin works even where pyelftools is missing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NativeBuilder", "NativeRuntime"]


def __getattr__(name: str) -> Any:
    if name == "NativeRuntime":
        from pan_native.runtime import NativeRuntime

        return NativeRuntime
    if name == "NativeBuilder":
        from pan_native.builder import NativeBuilder

        return NativeBuilder
    raise AttributeError(name)
