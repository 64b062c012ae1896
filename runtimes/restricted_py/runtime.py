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

Options (``[runtimes.options.restricted_py]`` in the node TOML, or ``RestrictedPyRuntime(options)``),
all optional: every field of ``limits.Limits`` by name (``max_items``, ``max_int_bits``,
``max_depth``, ``max_args``, ``max_width``, ``chunk``, ``max_call_memory_bytes``,
``held_memory_bytes``, ``tick_ms``), or ``limits``, a whole ``Limits``.

Compiling costs about 5 µs per byte of source, so a source from the network larger than
``INLINE_COMPILE_BYTES`` is compiled in the node's compiler process (``compile_job``): the
CPython code comes back marshalled (same interpreter) and ``adopt`` keeps it for ``load``.
"""

from __future__ import annotations

import dataclasses
import marshal
import sys
import types
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pan_restricted_py import account
from pan_restricted_py.limits import Limits, limits_from_options
from pan_runtime.errors import CodeObjectError, FaultReason, RuntimeUnavailable
from pan_runtime.plugin.loadjob import LoadJob
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

if TYPE_CHECKING:
    from pan_restricted_py.code import RestrictedPyCode
    from pan_restricted_py.compiler import CompiledSource
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.pni import PniServer

__all__ = ["RestrictedPyRuntime", "INLINE_COMPILE_BYTES", "compile_job"]

#: sources up to this size compile on the node's thread (some tens of ms at most); larger
#: ones from the network compile in the node's compiler process
INLINE_COMPILE_BYTES = 8 << 10


class RestrictedPyRuntime(Runtime):
    """Python source under RestrictedPython: guarded, not sandboxed (see the package docs)."""

    name = "restricted_py"
    isolation = Isolation.GUARDED
    limits = frozenset({"time_ms", "steps"})
    payload = "UTF-8 Python source (RestrictedPython subset)"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self.limits = limits_from_options(self.options)
        problem = self.available()
        if problem:
            raise RuntimeUnavailable(problem)
        account.install(self.limits.tick_ms)
        self._compiled: dict[bytes, CompiledSource] = {}
        #: compiled in the compiler process, waiting for their load (a few at most)
        self._adopted: OrderedDict[bytes, CompiledSource] = OrderedDict()
        self.compilations = 0

    @classmethod
    def available(cls) -> str | None:
        try:
            import RestrictedPython  # noqa: F401
        except ImportError:
            return "RestrictedPython is not installed (pip install 'pan-runtime[restricted-py]')"
        return account.problem()

    def compile(self, code: CodeObject) -> CompiledSource:
        """The compiled source of ``code``, compiled on first use only."""
        compiled = self._compiled.get(code.name) or self._adopted.pop(code.name, None)
        if compiled is not None:
            self._compiled[code.name] = compiled
        else:
            from pan_restricted_py.compiler import compile_source

            compiled = compile_source(code.payload, f"<restricted_py {code.short_name}>", self.limits)
            self.compilations += 1
            self._compiled[code.name] = compiled
        return compiled

    def prepare(self, code: CodeObject, deps: Sequence[LoadedCode]) -> LoadJob | None:
        """Compiling a large source, as a job for the node's compiler process."""
        if code.name in self._compiled or len(code.payload) <= INLINE_COMPILE_BYTES:
            return None
        return LoadJob(
            "pan_restricted_py.runtime:compile_job",
            code.payload,
            {"filename": f"<restricted_py {code.short_name}>", "limits": dataclasses.asdict(self.limits)},
        )

    def adopt(self, code: CodeObject, result: bytes) -> None:
        """Take the code the compiler process compiled (marshalled by this same interpreter)."""
        from pan_restricted_py.compiler import CompiledSource

        try:
            obj, filename, functions = marshal.loads(result)
        except (ValueError, EOFError, TypeError) as exc:
            raise CodeObjectError(f"{code.short_name}: the compiler's result does not load: {exc}", FaultReason.COMPILE_FAILED) from None
        if not (isinstance(obj, types.CodeType) and isinstance(filename, str) and all(isinstance(f, str) for f in functions)):
            raise CodeObjectError(f"{code.short_name}: the compiler's result is not compiled source", FaultReason.COMPILE_FAILED)
        self._adopted[code.name] = CompiledSource(obj, filename, tuple(functions))
        while len(self._adopted) > 8:
            self._adopted.popitem(last=False)

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
        self._adopted.clear()

    @classmethod
    def versions(cls) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            rp = version("RestrictedPython")
        except PackageNotFoundError:
            rp = "unknown"
        return {"RestrictedPython": rp, "python": sys.version.split()[0]}


def compile_job(payload: bytes, settings: Mapping[str, Any]) -> bytes:
    """The compiler process's job: check, instrument and compile the source; the code, marshalled."""
    from pan_restricted_py.compiler import compile_source

    compiled = compile_source(payload, str(settings["filename"]), Limits(**settings["limits"]))
    return marshal.dumps((compiled.code, compiled.filename, compiled.functions))
