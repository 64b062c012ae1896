"""``pan build file.py --runtime restricted_py``: check the source once and wrap it."""

from __future__ import annotations

from pan_restricted_py.compiler import compile_source
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError
from pan_runtime.plugin.builders import Builder, BuildRequest

__all__ = ["RestrictedPyBuilder"]

_OPTIONAL_ENTRIES = ("init", "finalize")


class RestrictedPyBuilder(Builder):
    """One ``.py`` source becomes one code object whose payload is that source, unchanged."""

    runtime = "restricted_py"
    suffixes = (".py",)

    def build(self, request: BuildRequest) -> CodeObject:
        if len(request.sources) != 1:
            raise BuildError(f"restricted_py builds one .py source per code object, got {len(request.sources)}")
        path = request.sources[0]
        try:
            source = path.read_bytes()
        except OSError as exc:
            raise BuildError(f"cannot read {path}: {exc.strerror}") from None
        try:
            compiled = compile_source(source, path.name)
        except CodeObjectError as exc:
            raise BuildError(str(exc)) from None
        defined = set(compiled.functions)
        if "accept" not in defined:
            raise BuildError(f"{path.name}: defines no module-level function 'accept(pni, capsule, length)'")
        missing = [e for e in request.exports if e not in defined]
        if missing:
            raise BuildError(
                f"{path.name}: exports {', '.join(repr(m) for m in missing)} are not module-level functions"
            )
        entry = {"accept": "accept"}
        entry.update({e: e for e in _OPTIONAL_ENTRIES if e in defined})
        return CodeObject.create(
            self.runtime,
            source,
            entry=entry,
            dependencies=[d.name for d in request.dependencies],
            exports=list(request.exports),
            meta=self.meta_for(request),
        )
