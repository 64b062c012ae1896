"""pan's ``jvm`` runtime: Java code objects on JPype, one class loader each, checked at load.

Importing this package does not start the JVM; ``JvmRuntime`` starts it on first load.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JvmRuntime", "JvmCode", "JvmBuilder"]


def __getattr__(name: str) -> Any:
    if name == "JvmRuntime":
        from pan_jvm.runtime import JvmRuntime

        return JvmRuntime
    if name == "JvmCode":
        from pan_jvm.code import JvmCode

        return JvmCode
    if name == "JvmBuilder":
        from pan_jvm.builder import JvmBuilder

        return JvmBuilder
    raise AttributeError(name)
