"""The ``restricted_py`` runtime: Python source code objects run under RestrictedPython guards.

Each code object's source is compiled once (cached by code object name) and its module body
run once per load, under the step budget, into a private globals dict. Entry points are
module-level functions::

    def accept(pni, capsule, length) -> int      # required
    def init(pni) -> int                          # optional
    def finalize(pni) -> int                      # optional
    def <export>(pni, a0, a1) -> int              # for each export named in the manifest

``pni`` is the code object's view of ``pan_runtime.pni_api.HostPNI``: one object per loaded
code object, made once, exposing exactly the PNI calls (a negative status raises
``PniError``, which code may catch). The constants and verdict helpers (``forward(off)``,
``deliver(port)``) of ``pan_runtime.pni_api`` and the header codecs (``PingHdr`` ...) of
``pan_runtime.protocol_headers`` are globals. Dependencies are reachable as ``deps[i].<export>(a0, a1)`` (manifest order) or as
``pni.dep_call(i, b"<export>", a0, a1)``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pan_restricted_py.limits import DEFAULT_LIMITS, Limits
from pan_runtime.errors import CodeObjectError, PanError
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

if TYPE_CHECKING:
    from pan_restricted_py.code import RestrictedPyCode
    from pan_restricted_py.compiler import CompiledSource
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.pni import PniServer

__all__ = ["RestrictedPyRuntime"]


class RestrictedPyRuntime(Runtime):
    """Python source under RestrictedPython: guarded, not sandboxed (see the package docs)."""

    name = "restricted_py"
    isolation = Isolation.GUARDED
    limits = frozenset({"time_ms", "steps"})
    payload = "UTF-8 Python source (RestrictedPython subset)"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        limits = self.options.get("limits", DEFAULT_LIMITS)
        if not isinstance(limits, Limits):
            raise PanError(f"restricted_py option 'limits' must be a Limits, not {type(limits).__name__}")
        self.limits = limits
        self._compiled: dict[bytes, CompiledSource] = {}
        self.compilations = 0

    @classmethod
    def available(cls) -> str | None:
        try:
            import RestrictedPython  # noqa: F401
        except ImportError:
            return "RestrictedPython is not installed (pip install 'pan-runtime[restricted-py]')"
        return None

    def compile(self, code: CodeObject) -> CompiledSource:
        """The compiled source of ``code``, compiled on first use only."""
        compiled = self._compiled.get(code.name)
        if compiled is None:
            from pan_restricted_py.compiler import compile_source

            compiled = compile_source(code.payload, f"<restricted_py {code.short_name}>", self.limits)
            self.compilations += 1
            self._compiled[code.name] = compiled
        return compiled

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> RestrictedPyCode:
        if code.runtime != self.name:
            raise CodeObjectError(f"{code.short_name}: runtime {code.runtime!r}, not {self.name!r}")
        from pan_restricted_py.code import RestrictedPyCode

        return RestrictedPyCode(code, host, self.compile(code), deps, self.limits)

    def forget(self, name: bytes) -> None:
        """Drop the compiled form of a code object (after it left the cache)."""
        self._compiled.pop(name, None)

    def close(self) -> None:
        self._compiled.clear()

    @classmethod
    def versions(cls) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            rp = version("RestrictedPython")
        except PackageNotFoundError:
            rp = "unknown"
        return {"RestrictedPython": rp, "python": sys.version.split()[0]}
