"""``pan build file.c --runtime native``: compile C against pni.h into one object and wrap it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from pan_native.elfobject import STT_FUNC, parse_object
from pan_native.image import HELPERS
from pan_native.toolchain import CFLAGS, compile_object, compiler
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError
from pan_runtime.plugin.builders import Builder, BuildRequest
from pan_runtime.pni_api import CALLS

__all__ = ["NativeBuilder"]

_OPTIONAL_ENTRIES = ("init", "finalize")


class NativeBuilder(Builder):
    """Compiles ``.c`` sources with ``toolchain.CFLAGS`` into one ELF object (a unity build)."""

    runtime: ClassVar[str] = "native"
    suffixes: ClassVar[tuple[str, ...]] = (".c",)

    @classmethod
    def available(cls) -> str | None:
        return None if compiler() else "no C compiler: install gcc or set $CC"

    def build(self, request: BuildRequest) -> CodeObject:
        if not request.sources:
            raise BuildError("no sources to build")
        extra = tuple(request.options.get("cflags", "").split())
        with tempfile.TemporaryDirectory(prefix="pan-native-") as tmp:
            out = Path(tmp) / "code.o"
            compile_object(request.sources, out, extra)
            payload = out.read_bytes()
        try:
            obj = parse_object(payload)
        except CodeObjectError as exc:
            raise BuildError(f"the compiler produced an object pan cannot load: {exc}") from None
        functions = {n for n, s in obj.globals().items() if s.type == STT_FUNC}
        if "accept" not in functions:
            raise BuildError("no global function 'accept' in the sources; every code object needs one")
        entry = {"accept": "accept"}
        entry.update({k: k for k in _OPTIONAL_ENTRIES if k in functions})
        defined = obj.globals()
        missing = [e for e in request.exports if e not in defined]
        if missing:
            raise BuildError(f"exports not defined by the sources: {', '.join(missing)}")
        calls = {f"pni_{c[0]}" for c in CALLS}
        offered = {e for dep in request.dependencies for e in dep.manifest.exports}
        unknown = sorted(
            s.name for s in obj.undefined() if s.name not in calls and s.name not in offered and s.name not in HELPERS
        )
        if unknown:
            raise BuildError(
                f"undefined symbols that are neither PNI calls nor dependency exports: {', '.join(unknown)}"
            )
        meta = self.meta_for(request, cflags=[*CFLAGS, *extra])
        return CodeObject.create(
            "native",
            payload,
            entry=entry,
            dependencies=[d.name for d in request.dependencies],
            exports=list(request.exports),
            meta=meta,
        )
