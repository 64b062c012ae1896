"""The ``native`` runtime: x86-64 ELF relocatable objects linked into the node's process."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pan_runtime.errors import CodeObjectError, RuntimeUnavailable
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

if TYPE_CHECKING:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.pni import PniServer

__all__ = ["NativeRuntime"]


class NativeRuntime(Runtime):
    """Links code objects' ``.o`` payloads with pan's own loader; no sandbox (trusted code only)."""

    name: ClassVar[str] = "native"
    isolation: ClassVar[Isolation] = Isolation.NONE
    payload: ClassVar[str] = "x86-64 ELF relocatable object (.o) built from C against pni.h"

    @classmethod
    def available(cls) -> str | None:
        if not sys.platform.startswith("linux"):
            return f"native code objects need Linux, this is {sys.platform}"
        machine = platform.machine().lower()
        if machine not in ("x86_64", "amd64"):
            return f"native code objects are x86-64, this machine is {machine}"
        try:
            import elftools  # noqa: F401
        except ImportError:
            return "pyelftools is not installed (pip install 'pan-runtime[native]')"
        from pan_native.toolchain import compiler

        if compiler() is None:
            return "no C compiler (cc or $CC) to build the native support object"
        return None

    def start(self) -> None:
        """Build (or find in the cache) and parse the support object now: a worker's spare
        then links a restarted code object without parsing it."""
        if self.available() is None:
            from pan_native.support import support_object

            support_object()

    def check(self, code: CodeObject) -> None:
        """Sections, symbols, relocations and undefined symbols against the node's load limits
        (read from the headers; parsing and linking, bounded by them, run in ``load``: the
        object is mapped into this process, so there is no linking it elsewhere)."""
        from pan_native.shape import scan

        scan(code.payload, self.load_limits, f"{code.short_name}: native object")

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> LoadedCode:
        reason = self.available()
        if reason is not None:
            raise RuntimeUnavailable(f"native runtime unavailable: {reason}")
        if code.manifest.runtime != self.name:
            raise CodeObjectError(f"{code.short_name} is for runtime {code.manifest.runtime!r}, not 'native'")
        from pan_native.code import NativeCode

        self.check(code)
        try:
            return NativeCode(code, host, deps)
        except CodeObjectError as exc:
            raise CodeObjectError(f"{code.short_name}: {exc}", exc.reason) from None

    @classmethod
    def versions(cls) -> dict[str, str]:
        import elftools

        return {"pyelftools": elftools.__version__, "machine": platform.machine()}
