"""The ``jvm`` runtime: Java code objects, one class loader each, in the process's one JVM.

A code object's payload is a jar; ``meta["entry_class"]`` names (binary name, e.g.
``com.example.Forward``) the class implementing ``org.pan.pni.PanCode``; its ``accept``,
``init``, ``finalize`` and ``export`` methods are the entry points (manifest ``entry``
is ``{"accept": "accept", ...}`` as for every runtime). Loading checks every class
against ``pan_jvm.allowlist`` first. Each capsule is one JPype call into ``Lane.accept``
with a pre-registered direct ByteBuffer over the segment pool (no copy of the body), and
a batch is one call for all its capsules. This module holds the runtime (the JVM, the lane,
the shared memory registrations); the loaded code, ``JvmCode``, is in ``code.py``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pan_jvm.checker import CheckedJar, check_classes, class_bytes, read_jar, scan_jar, verdict
from pan_jvm.jvm import Jvm, current_jvm, ensure_jvm, unavailable_reason
from pan_runtime.data.segments import Segment
from pan_runtime.errors import ClosedError, CodeObjectError, ConfigError
from pan_runtime.plugin.loadjob import LoadJob
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

if TYPE_CHECKING:
    from pan_jvm.code import JvmCode
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.pni import PniServer

__all__ = ["JvmRuntime", "DEFAULT_LOAD_BUDGET_MS", "BATCH_MAX", "BATCH_STRIDE"]

log = logging.getLogger("pan.jvm")

#: capsules per batch crossing, and ints per capsule in the batch array (``Lane.BATCH_STRIDE``)
BATCH_MAX = 256
BATCH_STRIDE = 4
#: time budget (ms) for loading: class initialisation, the constructor and ``init``
DEFAULT_LOAD_BUDGET_MS = 500.0
#: jars whose classes inflate to at most this many bytes are checked on the node's thread
#: (about 0.4 µs a byte: faster than starting a process); larger ones from the network are
#: checked in the node's compiler process
INLINE_CHECK_BYTES = 64 << 10
#: a jar listing more entries than this is checked there too, whatever it declares
_INLINE_CHECK_ENTRIES = 256


def _default_memory_bytes() -> int:
    from pan_runtime.node.env import Budget

    return int(Budget().memory_bytes)


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


def _fast_setup(jvm: Jvm, lane: Any) -> tuple[int, int, Any, int] | None:
    """Configure ``pan_jvm._fast`` and give the lane the context buffer it reads (the fast
    path's context, then the batch area): (C entry, lane index, context, C batch entry)."""
    try:
        from pan_jvm import _fast
    except ImportError:
        return None
    try:
        vms = ctypes.cast(ctypes.CDLL(None).JNI_GetCreatedJavaVMs, ctypes.c_void_p).value or 0
        run, run_batch, size = _fast.configure(vms)
    except (AttributeError, RuntimeError) as exc:  # libjvm not global, or Lane not on the system loader
        log.info("jvm fast entry unavailable: %s", exc)
        return None
    ctx = (ctypes.c_uint8 * size)()
    if jvm.direct_by_address:
        buf = jvm.cls("Memory").wrap(ctypes.addressof(ctx), size)
    else:
        import jpype

        buf = jpype.nio.convertToDirectBuffer(ctx)
    index = int(lane.enableFast(buf))
    return int(run), index, ctx, int(run_batch)


class JvmRuntime(Runtime):
    """Java code objects on JPype. Options: ``heap`` ("256m"), ``gc`` ("SerialGC"),
    ``jvm_flags`` (list), ``watchdog_tick_ms`` (2); JVM options apply only when this is
    the first JVM user in the process. ``load_budget_ms`` (500) bounds loading (class
    initialisation, constructor, ``init``), which the per-capsule budget would make flaky."""

    name: ClassVar[str] = "jvm"
    isolation: ClassVar[Isolation] = Isolation.GUARDED
    limits: ClassVar[frozenset[str]] = frozenset({"time_ms", "memory_bytes"})
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
        self._loaded: dict[int, JvmCode] = {}
        self._gc_base = 0
        self._closed = False
        self._fast: tuple[int, int, Any] | tuple[()] | None = None
        #: code name -> verdict of a check the compiler process passed (``adopt``), until loaded
        self._verdicts: dict[bytes, bytes] = {}

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
            self._batch_buf = bytearray(BATCH_MAX * BATCH_STRIDE * 4)
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

    def start(self) -> None:
        """Boot the JVM and this runtime's lane now (a worker's spare: a restart then only
        loads its classes)."""
        self._engine()

    @property
    def lane(self) -> Any:
        self._engine()
        return self._lane

    def recover_lane(self) -> int:
        """Put the lane back to idle after a Java exception escaped a call into it (``Lane.recover``:
        no call active, stray stops collected), so the next call of any code object starts clean.
        Returns what it found (``Lane.RECOVERED_*``, ``pan_jvm.code.RECOVERED_*``); when the lane
        cannot be reached, "a call was active, not stopped" (nothing is retried on it)."""
        import jpype

        for _ in range(4):  # a stop pending when a call enters is thrown at its entry: retry
            try:
                return int(self._lane.recover())
            except jpype.JException:
                continue
        log.error("jvm lane did not recover after an escaped Java exception")
        return 1  # RECOVERED_UNSTOPPED

    def fast_run(self) -> tuple[int, int, Any, int] | None:
        """(C entry, lane index, context, C batch entry) for the node's UDP fast path, or None when
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
    def check(self, code: CodeObject) -> None:
        """The jar's entry count (from its zip end record) against the node's load limits."""
        scan_jar(code.payload, self.load_limits, f"{code.short_name}: jar")

    def prepare(self, code: CodeObject, deps: Sequence[LoadedCode]) -> LoadJob | None:
        """The class check of a large jar, as a job for the node's compiler process."""
        inflated = class_bytes(code.payload, _INLINE_CHECK_ENTRIES)
        if inflated is not None and inflated <= INLINE_CHECK_BYTES:
            return None
        return LoadJob(
            "pan_jvm.checker:check_job",
            code.payload,
            {"visible": sorted(self._visible(deps)), "limits": dataclasses.asdict(self.load_limits)},
        )

    def adopt(self, code: CodeObject, result: bytes) -> None:
        """Take the compiler process's verdict that the jar passed the check."""
        self._verdicts[code.name] = bytes(result)
        while len(self._verdicts) > 8:
            del self._verdicts[next(iter(self._verdicts))]

    def _visible(self, deps: Sequence[LoadedCode]) -> set[str]:
        """Classes a code object may use besides its own: its jvm dependencies' and the PNI's."""
        from pan_jvm.code import JvmCode

        visible = {name for d in deps if isinstance(d, JvmCode) for name in d.checked.classes}
        visible.update(self._engine().pni_class_names)
        return visible

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> JvmCode:
        import jpype

        from pan_jvm.code import ENTRY_RETRIES, escaped_load, stray_entry_stop

        for attempt in range(ENTRY_RETRIES + 1):
            try:
                return self._load(code, deps, host)
            except jpype.JException as exc:  # instantiate converts its own; this is any other JVM call
                status = self.recover_lane()
                if not stray_entry_stop(exc, status) or attempt == ENTRY_RETRIES:
                    raise escaped_load(code, exc, status, self.load_budget[0]) from exc
                log.warning("%s: a stop from outside the lane arrived while loading; loading again", code.short_name)
        raise AssertionError("unreachable")

    def _load(self, code: CodeObject, deps: Sequence[LoadedCode], host: PniServer) -> JvmCode:
        from pan_jvm.code import JvmCode

        jvm = self._engine()
        entry = code.manifest.meta.get("entry_class")
        if not isinstance(entry, str) or not entry:
            raise CodeObjectError(
                f"{code.short_name}: jvm code objects name their PanCode class in meta.entry_class"
            )
        jdeps: list[JvmCode] = []
        for i, d in enumerate(deps):
            if not isinstance(d, JvmCode):
                raise CodeObjectError(
                    f"{code.short_name}: dependency {i} runs in another runtime; Java classes can only "
                    "link against jvm dependencies (call it with pni.depCall instead)"
                )
            jdeps.append(d)
        visible = {name for d in jdeps for name in d.checked.classes}
        visible.update(jvm.pni_class_names)
        limits = self.load_limits
        scan_jar(code.payload, limits, f"{code.short_name}: jar")
        classes = read_jar(code.payload, limits)
        if self._verdicts.pop(code.name, None) == verdict(code.payload, visible):
            checked = CheckedJar(classes, {})  # checked off the node's thread, same classes visible
        else:
            checked = CheckedJar(classes, check_classes(classes, visible, limits, contained=self.contained))
        if entry.replace(".", "/") not in checked.classes:
            raise CodeObjectError(f"{code.short_name}: entry class {entry} is not in the jar")
        loaded = JvmCode(self, code, host, checked, entry, jdeps)
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

            from pan_jvm.code import java_name

            try:
                self._lane.close()
                assert self.memory is not None
                self.memory.clear()
            except jpype.JException as exc:  # closing must not fail the node's shutdown
                log.error("closing the jvm lane: %s", java_name(exc))
        self._closed = True

    def versions(self) -> dict[str, str]:
        jvm = current_jvm()
        return jvm.versions() if jvm is not None else {}


