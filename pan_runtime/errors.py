"""The one exception hierarchy of pan: every error the framework raises is a `PanError`."""

from __future__ import annotations

import enum

__all__ = [
    "PanError",
    "SegmentError",
    "StreamError",
    "AddressError",
    "CapsuleError",
    "CodeObjectError",
    "SignatureError",
    "TrustError",
    "PniVersionError",
    "PniError",
    "RuntimeUnavailable",
    "FaultReason",
    "RuntimeFault",
    "BudgetExceeded",
    "ConfigError",
    "KeyFileError",
    "ClosedError",
    "LinkError",
    "OwnershipError",
    "LimitError",
    "DiskError",
    "BuildError",
    "ResourceError",
]


class PanError(Exception):
    """Root of every error raised by pan."""


class ClosedError(PanError):
    """An object that owns a resource was used after `close()`."""


class SegmentError(PanError):
    """Misuse of a software segment: released twice, out of range, pool exhausted."""


class StreamError(PanError):
    """A panStream read, write or seek would leave the bounds of its segment chain."""


class AddressError(PanError):
    """A node address or endpoint that cannot be parsed or mapped."""


class CapsuleError(PanError):
    """A capsule that does not follow the wire format; `reason` is a short machine-readable tag."""

    def __init__(self, message: str, reason: str = "malformed", offset: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.offset = offset


class CodeObjectError(PanError):
    """A code object that cannot be decoded, verified, linked or loaded; ``reason`` names the
    refusal where a runtime classifies it or a load limit or compile outcome refused it (a
    ``FaultReason``), else None."""

    def __init__(self, message: str, reason: FaultReason | str | None = None):
        super().__init__(message)
        self.reason = FaultReason(reason) if reason is not None else None


class SignatureError(CodeObjectError):
    """A code object signature that is malformed or does not verify."""


class TrustError(CodeObjectError):
    """The trust policy refused to load a code object; `rule` names the rule that refused."""

    def __init__(self, message: str, rule: str):
        super().__init__(message)
        self.rule = rule


class PniVersionError(CodeObjectError):
    """A code object built against a PNI version this node cannot serve."""


class PniError(PanError):
    """A PNI call made by code with bad arguments; carries the spec's status code."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class RuntimeUnavailable(PanError):
    """A runtime that cannot run here (missing engine, JDK, ...); `reason` says why."""


class FaultReason(enum.StrEnum):
    """Why a runtime stopped a run, or refused a code object: every runtime maps its stops
    (and the refusals it classifies) to one of these, and every load-limit refusal names one.

    A ``str`` enum, so the value is the drop reason counted against the code object (or
    against the capsules parked for a code object that was refused) and written to JSON.
    """

    #: time, steps or fuel used up
    BUDGET = "budget"
    #: a memory ceiling reached, or the engine ran out of memory
    MEMORY = "memory"
    #: a call allocated more than its per-call memory budget (restricted_py)
    MEMORY_BUDGET = "memory_budget"
    #: the code object holds more memory between calls than its limit (restricted_py)
    MEMORY_HELD = "memory_held"
    #: stack exhausted (deep recursion)
    STACK = "stack"
    #: an out-of-bounds memory or table access the engine caught
    OOB = "oob"
    #: any other trap of the engine (unreachable, division by zero, ...)
    TRAP = "trap"
    #: the code raised an exception
    CODE_ERROR = "code_error"
    #: a guard refused an operation (restricted_py)
    GUARD = "guard"
    #: the code returned something that is not a verdict
    BAD_VERDICT = "bad_verdict"
    #: the code has no export of the name called
    NO_EXPORT = "no_export"
    #: the code failed to initialise again after a reset (init refused, start function failed,
    #: a static initializer raised)
    INIT = "init"
    #: the code referred to something its runtime refuses to link (a class, an import)
    LINK = "link_refused"
    #: the node's side raised inside a PNI call the code made (a host bug, not the code's)
    HOST_ERROR = "host_error"
    #: the runtime itself raised (a runtime bug, logged with its traceback)
    RUNTIME_ERROR = "runtime_error"
    # -- a run in a worker process (process isolation, ``pan_runtime.isolation``)
    #: the worker died of a fault signal (segfault, bus error, illegal instruction) or exited
    #: on its own (a direct ``exit_group``), or spoke nonsense on its channel
    CRASH = "crash"
    #: the worker aborted (SIGABRT: ``abort()``, a failed assertion, an engine's own abort)
    ABORT = "abort"
    #: the call ran past its time budget and the node killed the worker
    KILLED_BUDGET = "killed_budget"
    #: the worker ran out of its address-space limit (``RLIMIT_AS``) and ended
    KILLED_MEMORY = "killed_memory"
    #: the code object's worker is down (restarting after a death, or backing off)
    WORKER_DOWN = "worker_down"
    #: the code object's worker is behind: ``limits.worker_inflight`` capsules are out and
    #: ``limits.worker_queue`` more wait in the node
    WORKER_BUSY = "worker_busy"
    #: refused at load: the runtime already runs ``limits.workers`` workers (process isolation)
    TOO_MANY_WORKERS = "too_many_workers"
    #: refused at load: an exception handler could swallow the stop that ends a run (jvm)
    ABSORBS_STOP = "absorbs_stop"
    #: refused at load: a symbol's value lies outside its section (native)
    SYMBOL_OUTSIDE_SECTION = "symbol_outside_section"
    #: refused at load: a section asks to be writable and executable at once (native)
    WRITABLE_CODE = "writable_code"
    #: refused at load: a relocation patches or names a section the loader does not map (native)
    UNMAPPED_SECTION = "unmapped_section"
    #: refused at load: the source nests too deeply to compile (restricted_py), or blocks nest
    #: deeper than limits.code_nesting (wasm)
    TOO_DEEP = "too_deep"

    # -- load refusals (``CodeObjectError.reason``): limits.code_* and limits.compile_*
    #: the code object, or one part of it (a class file, a function body), is larger than allowed
    CODE_TOO_BIG = "code_too_big"
    #: more functions (wasm functions, jvm methods) than allowed
    TOO_MANY_FUNCTIONS = "too_many_functions"
    #: a function declares more locals than allowed
    TOO_MANY_LOCALS = "too_many_locals"
    #: more imports (wasm imports, undefined ELF symbols) than allowed
    TOO_MANY_IMPORTS = "too_many_imports"
    #: more entries of some table than allowed (sections, symbols, relocations, classes,
    #: types, globals, exports, data or element segments)
    TOO_MANY_ENTRIES = "too_many_entries"
    #: compiling (or checking) the code took longer than allowed; the compiler was stopped
    COMPILE_TIMEOUT = "compile_timeout"
    #: compiling the code needed more memory than allowed
    COMPILE_MEMORY = "compile_memory"
    #: the compiler stopped otherwise (crashed, killed, returned nothing usable)
    COMPILE_FAILED = "compile_failed"


class RuntimeFault(PanError):
    """Code raised, trapped or otherwise failed inside a runtime; `reason` is the counted drop tag."""

    def __init__(self, message: str, reason: FaultReason = FaultReason.CODE_ERROR):
        super().__init__(message)
        self.reason = FaultReason(reason)


class BudgetExceeded(RuntimeFault):
    """Code used more than its execution budget (time, steps, fuel, memory)."""

    def __init__(self, message: str, reason: FaultReason = FaultReason.BUDGET):
        super().__init__(message, reason)


class ConfigError(PanError):
    """A configuration file or option that is malformed; names file, line and key where known."""


class KeyFileError(PanError):
    """A key file that cannot be read or parsed."""


class LinkError(PanError):
    """A link (in-process, UDP, application) that cannot be opened or used."""


class OwnershipError(PanError):
    """An application asked to change what another application owns: a port it bound, code it
    pinned, the portmapper its ports go through."""


class LimitError(PanError):
    """A request would take more than a limit the node sets (ports per application, ...)."""


class DiskError(PanError):
    """The node's disk failed it: a file it keeps (the code cache) could not be written or read
    (full, read-only, permissions, I/O error)."""


class BuildError(PanError):
    """``pan build`` could not turn sources into a code object (compiler missing or failed)."""


class ResourceError(PanError):
    """A file pan ships (headers, Java sources, reference protocols) is missing or unreadable."""


class WorkerError(PanError):
    """A worker process of the ``process`` isolation mechanism could not be started or loaded,
    or broke the rules of its channel (a malformed or oversized record)."""


class CleanupError(PanError):
    """Something pan made (a network namespace, a process, a folder) could not be removed; the
    message names what is left and how to remove it."""
