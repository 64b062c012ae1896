"""pan's ``native`` runtime: x86-64 ELF relocatable objects linked in-process by pan's own loader.

See README.md in this package. The plugin entry point is ``pan_native.plugin``.
"""

from pan_native.builder import NativeBuilder
from pan_native.runtime import NativeRuntime

__all__ = ["NativeBuilder", "NativeRuntime"]
