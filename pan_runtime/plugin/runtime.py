"""The runtime interface: what a mobile-code system implements to run code objects in pan.

A runtime is a class registered through the ``pan_register_runtimes`` hook. The node makes
one instance per runtime, asks it to ``load`` each code object (after the trust policy
allowed it and its dependencies are loaded) and then calls the returned ``LoadedCode`` for
every capsule. Every PNI call is implemented once, by the node's ``PniServer``
(``pan_runtime.node.pni``); a runtime only marshals between its code and that host (the hot
calls' shortcuts are generated from the spec: ``pni_hot``). Running on the node's UDP fast
path is an optional capability, ``pan_runtime.plugin.fastentry.FastEntry``.

Calling convention for ``LoadedCode.accept``:

* The node has set up ``env`` (``pan_runtime.node.env.Environment``): ``env.body`` is the capsule
  body segment, registered as handle ``env.BODY_HANDLE`` (1); ``env.length`` its length.
* ``host.current`` is ``env`` for the duration of the call; PNI calls made by the code go
  to ``host`` and return negative statuses on bad arguments, never raise into the code.
* ``accept`` returns the code's verdict (``pni_spec`` verdicts: low byte kind, argument in
  the bits above) or a negative status. It raises ``RuntimeFault`` (or ``BudgetExceeded``)
  when the code raised, trapped or ran out of budget; the node drops that capsule, counts
  the reason against the code object and goes on. ``LoadedCode.needs_reset`` tells the
  node the instance may be corrupt.

Fault reasons: every runtime maps each way a run can stop to one ``FaultReason``
(``pan_runtime.errors``), a ``str`` enum whose value is the drop reason the node counts:
``budget`` (time, steps or fuel used up), ``memory`` (memory ceiling or out of memory),
``memory_budget`` (a call allocated more than its memory budget), ``memory_held`` (the code
object holds more than its limit between calls),
``stack`` (stack exhausted), ``oob`` (an out-of-bounds access the engine caught), ``trap``
(any other engine trap), ``code_error`` (the code raised), ``guard`` (a guard refused an
operation), ``bad_verdict`` (not a verdict), ``no_export``, ``init`` (initialising again
failed), ``link_refused`` (a reference the runtime will not link), ``host_error`` (the
node's side of a PNI call raised) and ``runtime_error`` (the runtime itself raised).

Loading in steps: the node first calls ``check`` (cheap: what the payload declares, against
``load_limits``), then, for code from the network, ``prepare``; a ``LoadJob`` it returns runs
in a child process under the compile limits and its result goes to ``adopt``; ``load`` then
finds the work done. ``Node.install`` (code the embedding program gives) calls ``check`` and
then ``load``, which does the rest itself (the deeper checks included) on the caller's thread.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pan_runtime.errors import CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.plugin.loadlimits import LoadLimits

if TYPE_CHECKING:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Environment
    from pan_runtime.node.pni import PniServer
    from pan_runtime.plugin.loadjob import LoadJob

__all__ = ["Isolation", "LIMITS", "Runtime", "LoadedCode"]

#: the budget fields a runtime may declare it enforces (``Runtime.limits``)
LIMITS = ("time_ms", "steps", "fuel", "memory_bytes")


class Isolation(str, enum.Enum):
    """How far a runtime contains hostile code; the trust policy keys on it."""

    SANDBOXED = "sandboxed"  # a real boundary (wasm): code may come from anywhere
    GUARDED = "guarded"  # checks that help but are not a security boundary
    NONE = "none"  # no containment: trusted by signature or local installation only
    #: the runtime runs in a supervised worker process under kernel limits (seccomp, RLIMIT_AS):
    #: what any runtime becomes under the ``process`` isolation mechanism
    #: (``pan_runtime.isolation``); not a class attribute a runtime declares
    PROCESS = "process"


class LoadedCode(abc.ABC):
    """One code object, linked and ready to run in its runtime."""

    #: set by the runtime when a fault may have left the instance in a bad state
    needs_reset: bool = False

    def __init__(self, code: CodeObject, host: PniServer):
        self.code = code
        self.host = host

    def init(self) -> int:
        """Run the code object's ``init`` entry if it has one; a negative result refuses it."""
        return 0

    @abc.abstractmethod
    def accept(self, env: Environment) -> int:
        """Run ``accept`` on one capsule; see the module docstring for the contract."""

    def accept_batch(self, envs: Sequence[Environment]) -> list[int | RuntimeFault]:
        """Run ``accept`` on several capsules of this code object, in order.

        Runtimes override this to cross into their engine once per batch. A fault in one
        capsule is returned in its place; the others still run.
        """
        host = self.host
        out: list[int | RuntimeFault] = []
        for env in envs:
            host.current = env
            try:
                out.append(self.accept(env))
            except RuntimeFault as fault:
                out.append(fault)
        return out

    def call_export(self, name: str, a0: int, a1: int) -> int:
        """Call an exported function (``int64 f(int64, int64)``) for a dependant."""
        raise RuntimeFault(f"{self.code.short_name}: no export {name!r}", FaultReason.NO_EXPORT)

    def reset(self) -> None:
        """Recreate the instance after a fault that may have corrupted it."""
        self.needs_reset = False

    def finalize(self) -> int:
        """Run the code object's ``finalize`` entry if it has one."""
        return 0

    def unload(self) -> None:
        """Release everything the runtime holds for this code object (after ``finalize``)."""


class Runtime(abc.ABC):
    """A mobile-code system. Subclasses set ``name`` and ``isolation`` at class level."""

    name: ClassVar[str]
    isolation: ClassVar[Isolation]
    #: a short description of the payload a code object for this runtime carries
    payload: ClassVar[str] = ""
    #: the node's limits on code objects and on compiling them (the node sets its own)
    load_limits: LoadLimits = LoadLimits()
    #: the ``Budget`` fields (``pan_runtime.node.env``) this runtime enforces on every run:
    #: ``time_ms``, ``steps``, ``fuel``, ``memory_bytes``. The conformance kit runs its budget
    #: cases with them; a runtime that contains code (isolation other than ``none``) and
    #: enforces none of ``time_ms``, ``steps`` or ``fuel`` would hang on an endless loop.
    limits: ClassVar[frozenset[str]] = frozenset()
    #: True when this instance runs in a worker process that the node kills past a call's time
    #: budget (process isolation, ``pan_runtime.isolation``): a runtime may then drop checks
    #: that only keep a runaway call from holding the node (jvm: handlers that could swallow
    #: its watchdog's stop). Set by the worker after making the runtime.
    contained: bool = False

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options: dict[str, Any] = dict(options or {})

    @classmethod
    def available(cls) -> str | None:
        """``None`` when the runtime can run here, else the reason it cannot."""
        return None

    @abc.abstractmethod
    def load(
        self,
        code: CodeObject,
        deps: Sequence[LoadedCode],
        host: PniServer,
    ) -> LoadedCode:
        """Validate, compile and link ``code`` against ``deps`` (manifest order).

        Raise ``CodeObjectError`` naming what is wrong (a bad payload, an import that is
        not in the PNI spec, an unresolved symbol, a refused class reference, a load limit).
        """

    def start(self) -> None:
        """Make the engine now rather than at the first ``load`` (a JVM, a parsed support
        object). A worker started ahead as a spare (``pan_runtime.isolation``) calls it, so that
        a restart in it only links its code object; the default does nothing."""

    def check(self, code: CodeObject) -> None:
        """Refuse ``code`` cheaply, before anything costly, when what its payload declares
        (section and entry counts, sizes) exceeds ``load_limits``: ``CodeObjectError`` with a
        ``FaultReason``. Runs on the node's thread, so it reads headers, never whole bodies.
        (The node itself checks ``code_bytes``.)"""

    def prepare(self, code: CodeObject, deps: Sequence[LoadedCode]) -> LoadJob | None:
        """The costly part of loading ``code`` (compiling, checking every class) as a job the
        node runs in a child process, or None when ``load`` is cheap (or the work is cached)."""
        return None

    def adopt(self, code: CodeObject, result: bytes) -> None:
        """Take the result of ``prepare``'s job, so that the next ``load`` of ``code`` does
        not redo that work; ``CodeObjectError`` if the result is unusable."""
        raise CodeObjectError(f"runtime {self.name} prepares no jobs; nothing to adopt for {code.short_name}")

    def close(self) -> None:
        """Release engine-wide resources when the node closes."""

    def statistics(self) -> dict[str, int]:
        """Engine-wide counters worth reporting with the node's (e.g. ``gc_pauses``)."""
        return {}

    def versions(self) -> dict[str, str]:
        """Versions of the engine and bindings, for ``pan runtimes`` and bench metadata
        (a classmethod where they are known without starting the engine)."""
        return {}


def as_fault(exc: Exception, runtime: str, code: str) -> RuntimeFault:
    """``exc`` as the fault of one run: the code's own ``RuntimeFault``, or a runtime's bug,
    logged with its traceback and counted as ``runtime_error`` (it must not stop the node)."""
    if isinstance(exc, RuntimeFault):
        return exc
    logging.getLogger("pan.node").error("runtime %s raised on %s", runtime, code, exc_info=exc)
    return RuntimeFault(f"{type(exc).__name__}: {exc}", FaultReason.RUNTIME_ERROR)
