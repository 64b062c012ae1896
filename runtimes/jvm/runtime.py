"""The ``jvm`` runtime: Java code objects, one class loader each, in the process's one JVM.

A code object's payload is a jar; ``meta["entry_class"]`` names (binary name, e.g.
``com.example.Forward``) the class implementing ``org.pan.pni.PanCode``; its ``accept``,
``init``, ``finalize`` and ``export`` methods are the entry points (manifest ``entry``
is ``{"accept": "accept", ...}`` as for every runtime). Loading checks every class
against ``pan_jvm.allowlist`` first. Each capsule is one JPype call into ``Lane.accept``
with a pre-registered direct ByteBuffer over the segment pool (no copy of the body), and
a batch is one call for all its capsules.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pan_jvm.checker import CheckedJar, check_jar
from pan_jvm.hostcalls import upcall_class
from pan_jvm.jvm import Jvm, current_jvm, ensure_jvm, unavailable_reason
from pan_runtime.data.segments import Segment, SegType
from pan_runtime.errors import (
    BudgetExceeded,
    ClosedError,
    CodeObjectError,
    ConfigError,
    FaultReason,
    RuntimeFault,
)
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

if TYPE_CHECKING:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Environment
    from pan_runtime.node.pni import PniServer

__all__ = ["JvmRuntime", "JvmLoadedCode", "FAULT_REASONS", "DEFAULT_LOAD_BUDGET_MS"]

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
_BATCH_MAX = 256
_STRIDE = 4
#: time budget (ms) for loading: class initialisation, the constructor and ``init``
DEFAULT_LOAD_BUDGET_MS = 500.0


def _java_name(exc: BaseException) -> str:
    """``java.lang.ThreadDeath: message`` for a Java exception that reached Python."""
    name = type(exc).__name__
    text = str(exc)
    return text if text.startswith(name) else f"{name}: {text}"


def _escaped_fault(code: CodeObject, exc: BaseException, what: str, stops: int) -> RuntimeFault:
    """The typed fault for a Java exception that escaped the lane during ``what`` of a run:
    a stop the watchdog issued for this call (``stops`` != 0, from ``Lane.recover``) is a
    budget fault, an OutOfMemoryError a memory one, anything else the runtime's own error."""
    name = type(exc).__name__
    text = f"{code.short_name}: {what} ended by {_java_name(exc)} outside the lane's guard"
    if name == "java.lang.ThreadDeath":
        if stops:
            return BudgetExceeded(f"{text} (stopped by the watchdog)", FaultReason.BUDGET)
        return RuntimeFault(
            f"{text} (a stop the watchdog did not issue for this call)", FaultReason.RUNTIME_ERROR
        )
    if name == "java.lang.OutOfMemoryError":
        return BudgetExceeded(text, FaultReason.MEMORY)
    return RuntimeFault(text, FaultReason.RUNTIME_ERROR)


def _escaped_load(code: CodeObject, exc: BaseException, stops: int, budget_ns: int) -> CodeObjectError:
    """The ``CodeObjectError`` for a Java exception that escaped the lane while loading."""
    if type(exc).__name__ != "java.lang.ThreadDeath":
        what = f"{_java_name(exc)} escaped the lane"
    elif stops:
        what = f"stopped by the watchdog past the load budget of {budget_ns / 1e6:g} ms (the stop reached the host)"
    else:
        what = "interrupted by a watchdog stop not issued for this load (it reached the host)"
    return CodeObjectError(f"{code.short_name}: loading failed: {what}")


def _default_memory_bytes() -> int:
    from pan_runtime.node.env import Budget

    return int(Budget().memory_bytes)


def _fault(code: CodeObject, kind: int, message: str) -> RuntimeFault:
    reason, budget, _ = FAULT_REASONS.get(kind, _UNKNOWN_FAULT)
    text = f"{code.short_name}: {message}"
    return BudgetExceeded(text, reason) if budget else RuntimeFault(text, reason)


class _Memory:
    """Direct ByteBuffers over node memory, one per underlying buffer, registered once.

    The hot path finds a segment's buffer id and offset from its ``address`` with two
    comparisons against the last region used; a new region (a pool's mapping) is wrapped
    once. Segments without an address (owned bytearrays, containers) get buffer id 0: the
    Java side then serves every body access through the host.
    """

    def __init__(self, jvm: Jvm, lane: Any):
        self._jvm = jvm
        self._lane = lane
        self._regions: list[tuple[int, int, int, Any]] = []  # (lo, hi, id, keepalive)
        self.lo = self.hi = 0
        self.id = 0

    def find(self, body: Segment) -> tuple[int, int]:
        """(buffer id, offset) for a segment, registering its memory on first sight."""
        addr = body.address
        if addr is None or body.next is not None or not body.contiguous:
            return 0, 0
        if self.lo <= addr < self.hi:
            return self.id, addr - self.lo
        for lo, hi, bid, _ in self._regions:
            if lo <= addr < hi:
                self.lo, self.hi, self.id = lo, hi, bid
                return bid, addr - lo
        obj = body.view().obj
        try:
            anchor = ctypes.c_char.from_buffer(obj)
        except (TypeError, ValueError):
            return 0, 0
        lo = ctypes.addressof(anchor)
        del anchor
        size = len(memoryview(obj).cast("B"))
        if self._jvm.direct_by_address:
            buf = self._jvm.cls("Memory").wrap(lo, size)
        else:  # holds a buffer export until the JVM drops the buffer
            import jpype

            buf = jpype.nio.convertToDirectBuffer(obj)
        bid = int(self._lane.addBuffer(buf))
        self._regions.append((lo, lo + size, bid, obj))
        self.lo, self.hi, self.id = lo, lo + size, bid
        return bid, addr - lo

    def clear(self) -> None:
        for _, _, bid, _ in self._regions:
            self._lane.removeBuffer(bid)
        self._regions.clear()
        self.lo = self.hi = self.id = 0


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


#: bytes of a pan_fast_ctx (include/pan_fast.h)
_FAST_CTX_SIZE = 40


def _fast_setup(jvm: Jvm, lane: Any) -> tuple[int, int, Any] | None:
    """Configure ``pan_jvm._fast`` and give the lane the context buffer it reads."""
    try:
        from pan_jvm import _fast
    except ImportError:
        return None
    try:
        vms = ctypes.cast(ctypes.CDLL(None).JNI_GetCreatedJavaVMs, ctypes.c_void_p).value or 0
        run = int(_fast.configure(vms))
    except (AttributeError, RuntimeError) as exc:  # libjvm not global, or Lane not on the system loader
        log.info("jvm fast entry unavailable: %s", exc)
        return None
    ctx = (ctypes.c_uint8 * _FAST_CTX_SIZE)()
    if jvm.direct_by_address:
        buf = jvm.cls("Memory").wrap(ctypes.addressof(ctx), _FAST_CTX_SIZE)
    else:
        import jpype

        buf = jpype.nio.convertToDirectBuffer(ctx)
    index = int(lane.enableFast(buf))
    return run, index, ctx


class JvmRuntime(Runtime):
    """Java code objects on JPype. Options: ``heap`` ("256m"), ``gc`` ("SerialGC"),
    ``jvm_flags`` (list), ``watchdog_tick_ms`` (2); JVM options apply only when this is
    the first JVM user in the process. ``load_budget_ms`` (500) bounds loading (class
    initialisation, constructor, ``init``), which the per-capsule budget would make flaky."""

    name: ClassVar[str] = "jvm"
    isolation: ClassVar[Isolation] = Isolation.GUARDED
    payload: ClassVar[str] = "jar with a class implementing org.pan.pni.PanCode (meta.entry_class)"

    def __init__(self, options: Mapping[str, Any] | None = None):
        super().__init__(options)
        load_ms = self.options.get("load_budget_ms", DEFAULT_LOAD_BUDGET_MS)
        if (
            isinstance(load_ms, bool)
            or not isinstance(load_ms, int | float)
            or not 0 < load_ms < float("inf")
        ):
            raise ConfigError(
                f"jvm: load_budget_ms must be a positive number of milliseconds, not {load_ms!r}"
            )
        #: (time ns, memory bytes) loading runs under
        self.load_budget = (int(load_ms * 1_000_000), _default_memory_bytes())
        self._jvm: Jvm | None = None
        self._lane: Any = None
        self.memory: _Memory | None = None
        self._next_id = 1
        self._batch_buf: bytearray | None = None
        self._batch: memoryview | None = None
        self._loaded: dict[int, JvmLoadedCode] = {}
        self._gc_base = 0
        self._closed = False
        self._fast: tuple[int, int, Any] | tuple[()] | None = None

    @classmethod
    def available(cls) -> str | None:
        return unavailable_reason()

    # -- engine ----------------------------------------------------------------------
    def _engine(self) -> Jvm:
        if self._closed:
            raise ClosedError("jvm runtime used after close()")
        if self._jvm is None:
            jvm = ensure_jvm(self.options)
            self._lane = jvm.cls("Lane")()
            self.memory = _Memory(jvm, self._lane)
            self._batch_buf = bytearray(_BATCH_MAX * _STRIDE * 4)
            self._batch = memoryview(self._batch_buf).cast("i")
            addr = ctypes.addressof(ctypes.c_char.from_buffer(self._batch_buf))
            if jvm.direct_by_address:
                self._lane.setBatch(jvm.cls("Memory").wrap(addr, len(self._batch_buf)))
            else:
                import jpype

                self._lane.setBatch(jpype.nio.convertToDirectBuffer(self._batch_buf))
            self._gc_base = int(jvm.cls("Lane").gcCount())
            self._jvm = jvm
        return self._jvm

    @property
    def lane(self) -> Any:
        self._engine()
        return self._lane

    def recover_lane(self) -> int:
        """Put the lane back to idle after a Java exception escaped a call into it (``Lane.recover``:
        no call active, stray stops collected), so the next call of any code object starts clean.
        Returns the stops the watchdog had issued for the call that escaped (-1: unknown)."""
        import jpype

        for _ in range(4):  # a stop pending when a call enters is thrown at its entry: retry
            try:
                return int(self._lane.recover())
            except jpype.JException:
                continue
        log.error("jvm lane did not recover after an escaped Java exception")
        return -1

    def fast_run(self) -> tuple[int, int, Any] | None:
        """(C entry, lane index, context) for the node's UDP fast path, or None when
        ``pan_jvm._fast`` is not built or cannot reach the JVM (code then runs through accept)."""
        if self._fast is None:
            self._fast = _fast_setup(self._engine(), self._lane) or ()
        return self._fast or None

    def gc_pauses(self) -> int:
        """Garbage collections the JVM ran since this runtime started (all code objects)."""
        jvm = self._engine()
        return int(jvm.cls("Lane").gcCount()) - self._gc_base

    def statistics(self) -> dict[str, int]:
        """``gc_pauses`` and ``gc_millis`` for the node's report (zero before the JVM starts)."""
        if self._closed or current_jvm() is None:
            return {}
        return {"gc_pauses": self.gc_pauses(), "gc_millis": self.gc_millis()}

    def gc_millis(self) -> int:
        """Milliseconds the JVM has spent collecting garbage since it started."""
        return int(self._engine().cls("Lane").gcMillis())

    # -- loading ---------------------------------------------------------------------
    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> JvmLoadedCode:
        import jpype

        try:
            return self._load(code, deps, host)
        except jpype.JException as exc:  # instantiate converts its own; this is any other JVM call
            raise _escaped_load(code, exc, self.recover_lane(), self.load_budget[0]) from exc

    def _load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> JvmLoadedCode:
        jvm = self._engine()
        entry = code.manifest.meta.get("entry_class")
        if not isinstance(entry, str) or not entry:
            raise CodeObjectError(
                f"{code.short_name}: jvm code objects name their PanCode class in meta.entry_class"
            )
        jdeps: list[JvmLoadedCode] = []
        for i, d in enumerate(deps):
            if not isinstance(d, JvmLoadedCode):
                raise CodeObjectError(
                    f"{code.short_name}: dependency {i} runs in another runtime; Java classes can only "
                    "link against jvm dependencies (call it with pni.depCall instead)"
                )
            jdeps.append(d)
        visible = {name for d in jdeps for name in d.checked.classes}
        visible.update(jvm.pni_class_names)
        checked = check_jar(code.payload, visible)
        if entry.replace(".", "/") not in checked.classes:
            raise CodeObjectError(f"{code.short_name}: entry class {entry} is not in the jar")
        loaded = JvmLoadedCode(self, code, host, checked, entry, jdeps)
        loaded.instantiate()
        return loaded

    def _new_id(self) -> int:
        cid = self._next_id
        self._next_id += 1
        return cid

    def close(self) -> None:
        if self._closed:
            return
        for loaded in list(self._loaded.values()):
            loaded.unload()
        if self._lane is not None:
            import jpype

            try:
                self._lane.close()
                assert self.memory is not None
                self.memory.clear()
            except jpype.JException as exc:  # closing must not fail the node's shutdown
                log.error("closing the jvm lane: %s", _java_name(exc))
        self._closed = True

    def versions(self) -> dict[str, str]:
        jvm = current_jvm()
        return jvm.versions() if jvm is not None else {}


class JvmLoadedCode(LoadedCode, FastEntry):
    """One Java code object: its class loader, its PanCode instance, its Java-side PNI."""

    def __init__(
        self,
        runtime: JvmRuntime,
        code: CodeObject,
        host: PniServer,
        checked: CheckedJar,
        entry_class: str,
        deps: Sequence[JvmLoadedCode],
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
        import jpype

        self._jexception: type[BaseException] = jpype.JException

    # -- lifecycle -------------------------------------------------------------------
    def instantiate(self) -> None:
        """Define a fresh class loader and PanCode instance (at load and on reset), under the
        runtime's load budget; every failure, a Java exception that escaped the lane included,
        is a ``CodeObjectError``."""
        import jpype

        before = self.id
        try:
            self._instantiate(jpype)
        except jpype.JException as exc:
            stops = self.runtime.recover_lane()
            if self.id != before:  # the lane had the new instance's id: forget it
                self._lane.drop(self.id)
            raise _escaped_load(self.code, exc, stops, self.runtime.load_budget[0]) from exc

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
        if self.id:
            self._lane.drop(self.id)
            del self.runtime._loaded[self.id]
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

    def _escaped(self, exc: BaseException, what: str) -> RuntimeFault:
        """A Java exception escaped the lane during ``what``: recover the lane, fault the run."""
        stops = self.runtime.recover_lane()
        self.needs_reset = True
        return _escaped_fault(self.code, exc, what, stops)

    def init(self) -> int:
        try:
            r = int(self._lane.init(self.id))
            if r != FAULT:
                return r
            fault = self._fault_now()
        except self._jexception as exc:
            fault = self._escaped(exc, "init")
        raise fault

    def finalize(self) -> int:
        try:
            r = int(self._lane.finish(self.id))
            if r != FAULT:
                return r
            fault = self._fault_now()
        except self._jexception as exc:
            fault = self._escaped(exc, "finalize")
        raise fault

    def reset(self) -> None:
        """A fresh class loader (static state dropped) and instance; ``init`` runs again."""
        self.instantiate()
        self.init()

    def unload(self) -> None:
        if self.id:
            try:
                self._lane.drop(self.id)
            except self._jexception as exc:  # the id is forgotten either way
                self.runtime.recover_lane()
                log.error("%s: dropping from the jvm lane: %s", self.code.short_name, _java_name(exc))
            self.runtime._loaded.pop(self.id, None)
            self.id = 0
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
            fault = self._escaped(exc, "accept")
        raise fault

    def fast_entry(self) -> tuple[int, int] | None:
        try:
            return self._fast_entry_now()
        except self._jexception as exc:
            raise self._escaped(exc, "setting up the fast entry") from exc

    def _fast_entry_now(self) -> tuple[int, int] | None:
        fast = self.runtime.fast_run()
        node = getattr(self.host, "node", None)
        pool = getattr(node, "pool", None)
        mem = self._memory
        if fast is None or pool is None or mem is None or not self.id:
            return None
        run, lane, ctx = fast
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
                fault = self._escaped(exc, "reading the fault of a fast run")
            raise fault

    def _set_budget(self, budget: Any) -> None:
        self._lane.setBudget(self.id, *self._budget_values(budget))
        self._budget = budget

    def accept_batch(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        """Every capsule's verdict or fault; a Java exception escaping the lane faults its chunk."""
        out: list[int | RuntimeFault] = []
        if not envs:
            return out
        for start in range(0, len(envs), _BATCH_MAX):
            chunk = envs[start : start + _BATCH_MAX]
            try:
                out.extend(self._accept_chunk(chunk))
            except self._jexception as exc:
                out.extend([self._escaped(exc, "a batch")] * len(chunk))
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
            at = i * _STRIDE
            arr[at] = bid
            arr[at + 1] = off
            arr[at + 2] = env.length
        proxy.envs = chunk
        if not lane.acceptBatch(self.id, len(chunk)):
            return list(arr[3 : len(chunk) * _STRIDE : _STRIDE])
        out: list[int | RuntimeFault] = []
        for i in range(len(chunk)):
            r = arr[i * _STRIDE + 3]
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
            fault = self._escaped(exc, f"export {name}")
        raise fault
