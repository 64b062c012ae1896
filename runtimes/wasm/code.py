"""The wasm runtime's loaded code: one Wasmtime store and instance per code object.

``WasmCode`` links the module's PNI imports to the host (``hostcalls``), runs ``accept``
through ``fastcall`` (one unchecked call; the body is read through ``seg_read``, never
copied), a batch through the module's ``accept_batch``/``pni_batch_area`` pair, and maps
every trap, budget stop and host failure to a ``RuntimeFault`` with its ``FaultReason``.
"""

from __future__ import annotations

import array
import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import BudgetExceeded, ClosedError, CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.runtime import LoadedCode
from pan_runtime.pni_api import WASM_MODULE

if TYPE_CHECKING:
    import wasmtime

    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Budget, Environment
    from pan_runtime.node.pni import PniServer
    from pan_wasm.runtime import WasmRuntime

__all__ = ["WasmCode", "BATCH_HEADER_WORDS", "BATCH_SLOT_WORDS"]

#: batch area in linear memory: u32 cursor, u32 capacity, then capacity x {u32 capsule, u32 length, i32 verdict}
BATCH_HEADER_WORDS = 2
BATCH_SLOT_WORDS = 3
MAX_BATCH = 4096
#: Wasmtime trap code -> fault reason (any other trap: ``FaultReason.TRAP``)
_TRAP_REASONS = {
    "STACK_OVERFLOW": FaultReason.STACK,
    "MEMORY_OUT_OF_BOUNDS": FaultReason.OOB,
    "TABLE_OUT_OF_BOUNDS": FaultReason.OOB,
    "HEAP_MISALIGNED": FaultReason.OOB,
}
_BUDGET_TRAPS = {"INTERRUPT", "OUT_OF_FUEL"}


def _summary(message: str) -> str:
    """The causes of a Wasmtime trap message on one line, without the backtrace."""
    lines = [line.strip() for line in message.strip().splitlines()]
    if "Caused by:" in lines:
        causes = lines[lines.index("Caused by:") + 1 :]
        return "; ".join(c.split(":", 1)[1].strip() if c[:1].isdigit() else c for c in causes if c)
    return lines[0] if lines else "no message"


def _i64(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >> 63 else value



class _ClosedCall:
    """Stands in for a FastCall after unload, so the hot path needs no closed check."""

    name = "closed"
    trap_slot = 0

    def __init__(self, what: str):
        self.q = memoryview(bytearray(64)).cast("q")
        self.i32 = memoryview(bytearray(16)).cast("i")
        self._what = what

    def invoke(self) -> int:
        raise ClosedError(f"{self._what} was unloaded")


class WasmCode(LoadedCode, FastEntry):
    """One wasm code object: a linker with its PNI imports, a store and an instance."""

    #: the C entry answers env_origin_kind from the fast path's context (pni_hot)
    fast_any_origin = True

    def __init__(
        self,
        runtime: WasmRuntime,
        code: CodeObject,
        module: wasmtime.Module,
        calls: Sequence[str],
        host: PniServer,
        deps: Sequence[LoadedCode],
    ):
        super().__init__(code, host)
        import wasmtime

        from pan_runtime.node.env import Budget
        from pan_wasm import fastcall
        from pan_wasm.hostcalls import make_callback, wasm_signature
        from pan_wasm.limits import TickBudget

        self._fc = fastcall
        self._rt = runtime
        self._module = module
        self.deps = tuple(deps)
        entry = code.manifest.entry
        self._entry_names = (entry["accept"], entry.get("init"), entry.get("finalize"))
        self.mem = fastcall.LinearMemory()
        #: environments of the batch being run (host callbacks follow its cursor), else None
        self.batch_envs: Sequence[Environment] | None = None
        self._batch_cursor = 0
        self._host_error: tuple[str, BaseException] | None = None
        self._ticks = TickBudget(ticker=runtime.ticker)
        self._fuel_mode = runtime.mode == "fuel"
        self._fuel = 0
        self._budget: Budget | None = None
        self._memory_limit = runtime.max_memory_bytes
        self._store: wasmtime.Store | None = None
        self._keep: list[Any] = []
        self._linker = wasmtime.Linker(runtime.engine)
        self._funcs = fastcall.HostFuncs(self._linker)
        types = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}

        fast = fastcall.fast_module()
        self._fast_run, c_imports, self._fast_batch_run = fast.addresses() if fast is not None else (0, {}, 0)
        #: the bound accept the node's UDP fast path calls (None without pan_wasm._fast)
        self._fast: fastcall.FastEntry | None = fastcall.FastEntry() if fast is not None else None
        for call in calls:
            method = getattr(host, call, None)
            if method is None:
                raise CodeObjectError(
                    f"{code.short_name}: the host does not implement PNI call {call!r}"
                )
            params, results = wasm_signature(call)
            cb = make_callback(call, method, self.mem, self)
            ptypes, rtypes = [types[t] for t in params], [types[t] for t in results]
            if call in c_imports:  # answered in C during a fast run, else by ``cb``
                self._funcs.define_c(WASM_MODULE, call, ptypes, rtypes, c_imports[call], cb, self.mem)
            else:
                self._funcs.define(WASM_MODULE, call, ptypes, rtypes, cb)
        self._apply_budget(Budget())
        self._instantiate()

    # -- instance ----------------------------------------------------------------------
    def _instantiate(self) -> None:
        import wasmtime

        fc, rt = self._fc, self._rt
        store = wasmtime.Store(rt.engine)
        self._set_limits(store)
        keep: list[Any] = []
        if self._fuel_mode:
            self._refuel = fc.set_fuel(store)
            self._fuel_left = fc.get_fuel(store)
            self._refuel(self._fuel)
        else:
            store.set_epoch_deadline(1)
            keep.append(fc.install_deadline_callback(store, self._ticks.on_deadline))
            self._ticks.seq += 1
            if rt.ticker is not None:  # the new store's deadline is ahead: the ticker must move
                rt.ticker.wake()
        try:
            instance = self._linker.instantiate(store, self._module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            store.close()
            stopped, self._ticks.stopped = self._ticks.stopped, False
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if stopped:
                raise BudgetExceeded(f"{self.code.short_name}: start function exceeded its budget") from None
            raise RuntimeFault(
                f"{self.code.short_name}: instantiation failed: {detail}", FaultReason.INIT
            ) from None
        exports = instance.exports(store)
        self._store = store
        self._keep = keep
        self.mem.bind(store, exports["memory"])
        accept, init, finalize = self._entry_names
        self._accept = fc.FastCall(store, exports[accept], 2, 1, "accept")
        self._init = fc.FastCall(store, exports[init], 0, 1, "init") if init else None
        self._finalize = fc.FastCall(store, exports[finalize], 0, 1, "finalize") if finalize else None
        self._exports: dict[str, Any] = {}
        self._instance_exports = exports
        self._batch = None
        self._area: memoryview | None = None
        if "accept_batch" in exports:
            self._bind_batch(exports)
        if self._fast is not None:
            self._fast.bind(self._accept, self._ticks, self._fuel if self._fuel_mode else 0)

    def _bind_batch(self, exports: Any) -> None:
        fc = self._fc
        where = fc.FastCall(self._store, exports["pni_batch_area"], 0, 1, "pni_batch_area")
        self._run(where)
        base = where.i32[0] & 0xFFFFFFFF
        if base + 8 > self.mem.size:
            return
        cap = int.from_bytes(self.mem.view[base + 4 : base + 8], "little")
        cap = min(cap, MAX_BATCH)
        end = base + 4 * (BATCH_HEADER_WORDS + BATCH_SLOT_WORDS * cap)
        if cap < 2 or end > self.mem.size or base % 4:
            return
        self._area = self.mem.view[base:end].cast("i")
        self._batch_cap = cap
        self._batch = fc.FastCall(self._store, exports["accept_batch"], 1, 1, "accept_batch")

    def _close_instance(self) -> None:
        self.mem.release()
        self._area = None
        self._batch = None
        self._instance_exports = None
        self._exports = {}
        if self._store is not None:
            self._store.close()
            self._store = None
        self._keep = []

    # -- budgets -----------------------------------------------------------------------
    def _apply_budget(self, budget: Budget) -> None:
        from pan_wasm.limits import TickBudget

        self._budget = budget
        self._ticks.limit = TickBudget.ticks_for(budget.time_ms, self._rt.tick_ms)
        self._fuel = max(1, int(budget.fuel))
        if self._fast is not None and self._fuel_mode:
            self._fast.fuel = self._fuel
        limit = min(int(budget.memory_bytes), self._rt.max_memory_bytes)
        if limit != self._memory_limit:
            self._memory_limit = limit
            if self._store is not None:
                self._set_limits(self._store)

    def _set_limits(self, store: wasmtime.Store) -> None:
        # each call replaces the whole limiter, so every limit is passed every time
        store.set_limits(
            memory_size=self._memory_limit,
            table_elements=self._rt.max_table_elements,
            instances=1,
            tables=4,
            memories=1,
        )

    # -- calls -------------------------------------------------------------------------
    def accept(self, env: Environment) -> int:
        if env.budget is not self._budget:
            self._apply_budget(env.budget)
        c = self._accept
        q = c.q
        q[0] = 1  # Environment.BODY_HANDLE
        q[2] = env.length
        self._ticks.seq += 1
        if self._fuel_mode:
            self._refuel(self._fuel)
            err = c.invoke()
            left = self._fuel_left()
            if 0 <= left <= self._fuel:
                env.usage.fuel = self._fuel - left
        else:
            err = c.invoke()
        if err or q[c.trap_slot]:
            self._raise_fault(c, err)
        return c.i32[0]

    def fast_entry(self) -> tuple[int, int] | None:
        if self._fast is None or self._store is None:
            return None
        node = getattr(self.host, "node", None)
        budget = getattr(getattr(node, "config", None), "budget", None)
        if budget is not None and budget is not self._budget:
            self._apply_budget(budget)  # what the node's own path would apply first
        return self._fast_run, ctypes.addressof(self._fast)

    def fast_batch_entry(self) -> int | None:
        return self._fast_batch_run if self._fast is not None and self._store is not None else None

    def take_fast_usage(self) -> tuple[int, int]:
        fast = self._fast
        if fast is None or not fast.fuel_used:
            return 0, 0
        used, fast.fuel_used = fast.fuel_used, 0
        return 0, used

    def after_fast_run(self) -> None:
        fast = self._fast
        if fast is not None and fast.host_error:
            from pan_wasm import fastcall

            error = fastcall.fast_module().take_error(ctypes.addressof(fast))
            if error is not None:  # the host's bookkeeping failed before the code ran: not its fault
                raise error
        if fast is not None and (fast.err or self._accept.q[self._accept.trap_slot]):
            err, fast.err = fast.err or 0, None
            self._raise_fault(self._accept, err)

    def _run(self, c: Any) -> None:
        """Call a bound entry (not the hot path); raises on a fault. Results stay in ``c``."""
        self._ticks.seq += 1
        if self._fuel_mode:
            self._refuel(self._fuel)
        err = c.invoke()
        if err or c.q[c.trap_slot]:
            self._raise_fault(c, err)

    def _raise_fault(self, c: Any, err: int) -> None:
        kind, message = c.failure(err)
        self.needs_reset = True
        stopped, self._ticks.stopped = self._ticks.stopped, False
        host_error, self._host_error = self._host_error, None
        where = f"{self.code.short_name}: {c.name}"
        if host_error is not None:
            call, exc = host_error
            raise RuntimeFault(f"{where}: host call {call} raised {exc!r}", FaultReason.HOST_ERROR) from exc
        if stopped or kind in _BUDGET_TRAPS:
            spent = (
                f"{self._fuel} fuel"
                if self._fuel_mode
                else f"{self._budget.time_ms if self._budget else '?'} ms"
            )
            raise BudgetExceeded(f"{where} exceeded its budget of {spent}", FaultReason.BUDGET)
        raise RuntimeFault(
            f"{where} trapped ({kind.lower()}): {_summary(message)}", _TRAP_REASONS.get(kind, FaultReason.TRAP)
        )

    def host_failed(self, call: str, exc: BaseException) -> int:
        """A host method raised inside a callback: remember it and trap the code."""
        self._host_error = (call, exc)
        return self._fc.trap_for(f"pan: host call {call} failed")

    def sync_batch(self) -> None:
        """Inside a batch, make ``host.current`` the capsule the module's loop is on."""
        area, envs = self._area, self.batch_envs
        if area is None or envs is None:
            return
        cur = area[0]
        if cur != self._batch_cursor and 0 <= cur < len(envs):
            self._batch_cursor = cur
            self.host.current = envs[cur]

    def init(self) -> int:
        if self._init is None:
            return 0
        self._run(self._init)
        return self._init.i32[0]

    def finalize(self) -> int:
        if self._finalize is None or self._store is None:
            return 0
        self._run(self._finalize)
        return self._finalize.i32[0]

    def call_export(self, name: str, a0: int, a1: int) -> int:
        c = self._exports.get(name)
        if c is None:
            if name not in self.code.manifest.exports or self._instance_exports is None:
                raise RuntimeFault(f"{self.code.short_name}: no export {name!r}", FaultReason.NO_EXPORT)
            c = self._exports[name] = self._fc.FastCall(self._store, self._instance_exports[name], 2, 1, name)
        c.q[0] = _i64(a0)
        c.q[2] = _i64(a1)
        self._run(c)
        return c.q[0]

    # -- batches -----------------------------------------------------------------------
    def accept_batch(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        if self._batch is None or len(envs) < 2:
            return self._accept_each(envs)
        out: list[int | RuntimeFault] = []
        cap = self._batch_cap
        for start in range(0, len(envs), cap):
            out.extend(self._accept_chunk(envs[start : start + cap]))
        return out

    def _accept_each(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        host = self.host
        out: list[int | RuntimeFault] = []
        for env in envs:
            if self.needs_reset:
                try:
                    self.reset()
                except RuntimeFault as fault:
                    out.append(fault)
                    continue
            host.current = env
            try:
                out.append(self.accept(env))
            except RuntimeFault as fault:
                out.append(fault)
        return out

    def _accept_chunk(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        if self.needs_reset:
            try:
                self.reset()
            except RuntimeFault as fault:
                return [fault] * len(envs)
        if self._batch is None or len(envs) < 2:
            return self._accept_each(envs)
        area, b = self._area, self._batch
        assert area is not None
        k = len(envs)
        first = envs[0]
        if first.budget is not self._budget:
            self._apply_budget(first.budget)
        end = BATCH_HEADER_WORDS + BATCH_SLOT_WORDS * k
        area[0] = 0
        area[BATCH_HEADER_WORDS:end:BATCH_SLOT_WORDS] = array.array("i", [1]) * k
        area[BATCH_HEADER_WORDS + 1 : end : BATCH_SLOT_WORDS] = array.array("i", [e.length for e in envs])
        self.batch_envs = envs
        self._batch_cursor = 0
        self.host.current = first
        ticks = self._ticks
        per_call = ticks.limit
        ticks.limit = per_call * k
        ticks.seq += 1
        if self._fuel_mode:
            self._refuel(self._fuel * k)
        b.q[0] = k
        try:
            err = b.invoke()
            failed = err or b.q[b.trap_slot]
        finally:
            self.batch_envs = None
            ticks.limit = per_call
        if not failed:
            return area[BATCH_HEADER_WORDS + 2 : end : BATCH_SLOT_WORDS].tolist()
        cur = min(max(area[0], 0), k - 1)
        out: list[int | RuntimeFault] = area[
            BATCH_HEADER_WORDS + 2 : BATCH_HEADER_WORDS + 2 + BATCH_SLOT_WORDS * cur : BATCH_SLOT_WORDS
        ].tolist()
        try:
            self._raise_fault(b, err)
        except RuntimeFault as fault:
            out.append(fault)
        if cur + 1 < k:
            out.extend(self._accept_chunk(envs[cur + 1 :]))
        return out

    # -- lifecycle ---------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh instance (new store, memory and globals); ``init`` runs again if defined."""
        self._close_instance()
        self._instantiate()
        self.needs_reset = False
        if self._init is not None:
            result = self.init()
            if result < 0:
                raise RuntimeFault(f"{self.code.short_name}: init refused after reset ({result})", FaultReason.INIT)

    def unload(self) -> None:
        self._close_instance()
        closed = _ClosedCall(self.code.short_name)
        self._accept = closed
        self._init = self._finalize = None
        self._funcs.close()
        self._rt.cache.forget(self.code)

    @property
    def memory_size(self) -> int:
        """Current size of the instance's linear memory in bytes."""
        return self.mem.refresh()
