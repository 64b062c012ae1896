"""The fast path into and out of Wasmtime; the only module that touches wasmtime-py internals.

wasmtime-py's public API is a setup-time tool: ``Func.__call__`` re-reads the function type,
boxes every value and allocates arrays (~31 µs per capsule with memory copies), and
``Linker.define_func`` callbacks cost ~8 µs. Here everything a call needs is bound once —
the store context, a copy of the ``wasmtime_func_t``, a preallocated
``wasmtime_val_raw_t[]`` and a trap slot — as prebuilt ctypes objects, and
``wasmtime_func_call_unchecked`` is called with them (no per-call argument conversion).
Host functions go through ``wasmtime_linker_define_func_unchecked`` with a raw ctypes
callback that sees the argument array as 64-bit slots.

Everything else in ``pan_wasm`` uses the public wasmtime API. This module relies on
wasmtime-py's ``_ffi.dll`` handle, the ``_func``/``_memory`` fields of ``Func``/``Memory``,
``Store._context()``/``ptr()``, ``Linker.ptr()``, ``FuncType.ptr()`` and ``Trap``/
``WasmtimeError._from_ptr``; ``binding_problem()`` checks they are all there. Tested with
wasmtime-py ``TESTED_VERSION``; the declared range is ``SUPPORTED_RANGE``.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int64, c_size_t, c_uint8, c_uint64, c_void_p
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

__all__ = [
    "TESTED_VERSION",
    "SUPPORTED_RANGE",
    "SLOT",
    "binding_problem",
    "context_address",
    "FastCall",
    "LinearMemory",
    "HostFuncs",
    "HOST_CALLBACK",
    "trap_for",
    "set_fuel",
    "get_fuel",
    "install_deadline_callback",
    "decode_failure",
    "FastEntry",
    "fast_module",
]

TESTED_VERSION = "50.0.1"
SUPPORTED_RANGE = ">=50,<51"

#: a wasmtime_val_raw_t is 16 bytes (it can hold a v128); value i lives at int64 slot i*SLOT
SLOT = ctypes.sizeof(ffi.wasmtime_val_raw_t) // 8

_dll = ffi.dll


def _fresh(name: str, restype: Any, argtypes: Sequence[Any] | None = None) -> Any:
    """A private ctypes function object for ``name`` (``dll[name]`` is never cached, so
    setting types here leaves wasmtime-py's own prototypes alone)."""
    fn = _dll[name]
    fn.restype = restype
    if argtypes is not None:
        fn.argtypes = list(argtypes)
    return fn


#: (void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args_and_results, size_t n)
#: -> wasm_trap_t * (0 for success); the array is seen as int64 slots with stride SLOT
HOST_CALLBACK = CFUNCTYPE(c_size_t, c_void_p, c_void_p, POINTER(c_int64), c_size_t)
#: (context, env, uint64_t *delta, uint8_t *kind) -> wasmtime_error_t * (NULL continues)
_DEADLINE_CALLBACK = CFUNCTYPE(c_void_p, c_void_p, c_void_p, POINTER(c_uint64), POINTER(c_uint8))

# called without argtypes on prebuilt ctypes objects: no conversion work per call
_call_unchecked = _fresh("wasmtime_func_call_unchecked", c_size_t)
_set_fuel = _fresh("wasmtime_context_set_fuel", c_size_t)
_get_fuel = _fresh("wasmtime_context_get_fuel", c_size_t)
_memory_data = _fresh("wasmtime_memory_data", c_void_p, [c_void_p, c_void_p])
_memory_data_size = _fresh("wasmtime_memory_data_size", c_size_t, [c_void_p, c_void_p])
_caller_context = _fresh("wasmtime_caller_context", c_void_p, [c_void_p])
_define_unchecked = _fresh(
    "wasmtime_linker_define_func_unchecked",
    c_void_p,
    [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, HOST_CALLBACK, c_void_p, c_void_p],
)
_trap_new = _fresh("wasmtime_trap_new", c_void_p, [c_char_p, c_size_t])
_error_new = _fresh("wasmtime_error_new", c_void_p, [c_char_p])
_deadline_callback = _fresh(
    "wasmtime_store_epoch_deadline_callback",
    None,
    [c_void_p, _DEADLINE_CALLBACK, c_void_p, c_void_p],
)


class FastEntry(ctypes.Structure):
    """One code object's bound ``accept`` for ``pan_wasm._fast`` (same layout as its
    ``pan_wasm_entry``): the node's UDP fast path calls it without Python."""

    _fields_ = [
        ("context", c_void_p),
        ("func", c_void_p),
        ("args", c_void_p),
        ("nargs", c_size_t),
        ("trap", c_void_p),
        ("fuel", c_uint64),
        ("ticks", c_void_p),
        ("err", c_void_p),
        ("fuel_used", c_uint64),
        ("host_error", c_void_p),  # owned by pan_wasm._fast: read with take_error
    ]

    def bind(self, call: FastCall, ticks: Any, fuel: int) -> None:
        """Point at ``call`` (``accept``), bumping ``ticks.seq`` and refuelling like ``invoke``."""
        base = ctypes.addressof(call._array)
        self.context = call.context
        self.func = ctypes.addressof(call._func)
        self.args = base
        self.nargs = call.trap_slot // SLOT
        self.trap = base + call.trap_slot * 8
        self.fuel = fuel
        self.ticks = id(ticks)  # the code object keeps it alive
        self.err = None


class _ImportEnv(ctypes.Structure):
    """What a C host function of ``pan_wasm._fast`` needs: the Python one, and the memory."""

    _fields_ = [("fallback", c_void_p), ("memory", c_void_p)]


@functools.cache
def fast_module() -> Any:
    """``pan_wasm._fast`` configured with Wasmtime's function addresses, or None when the
    extension is not built (the node then runs wasm code through ``accept``)."""
    try:
        from pan_wasm import _fast
    except ImportError:
        return None

    def addr(name: str) -> int:
        return ctypes.cast(_dll[name], c_void_p).value or 0

    _fast.configure(
        addr("wasmtime_func_call_unchecked"),
        addr("wasmtime_context_set_fuel"),
        addr("wasmtime_context_get_fuel"),
        addr("wasmtime_caller_context"),
        addr("wasmtime_memory_data"),
        addr("wasmtime_memory_data_size"),
    )
    return _fast


def binding_problem() -> str | None:
    """``None`` when the internals this module uses are present, else what is missing."""
    missing = [
        attr
        for obj, attr in (
            (wasmtime.Func, "_from_raw"),
            (wasmtime.Store, "_context"),
            (wasmtime.Trap, "_from_ptr"),
            (wasmtime.WasmtimeError, "_from_ptr"),
            (ffi, "wasmtime_func_t"),
            (ffi, "wasmtime_memory_t"),
            (ffi, "wasm_trap_t"),
            (ffi, "wasmtime_error_t"),
        )
        if not hasattr(obj, attr)
    ]
    if SLOT != 2:
        missing.append(f"wasmtime_val_raw_t of 16 bytes (found {SLOT * 8})")
    if missing:
        return (
            f"wasmtime-py {getattr(wasmtime, '__version__', '?')} lacks internals pan_wasm needs "
            f"({', '.join(missing)}); use wasmtime{SUPPORTED_RANGE}"
        )
    return None


def context_address(store: wasmtime.Store) -> int:
    """The ``wasmtime_context_t *`` of ``store`` as an int."""
    return ctypes.cast(store._context(), c_void_p).value or 0


def _store_address(store: wasmtime.Store) -> int:
    return ctypes.cast(store.ptr(), c_void_p).value or 0


class FastCall:
    """One exported function bound for unchecked calls.

    Write parameters into ``q[i * SLOT]`` (int64) — i32 parameters take their value
    masked to 32 bits by Wasmtime — then ``invoke()``; a truthy return or a non-zero
    ``q[trap_slot]`` means the call failed (see ``decode_failure``). Results are read from
    ``i32[0]`` or ``q[0]``.
    """

    __slots__ = ("_array", "_func", "q", "i32", "trap_slot", "invoke", "context", "name")

    def __init__(
        self, store: wasmtime.Store, func: wasmtime.Func, nparams: int, nresults: int, name: str = ""
    ):
        n = max(nparams, nresults, 1)
        self.name = name
        self.trap_slot = n * SLOT
        self._array = (c_int64 * (n * SLOT + 1))()
        self._func = ffi.wasmtime_func_t.from_buffer_copy(func._func)
        raw = memoryview(self._array).cast("B")
        self.q = raw.cast("q")
        self.i32 = raw.cast("i")
        base = ctypes.addressof(self._array)
        self.context = context_address(store)
        self.invoke: Callable[[], int] = functools.partial(
            _call_unchecked,
            c_void_p(self.context),
            c_void_p(ctypes.addressof(self._func)),
            c_void_p(base),
            c_size_t(n),
            c_void_p(base + self.trap_slot * 8),
        )

    def failure(self, err: int) -> tuple[str, str]:
        """Decode and free the error or trap of a failed call: ``(kind, message)``."""
        trap = self.q[self.trap_slot]
        self.q[self.trap_slot] = 0
        return decode_failure(err, trap)


def decode_failure(err: int, trap: int) -> tuple[str, str]:
    """``(kind, message)`` of a failed call; kind is a ``wasmtime.TrapCode`` name, or
    ``"error"`` for a non-trap error (a host callback's error, a deadline callback stop)."""
    if trap:
        t = wasmtime.Trap._from_ptr(ctypes.cast(trap, POINTER(ffi.wasm_trap_t)))
        code = t.trap_code
        message = t.message
        if err:
            wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(ffi.wasmtime_error_t)))
        return (code.name if code is not None else "TRAP", message)
    e = wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(ffi.wasmtime_error_t)))
    return ("error", str(e))


def trap_for(message: str) -> int:
    """A new ``wasm_trap_t *`` for a host callback to return (Wasmtime takes ownership)."""
    raw = message.encode("utf-8", "replace")
    return _trap_new(raw, len(raw)) or 0


def set_fuel(store: wasmtime.Store) -> Callable[[int], int]:
    """A setter ``f(fuel)`` for the store's fuel, cheaper than ``Store.set_fuel``."""
    ctx = c_void_p(context_address(store))
    return functools.partial(_set_fuel, ctx)


def get_fuel(store: wasmtime.Store) -> Callable[[], int]:
    """A reader ``f()`` of the fuel left in the store (-1 when it cannot be read)."""
    ctx = c_void_p(context_address(store))
    out = c_uint64()
    call = functools.partial(_get_fuel, ctx, ctypes.byref(out))

    def left() -> int:
        return -1 if call() else out.value

    return left


class LinearMemory:
    """The exported memory of an instance as a base address, a size and a memoryview.

    The node runs engines with ``memory_may_move = False``, so the base stays put while the
    instance lives; the size only grows, so ``size`` is a lower bound that ``refresh``
    brings up to date when a range reaches past it.
    """

    __slots__ = ("_mem", "_context", "base", "size", "view", "_array")

    def __init__(self) -> None:
        self._mem = ffi.wasmtime_memory_t()
        self._context = 0
        self._array: Any = None
        self.base = 0
        self.size = 0
        self.view = memoryview(b"")

    def bind(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        """Point at ``memory`` of ``store`` (again after a reset); callbacks keep this object."""
        # copied into the same struct, so C host functions holding its address stay valid
        ctypes.memmove(ctypes.addressof(self._mem), ctypes.addressof(memory._memory), ctypes.sizeof(self._mem))
        self._context = context_address(store)
        self.refresh()

    def refresh(self, caller: int | None = None) -> int:
        """Re-read base and size (through the caller's context inside a host call)."""
        if not self._context:
            return 0
        ctx = _caller_context(caller) if caller else self._context
        addr = ctypes.addressof(self._mem)
        self.base = _memory_data(ctx, addr) or 0
        self.size = _memory_data_size(ctx, addr)
        if self.size:
            self._array = (ctypes.c_ubyte * self.size).from_address(self.base)
            self.view = memoryview(self._array).cast("B")
        return self.size

    def release(self) -> None:
        """Drop the view; call before the store goes away."""
        self.view = memoryview(b"")
        self._array = None
        self._context = 0
        self.size = 0
        self.base = 0


class HostFuncs:
    """Host functions defined on a linker through the unchecked path.

    Keeps the ctypes callbacks alive for as long as the linker (and the stores it
    instantiates) may call them.
    """

    def __init__(self, linker: wasmtime.Linker):
        self._linker = linker
        self._ptr = ctypes.cast(linker.ptr(), c_void_p).value
        self._keep: list[Any] = []

    def define(
        self,
        module: str,
        name: str,
        params: Sequence[wasmtime.ValType],
        results: Sequence[wasmtime.ValType],
        callback: Callable[[int, int, Any, int], int],
    ) -> None:
        """Define ``module.name`` calling ``callback(env, caller, slots, n)``.

        ``slots`` indexes int64 slots of the raw value array (value i at ``i * SLOT``);
        results are written from slot 0; the callback returns 0 or a ``trap_for`` pointer
        and must never raise.
        """
        cb = HOST_CALLBACK(callback)
        ty = self._define(module, name, params, results, cb, None)
        self._keep.append((cb, ty))

    def _define(self, module: str, name: str, params: Sequence[wasmtime.ValType], results: Sequence[wasmtime.ValType], fn: Any, env: int | None) -> Any:
        ty = wasmtime.FuncType(list(params), list(results))
        m, n = module.encode(), name.encode()
        err = _define_unchecked(self._ptr, m, len(m), n, len(n), ctypes.cast(ty.ptr(), c_void_p), fn, env, None)
        if err:
            kind, message = decode_failure(err, 0)
            raise wasmtime.WasmtimeError(f"defining {module}.{name}: {message}")
        return ty

    def define_c(
        self,
        module: str,
        name: str,
        params: Sequence[wasmtime.ValType],
        results: Sequence[wasmtime.ValType],
        address: int,
        callback: Callable[[int, int, Any, int], int],
        memory: LinearMemory,
    ) -> None:
        """Define ``module.name`` as the C host function at ``address`` (``pan_wasm._fast``),
        which calls ``callback`` for whatever it does not answer itself."""
        cb = HOST_CALLBACK(callback)
        env = _ImportEnv(ctypes.cast(cb, c_void_p).value, ctypes.addressof(memory._mem))
        ty = self._define(module, name, params, results, ctypes.cast(address, HOST_CALLBACK), ctypes.addressof(env))
        self._keep.append((cb, ty, env))

    def close(self) -> None:
        self._keep.clear()


def install_deadline_callback(store: wasmtime.Store, on_deadline: Callable[[], int | None]) -> Any:
    """Call ``on_deadline()`` when the store reaches its epoch deadline.

    ``on_deadline`` returns a number of ticks to continue for, or ``None`` to stop the
    running code (the call then fails with kind ``"error"``). Returns the ctypes callback,
    which the caller must keep alive with the store.
    """

    def deadline(_ctx: int, _env: int, delta: Any, kind: Any) -> int | None:
        try:
            ticks = on_deadline()
        except BaseException:  # a callback must never raise into Wasmtime
            ticks = None
        if ticks is None:
            return _error_new(b"pan: execution budget exhausted")
        delta[0] = ticks
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return None

    cb = _DEADLINE_CALLBACK(deadline)
    _deadline_callback(_store_address(store), cb, None, None)
    return cb
