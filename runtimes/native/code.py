"""A native code object linked into this process: its image, its support image, its callbacks.

Undefined symbols of the code object bind, in this order, to

1. ``pni_<call>`` for the hot segment calls: the support object's C implementation;
2. ``pni_<call>`` for any other call in the PNI spec: a ctypes callback into ``host.<call>``;
3. a name a dependency lists in its manifest ``exports`` (dependencies in manifest order;
   a native dependency's symbol directly, functions or data; any other runtime's export
   through a callback into its ``call_export``);
4. the compiler helpers ``memcpy``, ``memset``, ``memmove``, ``memcmp`` from libc;

and nothing else. ``accept`` is entered through the support object's ``pan_run`` (one
ctypes call per capsule, the body pointer and length as arguments) or ``pan_run_batch``
(one call per batch).
"""

from __future__ import annotations

import array
import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pan_native.elfobject import STT_FUNC, STT_NOTYPE, ElfObject, parse_object
from pan_native.hostcalls import CALLS, make_callback
from pan_native.image import Image, Resolved, libc_helper, link
from pan_native.support import HOT_CALLS, support_object
from pan_runtime.errors import ClosedError, CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.runtime import LoadedCode
from pan_runtime.pni_api import BAD_ARGUMENT, NOT_FOUND

if TYPE_CHECKING:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Environment

__all__ = ["NativeCode"]

_BAD_ARGUMENT = BAD_ARGUMENT
_NOT_FOUND = NOT_FOUND
_RUN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)  # two c_void_p: fastest ctypes path
_RUN_BATCH = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32)
_EXPORT = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
_BATCH = 64


def _closed(*_args: object) -> int:
    raise ClosedError("native code object was unloaded")


class NativeCode(LoadedCode, FastEntry):
    """One native code object, linked with its own support image; see the module docstring."""

    #: the C entry answers env_origin_kind from the fast path's context (pni_hot)
    fast_any_origin = True

    def __init__(self, code: CodeObject, host: Any, deps: Sequence[LoadedCode] = ()):
        super().__init__(code, host)
        self._object: ElfObject = parse_object(code.payload)
        self._used = {s.name[4:] for s in self._object.undefined() if s.name.startswith("pni_")}
        self._deps = tuple(deps)
        self._batch: Sequence[Environment] | None = None
        self._faults: list[tuple[int, BaseException, str]] = []
        self._image: Image | None = None
        self._support: Image | None = None
        self._exports: dict[str, Any] = {}
        self._link()

    # -- linking -------------------------------------------------------------------------
    def _callback(self, call_name: str) -> Resolved:
        try:
            cb = make_callback(call_name, self.host, self)
        except AttributeError:
            raise CodeObjectError(f"the node's PNI host does not implement '{call_name}'") from None
        return Resolved(ctypes.cast(cb, ctypes.c_void_p).value or 0, True, cb)

    def _resolve_support(self, name: str) -> Resolved | None:
        if name.startswith("pan_host_") and name[9:] in HOT_CALLS:
            if name[9:] not in self._used:  # unreachable: the code never calls pni_<call>
                return Resolved(0, True)
            return self._callback(name[9:])
        return libc_helper(name)

    def _resolve_code(self, name: str) -> Resolved | None:
        assert self._support is not None
        if name.startswith("pni_") and name[4:] in CALLS:
            call = name[4:]
            if call in HOT_CALLS:
                return Resolved(self._support.address(name) or 0, True)
            return self._callback(call)
        for dep in self._deps:
            if name in dep.code.manifest.exports:
                return self._dep_symbol(dep, name)
        return libc_helper(name)

    def _dep_symbol(self, dep: LoadedCode, name: str) -> Resolved:
        if isinstance(dep, NativeCode) and dep._image is not None:
            sym = dep._image.symbol(name)
            addr = dep._image.address(name)
            if sym is not None and addr is not None:
                return Resolved(addr, sym.type in (STT_FUNC, STT_NOTYPE))
        call_export = dep.call_export

        def export(a0: int, a1: int) -> int:
            try:
                return call_export(name, a0, a1)
            except BaseException as exc:
                self._fault(exc, f"export {name} of {dep.code.short_name}")
                return _NOT_FOUND

        cb = _EXPORT(export)
        return Resolved(ctypes.cast(cb, ctypes.c_void_p).value or 0, True, cb)

    def _link(self) -> None:
        manifest = self.code.manifest
        support = link(support_object(), self._resolve_support)
        self._support = support
        try:
            image = link(self._object, self._resolve_code)
        except BaseException:
            support.close()
            self._support = None
            raise
        self._image = image
        try:
            entries: dict[str, int] = {}
            for kind, symbol in manifest.entry.items():
                entries[kind] = self._function(symbol, f"entry point '{kind}'")
            for name in manifest.exports:
                sym = image.symbol(name)
                if sym is None:
                    raise CodeObjectError(f"native object: export '{name}' is not a global symbol of the object")
                if sym.type in (STT_FUNC, STT_NOTYPE):  # data exports serve native dependants only
                    self._exports[name] = _EXPORT(self._function(name, "export"))
        except BaseException:
            self._close_images()
            raise
        ctypes.c_void_p.from_address(support.address("pan_accept_fn") or 0).value = entries["accept"]
        self._batch_index = ctypes.c_int32.from_address(support.address("pan_batch_index") or 0)
        self._run = _RUN(support.address("pan_run"))
        self._fast_entry = support.address("pan_run_fast") or None
        self._fast_batch = support.address("pan_run_fast_batch") or None
        self._run_batch = _RUN_BATCH(support.address("pan_run_batch"))
        self._init = _ENTRY(entries["init"]) if "init" in entries else None
        self._finalize = _ENTRY(entries["finalize"]) if "finalize" in entries else None
        self._cap = 0
        self._grow(_BATCH)

    def _function(self, symbol: str, what: str) -> int:
        assert self._image is not None
        sym = self._image.symbol(symbol)
        addr = self._image.address(symbol)
        if sym is None or addr is None or sym.type not in (STT_FUNC, STT_NOTYPE):
            raise CodeObjectError(
                f"native object: {what} names '{symbol}', which the object does not define as a global function"
            )
        return addr

    def _grow(self, n: int) -> None:
        self._cap = n
        self._bodies = array.array("Q", bytes(8 * n))
        self._lengths = array.array("I", bytes(4 * n))
        self._out = array.array("i", bytes(4 * n))
        self._bodies_at = self._bodies.buffer_info()[0]
        self._lengths_at = self._lengths.buffer_info()[0]
        self._out_at = self._out.buffer_info()[0]

    # -- faults --------------------------------------------------------------------------
    def _fault(self, exc: BaseException, call: str) -> int:
        index = self._batch_index.value if self._batch is not None else -1
        self._faults.append((index, exc, call))
        return _BAD_ARGUMENT

    def _raise_fault(self) -> None:
        _, exc, call = self._faults[0]
        self._faults.clear()
        if not isinstance(exc, Exception):
            raise exc
        raise self._as_fault(exc, call) from exc

    def _as_fault(self, exc: BaseException, call: str) -> RuntimeFault:
        if isinstance(exc, RuntimeFault):
            return exc
        return RuntimeFault(f"{self.code.short_name}: host call {call} raised {exc!r}", FaultReason.HOST_ERROR)

    # -- LoadedCode ----------------------------------------------------------------------
    def init(self) -> int:
        if self._init is None:
            return 0
        result = self._init()
        if self._faults:
            self._raise_fault()
        return result

    def accept(self, env: Environment) -> int:
        self.host.current = env
        verdict = self._run(env.body.address, env.length)
        if self._faults:
            self._raise_fault()
        return verdict

    def fast_entry(self) -> tuple[int, int] | None:
        return (self._fast_entry, 0) if self._fast_entry else None

    def fast_batch_entry(self) -> int | None:
        return self._fast_batch if self._fast_entry else None

    def after_fast_run(self) -> None:
        if self._faults:
            self._raise_fault()

    def accept_batch(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        n = len(envs)
        if n == 0:
            return []
        if n > self._cap:
            self._grow(max(n, 2 * self._cap))
        bodies, lengths = self._bodies, self._lengths
        i = 0
        for env in envs:
            bodies[i] = env.body.address or 0
            lengths[i] = env.length
            i += 1
        self.host.current = envs[0]
        self._batch = envs
        try:
            self._run_batch(n, self._bodies_at, self._lengths_at, self._out_at)
        finally:
            self._batch = None
            self.host.current = envs[-1]
        out: list[int | RuntimeFault] = self._out[:n].tolist()
        if self._faults:
            faults, self._faults = self._faults, []
            for index, exc, call in faults:
                if not isinstance(exc, Exception):
                    raise exc
                if 0 <= index < n and not isinstance(out[index], RuntimeFault):
                    out[index] = self._as_fault(exc, call)
        return out

    def call_export(self, name: str, a0: int, a1: int) -> int:
        fn = self._exports.get(name)
        if fn is None:
            return super().call_export(name, a0, a1)
        result = fn(a0, a1)
        if self._faults:
            self._raise_fault()
        return result

    def finalize(self) -> int:
        if self._finalize is None:
            return 0
        result = self._finalize()
        if self._faults:
            self._raise_fault()
        return result

    def reset(self) -> None:
        """Link the object again: fresh data and bss, as if just loaded (``init`` not rerun)."""
        self._close_images()
        self._exports = {}
        self._link()
        self.needs_reset = False

    def _close_images(self) -> None:
        for image in (self._image, self._support):
            if image is not None:
                image.close()
        self._image = self._support = None

    def unload(self) -> None:
        self._run = self._run_batch = self._init = self._finalize = _closed  # type: ignore[assignment]
        self._fast_entry = self._fast_batch = None
        self._exports = {}
        self._close_images()

    @property
    def image(self) -> Image:
        """The code object's own image (for tests and diagnostics)."""
        if self._image is None:
            raise ClosedError("native code object was unloaded")
        return self._image
