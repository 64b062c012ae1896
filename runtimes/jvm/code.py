"""The jvm runtime's loaded code: one class loader and ``PanCode`` instance per code object,
driven through the runtime's ``Lane``.

Every lane call's result is checked: a fault the lane recorded becomes a ``RuntimeFault``
(``FAULT_REASONS`` maps the lane's fault kinds), and a Java exception that escapes a call
(``jpype.JException``) becomes the call's typed error after ``Lane.recover`` put the lane
back to idle: ``CodeObjectError`` when loading, ``RuntimeFault`` for a run. A stop thrown at
a call's entry, before the code ran (only a stop from outside the lane can be pending there),
is collected and the call made again, so it is charged to no one. Nothing Java reaches the
node.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pan_jvm.checker import CheckedJar
from pan_jvm.hostcalls import upcall_class
from pan_jvm.runtime import BATCH_MAX, BATCH_STRIDE
from pan_runtime.data.segments import Segment, SegType
from pan_runtime.errors import BudgetExceeded, CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.runtime import LoadedCode

if TYPE_CHECKING:
    from pan_jvm.runtime import JvmRuntime
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Environment
    from pan_runtime.node.pni import PniServer

__all__ = ["JvmCode", "FAULT_REASONS", "ENTRY_RETRIES", "java_name", "escaped_load", "stray_entry_stop"]

log = logging.getLogger("pan.jvm")

FAULT = -(2**31)
FAULT_LONG = -(2**63)
#: the lane's fault kinds (``org.pan.jvm.Lane.F_*``)
F_TIME, F_MEMORY, F_OOM, F_STACK, F_EXCEPTION, F_LINK, F_ENTRY, F_INIT, F_VERDICT, F_STALE = range(1, 11)
#: Lane fault kind -> (fault reason, budget fault?, instance may be corrupt?)
FAULT_REASONS: dict[int, tuple[FaultReason, bool, bool]] = {
    F_TIME: (FaultReason.BUDGET, True, True),
    F_MEMORY: (FaultReason.MEMORY, True, True),  # the watchdog's allocation ceiling
    F_OOM: (FaultReason.MEMORY, True, True),  # the JVM's own OutOfMemoryError
    F_STACK: (FaultReason.STACK, False, True),
    F_EXCEPTION: (FaultReason.CODE_ERROR, False, False),
    F_LINK: (FaultReason.LINK, False, True),
    F_ENTRY: (FaultReason.LINK, False, True),  # no usable entry class
    F_INIT: (FaultReason.INIT, False, True),
    F_VERDICT: (FaultReason.BAD_VERDICT, False, False),
    F_STALE: (FaultReason.RUNTIME_ERROR, False, True),  # a stop issued for an earlier call: not the code's
}
_UNKNOWN_FAULT = (FaultReason.CODE_ERROR, False, True)

#: what ``Lane.recover`` found (``Lane.RECOVERED_*``)
RECOVERED_NESTED, RECOVERED_IDLE, RECOVERED_UNSTOPPED, RECOVERED_STOPPED = -1, 0, 1, 2
#: times a call is made again after a stop was thrown at its entry, before the code ran
ENTRY_RETRIES = 3
_THREAD_DEATH = "java.lang.ThreadDeath"


def java_name(exc: BaseException) -> str:
    """``java.lang.ThreadDeath: message`` for a Java exception that reached Python (its
    class name alone when asking Java for the message fails too)."""
    name = type(exc).__name__
    try:
        text = str(exc)  # calls Throwable.toString in the JVM
    except Exception:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def _escaped_fault(code: CodeObject, exc: BaseException, what: str, status: int) -> RuntimeFault:
    """The typed fault for a Java exception that escaped the lane during ``what`` of a run:
    a stop the watchdog issued for this call (``status``, from ``Lane.recover``) is a budget
    fault, an OutOfMemoryError a memory one, anything else the runtime's own error."""
    name = type(exc).__name__
    text = f"{code.short_name}: {what} ended by {java_name(exc)} outside the lane's guard"
    if name == _THREAD_DEATH:
        if status == RECOVERED_STOPPED:
            return BudgetExceeded(f"{text} (stopped by the watchdog)", FaultReason.BUDGET)
        return RuntimeFault(
            f"{text} (a stop the watchdog did not issue for this call)", FaultReason.RUNTIME_ERROR
        )
    if name == "java.lang.OutOfMemoryError":
        return BudgetExceeded(text, FaultReason.MEMORY)
    return RuntimeFault(text, FaultReason.RUNTIME_ERROR)


def escaped_load(code: CodeObject, exc: BaseException, status: int, budget_ns: int) -> CodeObjectError:
    """The ``CodeObjectError`` for a Java exception that escaped the lane while loading."""
    if type(exc).__name__ != _THREAD_DEATH:
        what = f"{java_name(exc)} escaped the lane"
    elif status == RECOVERED_STOPPED:
        what = f"stopped by the watchdog past the load budget of {budget_ns / 1e6:g} ms (the stop reached the host)"
    else:
        what = "interrupted by a watchdog stop not issued for this load (it reached the host)"
    return CodeObjectError(f"{code.short_name}: loading failed: {what}")


def stray_entry_stop(exc: BaseException, status: int) -> bool:
    """Whether ``exc`` is a stop thrown at a call's entry, before the code ran (the lane
    was idle): the call can simply be made again."""
    return status == RECOVERED_IDLE and type(exc).__name__ == _THREAD_DEATH


def _fault(code: CodeObject, kind: int, message: str) -> RuntimeFault:
    reason, budget, _ = FAULT_REASONS.get(kind, _UNKNOWN_FAULT)
    text = f"{code.short_name}: {message}"
    return BudgetExceeded(text, reason) if budget else RuntimeFault(text, reason)


class _JvmEntry(ctypes.Structure):
    """One code object for ``pan_jvm._fast`` (same layout as its ``pan_jvm_entry``)."""

    _fields_ = [
        ("lane", ctypes.c_int32),
        ("code", ctypes.c_int32),
        ("buffer", ctypes.c_int32),
        ("last", ctypes.c_int32),
        ("lo", ctypes.c_void_p),
        ("hi", ctypes.c_void_p),
        ("ctx", ctypes.c_void_p),
        ("host_failed", ctypes.c_int32),
    ]


#: why a fast run failed around the code (``pan_jvm_entry.host_failed`` in ``_fast.c``)
_HOST_FAILURES = {1: "no JNIEnv on this thread", 2: "body outside the lane's buffer", 3: "Lane.fastAccept threw"}
_HOST_JAVA_EXCEPTION = 3


class JvmCode(LoadedCode, FastEntry):
    """One Java code object: its class loader, its PanCode instance, its Java-side PNI."""

    #: the C entry answers env_origin_kind from the fast path's context (PniHot.java)
    fast_any_origin = True

    def __init__(
        self,
        runtime: JvmRuntime,
        code: CodeObject,
        host: PniServer,
        checked: CheckedJar,
        entry_class: str,
        deps: Sequence[JvmCode],
    ):
        super().__init__(code, host)
        self.runtime = runtime
        self.checked = checked
        self.entry_class = entry_class
        self.deps = tuple(deps)
        self.loader: Any = None
        self.id = 0
        self._budget: Any = None
        jvm = runtime._engine()
        self._proxy = upcall_class(jvm.cls("Upcalls"))(host)
        self._lane = runtime.lane
        self._jaccept = self._lane.accept
        self._memory = runtime.memory
        self._export_names: dict[str, Any] = {}
        self._fast_entry = _JvmEntry()
        self._fast_batch = 0  # the C batch entry, once fast_entry found the lane
        self._retries = 0  # calls being made again after a stop at their entry
        import jpype

        self._jexception: type[BaseException] = jpype.JException

    # -- lifecycle -------------------------------------------------------------------
    def instantiate(self) -> None:
        """Define a fresh class loader and PanCode instance (at load and on reset), under the
        runtime's load budget; every failure, a Java exception that escaped the lane included,
        is a ``CodeObjectError``."""
        import jpype

        for attempt in range(ENTRY_RETRIES + 1):
            try:
                self._instantiate(jpype)
                return
            except jpype.JException as exc:
                status = self.runtime.recover_lane()
                self._forget_id()  # the instance the lane was making, or the one it replaced
                if not stray_entry_stop(exc, status) or attempt == ENTRY_RETRIES:
                    raise escaped_load(self.code, exc, status, self.runtime.load_budget[0]) from exc
                log.warning("%s: a stop from outside the lane arrived as loading began; loading again",
                            self.code.short_name)

    def _forget_id(self) -> None:
        """Drop this code object's instance from the lane (and the runtime's table), if any."""
        if self.id:
            try:
                self._lane.drop(self.id)
            except self._jexception as exc:  # the id is forgotten either way
                self.runtime.recover_lane()
                log.error("%s: dropping from the jvm lane: %s", self.code.short_name, java_name(exc))
            self.runtime._loaded.pop(self.id, None)
            self.id = 0

    def _instantiate(self, jpype: Any) -> None:
        jvm = self.runtime._engine()
        names = self.checked.binary_names()
        loader = jvm.cls("CodeLoader")(
            jvm.cls("gate"),
            self.code.name.hex()[:12],
            jpype.JArray(jpype.JString)(list(names)),
            jpype.JArray(jpype.JArray(jpype.JByte))([jpype.JArray(jpype.JByte)(b) for b in names.values()]),
            jpype.JArray(jvm.cls("CodeLoader"))([d.loader for d in self.deps]),
        )
        self._forget_id()
        self.id = self.runtime._new_id()
        r = int(
            self._lane.instantiate(self.id, loader, self.entry_class, self._proxy, *self.runtime.load_budget)
        )
        if r == FAULT:
            kind, msg = int(self._lane.faultKind()), str(self._lane.faultMessage())
            self._lane.drop(self.id)
            reason = FAULT_REASONS.get(kind, _UNKNOWN_FAULT)[0]
            if kind in (F_LINK, F_ENTRY):
                raise CodeObjectError(f"{self.code.short_name}: {msg}")
            raise CodeObjectError(f"{self.code.short_name}: loading failed ({reason}): {msg}")
        self.loader = loader
        self._budget = None
        self.runtime._loaded[self.id] = self
        self.needs_reset = False

    def _budget_values(self, budget: Any) -> tuple[int, int]:
        return int(budget.time_ms * 1_000_000), int(budget.memory_bytes)

    def _raise(self, kind: int, message: str) -> RuntimeFault:
        if FAULT_REASONS.get(kind, _UNKNOWN_FAULT)[2]:
            self.needs_reset = True
        return _fault(self.code, kind, message)

    def _fault_now(self) -> RuntimeFault:
        lane = self._lane
        return self._raise(int(lane.faultKind()), str(lane.faultMessage()))

    def _escaped(self, exc: BaseException, what: str, retry: bool = True) -> RuntimeFault | None:
        """A Java exception escaped the lane during ``what``: recover the lane and fault the
        run, or return None when it was a stop thrown at the call's entry before the code ran
        (``retry``: the caller makes the call again, through ``_again``)."""
        status = self.runtime.recover_lane()
        if retry and stray_entry_stop(exc, status) and self._retries < ENTRY_RETRIES:
            log.warning("%s: a stop from outside the lane arrived as %s began; calling again",
                        self.code.short_name, what)
            return None
        self.needs_reset = True
        return _escaped_fault(self.code, exc, what, status)

    def _again(self, call: Callable[..., Any], *args: Any) -> Any:
        """Make a call again after a stop at its entry (at most ``ENTRY_RETRIES`` deep)."""
        self._retries += 1
        try:
            return call(*args)
        finally:
            self._retries -= 1

    def _entry(self, what: str, call: Callable[[int], Any]) -> int:
        """``call(id)`` into the lane (an entry point of the code): its result, or the code's
        fault, or the fault of a Java exception that escaped the lane, raised."""
        try:
            r = int(call(self.id))
            if r != FAULT:
                return r
            fault = self._fault_now()
        except self._jexception as exc:
            escaped = self._escaped(exc, what)
            if escaped is None:
                return int(self._again(self._entry, what, call))
            fault = escaped
        raise fault

    def init(self) -> int:
        return self._entry("init", self._lane.init)

    def finalize(self) -> int:
        return self._entry("finalize", self._lane.finish)

    def reset(self) -> None:
        """A fresh class loader (static state dropped) and instance; ``init`` runs again."""
        self.instantiate()
        self.init()

    def unload(self) -> None:
        self._forget_id()
        self.loader = None

    # -- capsules --------------------------------------------------------------------
    def accept(self, env: Environment) -> int:
        try:
            if env.budget is not self._budget:
                self._set_budget(env.budget)
            body = env.body
            addr = body.address  # type: ignore[union-attr]
            mem = self._memory
            lo = mem.lo  # type: ignore[union-attr]
            if addr is not None and lo <= addr < mem.hi:  # type: ignore[union-attr]
                r = self._jaccept(self.id, mem.id, addr - lo, env.length)  # type: ignore[union-attr]
            else:
                bid, off = mem.find(body)  # type: ignore[union-attr,arg-type]
                r = self._jaccept(self.id, bid, off, env.length)
            if r != FAULT:
                return r
            fault = self._fault_now()
        except self._jexception as exc:
            escaped = self._escaped(exc, "accept")
            if escaped is None:
                return int(self._again(self.accept, env))
            fault = escaped
        raise fault

    def fast_entry(self) -> tuple[int, int] | None:
        try:
            return self._fast_entry_now()
        except self._jexception as exc:
            fault = self._escaped(exc, "setting up the fast entry")
            if fault is None:
                return self._again(self.fast_entry)  # type: ignore[no-any-return]
            raise fault from exc

    def _fast_entry_now(self) -> tuple[int, int] | None:
        fast = self.runtime.fast_run()
        node = getattr(self.host, "node", None)
        pool = getattr(node, "pool", None)
        mem = self._memory
        if fast is None or pool is None or mem is None or not self.id:
            return None
        run, lane, ctx, self._fast_batch = fast
        probe = Segment(pool.slot_view(0)[:1], SegType.OWNED, address=pool.base_address)
        buf, _ = mem.find(probe)  # registers the pool's mapping with the lane once
        if not buf:
            return None
        budget = node.config.budget
        if budget is not self._budget:
            self._set_budget(budget)  # what the node's own path would apply first
        e = self._fast_entry
        e.lane, e.code, e.buffer, e.last = lane, self.id, buf, 0
        e.lo, e.hi, e.ctx = mem.lo, mem.hi, ctypes.addressof(ctx)
        return run, ctypes.addressof(e)

    def fast_batch_entry(self) -> int | None:
        return self._fast_batch or None

    def after_fast_run(self) -> None:
        e = self._fast_entry
        failed, e.host_failed = e.host_failed, 0
        if e.last == FAULT:
            e.last = 0
            if failed:  # the code did not fault: the lane's fault message is about an earlier run
                if failed == _HOST_JAVA_EXCEPTION:
                    self.runtime.recover_lane()
                    self.needs_reset = True
                raise RuntimeFault(
                    f"{self.code.short_name}: fast run failed in the host ({_HOST_FAILURES[failed]})",
                    FaultReason.RUNTIME_ERROR,
                )
            try:
                fault = self._fault_now()
            except self._jexception as exc:
                fault = self._escaped(exc, "reading the fault of a fast run", retry=False)  # type: ignore[assignment]
            raise fault

    def _set_budget(self, budget: Any) -> None:
        self._lane.setBudget(self.id, *self._budget_values(budget))
        self._budget = budget

    def accept_batch(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        """Every capsule's verdict or fault; a Java exception escaping the lane faults its chunk."""
        out: list[int | RuntimeFault] = []
        if not envs:
            return out
        for start in range(0, len(envs), BATCH_MAX):
            chunk = envs[start : start + BATCH_MAX]
            try:
                out.extend(self._accept_chunk(chunk))
            except self._jexception as exc:  # capsules may have run: never made again
                out.extend([self._escaped(exc, "a batch", retry=False)] * len(chunk))  # type: ignore[list-item]
            finally:
                self._proxy.envs = ()
        return out

    def _accept_chunk(self, chunk: Sequence[Environment]) -> list[int | RuntimeFault]:
        if chunk[0].budget is not self._budget:
            self._set_budget(chunk[0].budget)
        arr = self.runtime._batch
        assert arr is not None
        mem = self._memory
        assert mem is not None
        lane = self._lane
        proxy = self._proxy
        for i, env in enumerate(chunk):
            body = env.body
            addr = body.address  # type: ignore[union-attr]
            if addr is not None and mem.lo <= addr < mem.hi:
                bid, off = mem.id, addr - mem.lo
            else:
                bid, off = mem.find(body)  # type: ignore[arg-type]
            at = i * BATCH_STRIDE
            arr[at] = bid
            arr[at + 1] = off
            arr[at + 2] = env.length
        proxy.envs = chunk
        if not lane.acceptBatch(self.id, len(chunk)):
            return list(arr[3 : len(chunk) * BATCH_STRIDE : BATCH_STRIDE])
        out: list[int | RuntimeFault] = []
        for i in range(len(chunk)):
            r = arr[i * BATCH_STRIDE + 3]
            if r == FAULT:
                out.append(self._raise(int(lane.batchFaultKind(i)), str(lane.batchFaultMessage(i))))
            else:
                out.append(r)
        return out

    def call_export(self, name: str, a0: int, a1: int) -> int:
        if name not in self.code.manifest.exports:
            raise RuntimeFault(f"{self.code.short_name}: no export {name!r}", FaultReason.NO_EXPORT)
        try:
            jname = self._export_names.get(name)
            if jname is None:
                import jpype

                jname = self._export_names[name] = jpype.JString(name)
            r = int(self._lane.export(self.id, jname, a0, a1))
            if r != FAULT_LONG:
                return r
            fault = self._fault_now()
        except self._jexception as exc:
            escaped = self._escaped(exc, f"export {name}")
            if escaped is None:
                return int(self._again(self.call_export, name, a0, a1))
            fault = escaped
        raise fault
