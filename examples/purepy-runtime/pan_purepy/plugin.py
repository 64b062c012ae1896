# file: pan_purepy/plugin.py
"""The ``purepy`` runtime: a code object's payload is Python source, run by CPython as it is.

The source programs against the PNI's Python binding: every entry point gets a ``pni`` object
(``pan_runtime.pni_api.HostPNI``: one method per PNI call, a negative status raised as
``PniError``), and the binding's constants, verdict helpers and the reference protocols'
header codecs are globals. pan's own Python reference protocols and conformance cases use the
same binding, so this runtime registers those protocols and builds those cases unchanged.

Nothing contains the code (it can do whatever the process can), so the runtime says
``Isolation.NONE``: the trust policy then loads its code only when it is installed locally
or signed by a trusted key, and the conformance kit skips the cases that need containment.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

from pan_runtime import hookimpl, pni_api, protocol_headers
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.plugin.builders import Builder, BuildRequest
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime
from pan_runtime.resources import protocols_dir

OPTIONAL = ("init", "finalize")


def code_globals(name: str) -> dict[str, Any]:
    """A fresh module namespace: the binding's public names, less the classes code never needs."""
    g: dict[str, Any] = {"__name__": name}
    for module in (pni_api, protocol_headers):
        g.update({n: getattr(module, n) for n in module.__all__ if n not in ("PNI", "HostPNI")})
    return g


class PurePyCode(LoadedCode):
    """One code object: its module namespace, its entry points and the ``pni`` they get."""

    def __init__(self, code: CodeObject, host: Any, source: str):
        super().__init__(code, host)
        self.pni = pni_api.HostPNI(host)
        g = code_globals(code.short_name)
        try:
            exec(compile(source, f"<{code.short_name}>", "exec"), g)
        except Exception as exc:
            raise CodeObjectError(f"{code.short_name}: the module body failed: {type(exc).__name__}: {exc}") from None
        wanted = [code.manifest.entry.get("accept", "accept"), *code.manifest.exports]
        wanted += [code.manifest.entry[e] for e in OPTIONAL if e in code.manifest.entry]
        self.functions: dict[str, Callable[..., Any]] = {}
        for name in wanted:
            if not callable(g.get(name)):
                raise CodeObjectError(f"{code.short_name}: the manifest names {name!r}, which the source does not define")
            self.functions[name] = g[name]
        self._accept = self.functions[wanted[0]]

    def _call(self, what: str, fn: Callable[..., Any], *args: int, default: int | None = None) -> int:
        try:
            result = fn(self.pni, *args)
        except Exception as exc:  # the code's own error: this capsule is dropped, the node goes on
            raise RuntimeFault(f"{self.code.short_name}: {what}: {type(exc).__name__}: {exc}", FaultReason.CODE_ERROR) from None
        if result is None and default is not None:
            return default
        if type(result) is not int:
            raise RuntimeFault(f"{self.code.short_name}: {what} returned {type(result).__name__}, not an int",
                               FaultReason.BAD_VERDICT)
        return result

    def accept(self, env: Any) -> int:
        return self._call("accept", self._accept, env.BODY_HANDLE, env.length)

    def init(self) -> int:
        name = self.code.manifest.entry.get("init")
        return self._call("init", self.functions[name], default=0) if name else 0

    def finalize(self) -> int:
        name = self.code.manifest.entry.get("finalize")
        return self._call("finalize", self.functions[name], default=0) if name else 0

    def call_export(self, name: str, a0: int, a1: int) -> int:
        if name not in self.code.manifest.exports:
            return super().call_export(name, a0, a1)
        return self._call(f"export {name}", self.functions[name], a0, a1)


class PurePyRuntime(Runtime):
    name = "purepy"
    isolation = Isolation.NONE  # the code can do anything the process can: be honest
    payload = "UTF-8 Python source over the PNI's Python binding"

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: Any) -> LoadedCode:
        try:
            source = code.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodeObjectError(f"purepy code object {code.short_name}: the payload is not UTF-8: {exc}") from None
        return PurePyCode(code, host, source)


class PurePyBuilder(Builder):
    """``pan build x.py --runtime purepy``: one source, checked to compile, becomes the payload."""

    runtime = "purepy"
    suffixes = (".py",)

    def build(self, request: BuildRequest) -> CodeObject:
        if len(request.sources) != 1:
            raise BuildError(f"purepy builds one .py source per code object, got {len(request.sources)}")
        path = request.sources[0]
        source = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as exc:
            raise BuildError(f"{path}:{exc.lineno}: {exc.msg}") from None
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        missing = [name for name in ("accept", *request.exports) if name not in defined]
        if missing:
            raise BuildError(f"{path.name} defines no module-level function {', '.join(missing)}")
        entry = {"accept": "accept", **{e: e for e in OPTIONAL if e in defined}}
        return CodeObject.create("purepy", source.encode(), entry=entry, exports=list(request.exports),
                                 dependencies=[d.name for d in request.dependencies], meta=self.meta_for(request))


@hookimpl
def pan_register_runtimes(registry: Any) -> None:
    registry.add(PurePyRuntime)


@hookimpl
def pan_register_builders(registry: Any) -> None:
    registry.add(PurePyBuilder())


@hookimpl
def pan_register_sources(registry: Any) -> None:
    # pan's Python reference protocols use the binding this runtime gives code: build them as
    # they are. A runtime for another language passes its own folder and suffix instead, e.g.
    # registry.add_protocols("mine", Path(__file__).parent / "protocols", ".mine"), and
    # registry.add_cases("mine", Path(__file__).parent / "cases") for the conformance cases.
    registry.add_protocols("purepy", protocols_dir, ".py")
