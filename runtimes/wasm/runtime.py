"""The ``wasm`` runtime: code objects are WebAssembly modules run by Wasmtime.

A module imports only PNI calls from ``pan_pni_1`` and exports ``memory``, ``accept``
and optionally ``init``, ``finalize``, the manifest's exports (``(i64, i64) -> i64``) and
the batch pair ``accept_batch``/``pni_batch_area``. Each loaded code object owns one store
and one instance; capsules cross in through ``fastcall`` (one unchecked call, no copy of
the body: code reads what it wants through ``seg_read``).

Dependencies are reached through the PNI's ``dep_call``, which the host implements:
modules are never linked to one another, so each keeps its own store, memory ceiling,
budget and fault domain, and a wasm code object may depend on code from any runtime.

Loading is bounded by the node's load limits (``pan_runtime.plugin.loadlimits``): ``check``
reads what the sections declare (``shape.scan``); compiling first walks every function body
for locals and nesting (``shape.check_bodies``). For code from the network, ``prepare``
hands that and the compile to the node's compiler process (``compile.compile_module``), and
``adopt`` takes the serialized module it returns.

Options (``WasmRuntime(options)``), all optional:

``cache_dir``           directory for compiled artifacts (none: compile once per process)
``max_module_bytes``    largest payload accepted, checked before compiling (8 MiB)
``max_memory_bytes``    ceiling on linear memory, whatever the budget says (64 MiB)
``max_wasm_stack``      bytes of native stack wasm may use before a ``stack`` fault (512 KiB)
``max_table_elements``  table elements per instance (65536)
``budget``              ``"epoch"`` (default, timed) or ``"fuel"`` (counted instructions)
``epoch_tick_ms``       epoch ticker period (2.0); a call stops 0-1 tick after its time
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import (
    ClosedError,
    CodeObjectError,
    ConfigError,
    FaultReason,
    RuntimeFault,
    RuntimeUnavailable,
)
from pan_runtime.plugin.loadjob import LoadJob
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime
from pan_runtime.pni_api import CALLS, PNI_VERSION, WASM_MODULE

if TYPE_CHECKING:
    import wasmtime

    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.pni import PniServer
    from pan_wasm.code import WasmCode
    from pan_wasm.limits import EpochTicker

__all__ = ["WasmRuntime", "DEFAULT_OPTIONS"]

#: the names of the PNI calls a module may import
_PNI_CALLS = frozenset(c[0] for c in CALLS)

DEFAULT_OPTIONS: dict[str, Any] = {
    "cache_dir": None,
    "max_module_bytes": 8 << 20,
    "max_memory_bytes": 64 << 20,
    "max_wasm_stack": 512 << 10,
    "max_table_elements": 65536,
    "budget": "epoch",
    "epoch_tick_ms": 2.0,
}
WASM_MAGIC = b"\0asm\x01\0\0\0"


class WasmRuntime(Runtime):
    """WebAssembly modules on Wasmtime, sandboxed, with epoch or fuel budgets."""

    name = "wasm"
    isolation = Isolation.SANDBOXED
    limits = frozenset({"time_ms", "fuel", "memory_bytes"})  # fuel when the budget option is "fuel"
    payload = "WebAssembly module (.wasm) importing the PNI from module pan_pni_1"

    @classmethod
    def available(cls) -> str | None:
        try:
            import wasmtime  # noqa: F401
        except ImportError as exc:
            return f"wasmtime is not installed ({exc}); pip install 'pan-runtime[wasm]'"
        except OSError as exc:  # the shared library failed to load
            return f"wasmtime cannot load its engine: {exc}"
        from pan_wasm import fastcall

        return fastcall.binding_problem()

    def __init__(self, options: Mapping[str, Any] | None = None):
        super().__init__(options)
        problem = self.available()
        if problem:
            raise RuntimeUnavailable(problem)
        import wasmtime

        from pan_wasm.cache import ModuleCache, fingerprint
        from pan_wasm.compile import engine_settings, make_config
        from pan_wasm.limits import MODES, EpochTicker

        unknown = set(self.options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ConfigError(
                f"wasm runtime: unknown options {sorted(unknown)}; known: {sorted(DEFAULT_OPTIONS)}"
            )
        opts = {**DEFAULT_OPTIONS, **self.options}
        if opts["budget"] not in MODES:
            raise ConfigError(f"wasm runtime: budget must be one of {MODES}, got {opts['budget']!r}")
        for key in ("max_module_bytes", "max_memory_bytes", "max_wasm_stack", "max_table_elements"):
            if not isinstance(opts[key], int) or opts[key] <= 0:
                raise ConfigError(f"wasm runtime: {key} must be a positive integer, got {opts[key]!r}")
        if not float(opts["epoch_tick_ms"]) > 0:
            raise ConfigError("wasm runtime: epoch_tick_ms must be positive")
        self.settings = opts
        self.mode: str = opts["budget"]
        self.tick_ms = float(opts["epoch_tick_ms"])
        self.max_module_bytes: int = opts["max_module_bytes"]
        self.max_memory_bytes: int = opts["max_memory_bytes"]
        self.max_table_elements: int = opts["max_table_elements"]

        #: what shapes generated code; the compiler process builds its engine from it too
        self.codegen = engine_settings(self.mode, opts["max_wasm_stack"])
        self.engine = wasmtime.Engine(make_config(self.codegen))
        self.wasmtime_version = importlib.metadata.version("wasmtime")
        self.cache = ModuleCache(self.engine, opts["cache_dir"], fingerprint(self.wasmtime_version, self.codegen))
        self._ticker = EpochTicker(self.engine, self.tick_ms) if self.mode == "epoch" else None
        self._closed = False

    @property
    def ticker(self) -> EpochTicker | None:
        """The engine's epoch ticker (epoch mode), else None."""
        return self._ticker

    # -- loading -----------------------------------------------------------------------
    def check(self, code: CodeObject) -> None:
        """Size, magic and what the sections declare, against the node's load limits."""
        from pan_wasm.shape import scan

        self._check_header(code)
        scan(code.payload, self.load_limits, code.short_name)

    def prepare(self, code: CodeObject, deps: Sequence[LoadedCode]) -> LoadJob | None:
        """Compiling, as a job for the node's compiler process; None when a module is cached."""
        if self._closed:
            raise ClosedError("wasm runtime is closed")
        self._check_header(code)
        if self.cache.lookup(code) is not None:
            return None
        return LoadJob(
            "pan_wasm.compile:compile_module",
            code.payload,
            {"engine": self.codegen, "limits": dataclasses.asdict(self.load_limits), "who": code.short_name},
        )

    def adopt(self, code: CodeObject, result: bytes) -> None:
        """Take the artifact the compiler process made (and keep it on disk with the others)."""
        self.cache.adopt(code, result)

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> WasmCode:
        if self._closed:
            raise ClosedError("wasm runtime is closed")
        self._check_header(code)
        module = self.cache.get(code, lambda: self._compile(code))
        try:
            calls = self._check_imports(code, module)
            self._check_exports(code, module)
        except CodeObjectError:
            self.cache.forget(code)  # a refused module must not stay in memory
            raise
        if self._ticker is not None:
            self._ticker.start()
        from pan_wasm.code import WasmCode

        try:
            return WasmCode(self, code, module, calls, host, deps)
        except RuntimeFault as exc:
            self.cache.forget(code)
            raise CodeObjectError(f"{code.short_name}: cannot instantiate: {exc}") from None

    def _check_header(self, code: CodeObject) -> None:
        name = code.short_name
        if code.runtime != self.name:
            raise CodeObjectError(f"{name}: code object is for runtime {code.runtime!r}, not 'wasm'")
        payload = code.payload
        if len(payload) > self.max_module_bytes:
            raise CodeObjectError(
                f"{name}: module is {len(payload)} bytes, more than max_module_bytes={self.max_module_bytes}",
                FaultReason.CODE_TOO_BIG,
            )
        if payload[:8] != WASM_MAGIC:
            what = "truncated" if len(payload) < 8 else f"bad magic {payload[:8]!r}"
            raise CodeObjectError(f"{name}: payload is not a WebAssembly 1.0 module ({what})")

    def _compile(self, code: CodeObject) -> wasmtime.Module:
        """Compile on this thread (``Node.install``), after the same checks the compiler process makes."""
        from pan_wasm.compile import compile_bytes
        from pan_wasm.shape import check_bodies, scan

        shape = scan(code.payload, self.load_limits, code.short_name)
        check_bodies(code.payload, shape, self.load_limits, code.short_name)
        return compile_bytes(self.engine, code.payload, code.short_name)

    def _check_imports(self, code: CodeObject, module: wasmtime.Module) -> list[str]:
        import wasmtime

        from pan_wasm.hostcalls import wasm_signature

        calls = []
        want_module = WASM_MODULE
        for imp in module.imports:
            where = f"{code.short_name}: import {imp.module}.{imp.name}"
            if imp.module != want_module:
                raise CodeObjectError(
                    f"{where} is not from the PNI module {want_module!r}; only PNI calls may be imported"
                )
            call = imp.name or ""
            if call not in _PNI_CALLS:
                raise CodeObjectError(f"{where} is not a call of PNI {PNI_VERSION}")
            ty = imp.type
            if not isinstance(ty, wasmtime.FuncType):
                raise CodeObjectError(f"{where} must be a function")
            params, results = wasm_signature(call)
            got = (tuple(str(t) for t in ty.params), tuple(str(t) for t in ty.results))
            if got != (params, results):
                raise CodeObjectError(f"{where} has type {got}, the PNI says {(params, results)}")
            if call not in calls:  # a call imported twice is linked once
                calls.append(call)
        return calls

    def _check_exports(self, code: CodeObject, module: wasmtime.Module) -> None:
        import wasmtime

        exports = {e.name: e.type for e in module.exports}
        name = code.short_name

        def need_func(export: str, params: tuple[str, ...], results: tuple[str, ...], what: str) -> None:
            ty = exports.get(export)
            if ty is None:
                raise CodeObjectError(f"{name}: module does not export {what} {export!r}")
            got = (
                (tuple(str(t) for t in ty.params), tuple(str(t) for t in ty.results))
                if isinstance(ty, wasmtime.FuncType)
                else None
            )
            if got != (params, results):
                raise CodeObjectError(
                    f"{name}: export {export!r} has type {got}, {what} needs {(params, results)}"
                )

        if not isinstance(exports.get("memory"), wasmtime.MemoryType):
            raise CodeObjectError(f"{name}: module does not export its linear memory as 'memory'")
        entry = code.manifest.entry
        need_func(entry["accept"], ("i32", "i32"), ("i32",), "entry point")
        for kind in ("init", "finalize"):
            if kind in entry:
                need_func(entry[kind], (), ("i32",), "entry point")
        for export in code.manifest.exports:
            need_func(export, ("i64", "i64"), ("i64",), "manifest export")
        if "accept_batch" in exports or "pni_batch_area" in exports:
            need_func("accept_batch", ("i32",), ("i32",), "batch entry")
            need_func("pni_batch_area", (), ("i32",), "batch entry")

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self.cache.clear()
        self._closed = True

    def versions(self) -> dict[str, str]:
        from pan_wasm import fastcall

        return {
            "wasmtime": self.wasmtime_version,
            "fastcall": f"unchecked ctypes path, tested with wasmtime {fastcall.TESTED_VERSION}",
            "budget": self.mode if self.mode == "fuel" else f"epoch ({self.tick_ms:g} ms ticks)",
        }
