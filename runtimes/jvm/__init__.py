"""pan's ``jvm`` runtime: Java code objects on JPype, one class loader each, checked at load.

Importing this package does not start the JVM; ``JvmRuntime`` starts it on first load.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JvmRuntime", "JvmLoadedCode", "JvmBuilder"]


def __getattr__(name: str) -> Any:
    if name in ("JvmRuntime", "JvmLoadedCode"):
        from pan_jvm import runtime

        return getattr(runtime, name)
    if name == "JvmBuilder":
        from pan_jvm.builder import JvmBuilder

        return JvmBuilder
    raise AttributeError(name)
