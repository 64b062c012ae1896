"""The restricted_py runtime's loaded code: one module body run once per load into private
globals, its entry points called under the step meter with the code's ``pni`` view.

Every call runs inside the code object's memory and time account (``account.py``): what the
call allocates is charged to it, an allocation over the call's memory budget fails, and a
call that left the code object holding more than its held limit is a fault that resets it.

Every way a run stops (the meter, a guard, the account, the code's own exception) becomes a
``RuntimeFault`` with its ``FaultReason``; see ``runtime.py`` for the code object format.
"""

from __future__ import annotations

import gc
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pan_restricted_py import account as accounts
from pan_restricted_py.codecs import CODECS
from pan_restricted_py.guards import make_builtins, make_guards
from pan_restricted_py.limits import Limits
from pan_restricted_py.meter import HELD, MEMORY, TIME, Halt, Meter
from pan_runtime import pni_api, pni_hot, protocol_headers
from pan_runtime.errors import BudgetExceeded, CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.node.env import Budget
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.runtime import LoadedCode

try:  # the fast path's C door (built at install where a C compiler was found)
    from pan_restricted_py import _fast
except ImportError:  # then the fast path calls ``fast_accept`` itself, one capsule at a time
    _fast = None

if TYPE_CHECKING:
    from pan_restricted_py.compiler import CompiledSource
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Environment
    from pan_runtime.node.pni import PniServer

__all__ = ["RestrictedPyCode", "code_globals"]

_CALL_NAMES = tuple(c[0] for c in pni_api.CALLS)
#: the modules whose public names code sees as globals: the PNI and the reference protocols' header codecs
_API_MODULES = (pni_api, protocol_headers)
#: the codec classes code sees (``codecs.py``: the generated ones with ``read`` in C) and their bases
_CODEC_CLASSES = (*CODECS, *CODECS.values())
_HIDDEN = {"PNI", "HostPNI"}
_DEFAULT_BUDGET = Budget()


def _api_globals() -> dict[str, Any]:
    """Public names of ``_API_MODULES`` for code: constants, verdict helpers, codecs (dicts
    copied; each codec class replaced by its ``codecs.CODECS`` form)."""
    out: dict[str, Any] = {}
    for module in _API_MODULES:
        for name in module.__all__:
            if name in _HIDDEN:
                continue
            value = getattr(module, name)
            if isinstance(value, dict):
                # private copy: code may not change what other code sees
                value = {k: CODECS.get(v, v) if isinstance(v, type) else v for k, v in value.items()}
            elif isinstance(value, type):
                value = CODECS.get(value, value)
            out[name] = value
    return out


def _pni_view(pni: pni_api.HostPNI) -> types.SimpleNamespace:
    """The object code calls: the PNI calls of ``pni`` pre-bound, and nothing else."""
    return types.SimpleNamespace(**{name: getattr(pni, name) for name in _CALL_NAMES})


def _dep_view(dep: LoadedCode) -> types.SimpleNamespace:
    def bind(export: str) -> Callable[[int, int], int]:
        def call(a0: int, a1: int) -> int:
            return dep.call_export(export, a0, a1)

        call.__name__ = export
        return call

    return types.SimpleNamespace(**{e: bind(e) for e in dep.code.manifest.exports})


class _LeanHost(pni_hot.BodyHost):
    """The body host of the fast path's runs: ``body`` and ``prev_hop`` are slots, which the
    C entry (``_fast.c``) writes directly per run (no instance dict update)."""

    __slots__ = ("body", "prev_hop")


def code_globals(meter: Meter, limits: Limits, name: str) -> dict[str, Any]:
    """A fresh module dict for one code object: guards, builtins and the PNI names."""
    g = meter.g
    guards = make_guards(meter, limits, _CODEC_CLASSES)
    g["__builtins__"] = make_builtins(guards)
    g["__name__"] = name
    for key, value in guards.items():
        if key.startswith("_"):
            g[key] = value
    g.update(_api_globals())
    return g


class RestrictedPyCode(LoadedCode, FastEntry):
    """One restricted_py code object: its module dict, meter and bound entry points."""

    def __init__(
        self,
        code: CodeObject,
        host: PniServer,
        compiled: CompiledSource,
        deps: Sequence[LoadedCode],
        limits: Limits,
    ):
        super().__init__(code, host)
        self._compiled = compiled
        self._deps = tuple(deps)
        self._limits = limits
        #: what the code's calls may allocate and the code may hold; kept across resets
        self._account = accounts.new_account(limits.max_call_memory_bytes, limits.held_memory_bytes, 0)
        self._instantiate()

    # -- set-up ------------------------------------------------------------------------
    def _instantiate(self) -> None:
        code, limits = self.code, self._limits
        g: dict[str, Any] = {}
        meter = Meter(g, limits.max_depth, limits.chunk, self._compiled.filename)
        meter.sentinels.update(_RUNTIME_CODES)
        self._active = 0
        self._g = g
        self._meter = meter
        self._budget: Any = None
        acct = self._account
        meter.check = acct.check
        acct.bind(g, self._compiled.filename)
        code_globals(meter, limits, code.short_name)
        g["_pace_"] = acct.check
        self._pni = _pni_view(pni_api.HostPNI(self.host))
        # the PNI of runs from the node's UDP fast path, which have no environment
        self._lean = _LeanHost(self.host)
        lean_pni = pni_api.HostPNI(self._lean)
        direct = _fast.direct_calls(self._lean, lean_pni) if _fast is not None else self._lean.direct_calls(lean_pni)
        calls = {**vars(_pni_view(lean_pni)), **direct}
        # the C pni finds the hot reads by name address first, and the header codecs' read its seg_read
        self._lean_pni = _fast.pni(calls, tuple(direct)) if _fast is not None else types.SimpleNamespace(**calls)
        g["deps"] = tuple(_dep_view(d) for d in self._deps)
        self._configure(_DEFAULT_BUDGET)
        meter.arm()
        acct.enter()
        try:
            exec(self._compiled.code, g)
        except BaseException as exc:
            fault = self._fault(exc, acct.leave())
            if fault is exc:  # a real interrupt, not the code's fault
                raise
            raise CodeObjectError(f"{code.short_name}: module body failed: {fault}") from None
        flags = acct.leave()
        if flags:
            fault = self._over(flags)
            if fault is not None:
                raise CodeObjectError(f"{code.short_name}: module body failed: {fault}")
        entry = code.manifest.entry
        self._accept = self._function(entry.get("accept", "accept"), required=True)
        self._init = self._function(entry["init"], required=True) if "init" in entry else None
        self._finalize = self._function(entry["finalize"], required=True) if "finalize" in entry else None
        self._exports = {e: self._function(e, required=True) for e in code.manifest.exports}
        self._bind_accept()
        self._bind_fast()

    def _function(self, name: str, required: bool) -> Any:
        fn = self._g.get(name)
        if not isinstance(fn, types.FunctionType) or fn.__code__.co_filename != self._compiled.filename:
            if required:
                raise CodeObjectError(
                    f"{self.code.short_name}: the manifest names {name!r}, but the source defines no such function"
                )
            return None
        return fn

    def _configure(self, budget: Any) -> None:
        self._budget = budget
        limits = self._limits
        call_bytes = min(int(budget.memory_bytes), limits.max_call_memory_bytes)
        time_ms = budget.time_ms
        self._meter.configure(budget.steps, time_ms, call_bytes)
        time_ns = int(time_ms * 1e6) if time_ms and time_ms > 0 else 0
        self._account.configure(call_bytes, limits.held_memory_bytes, time_ns)
        if self._fast_entry is not None:  # its runs prepare the node's budget again
            self._fast_entry.budget_changed()

    # -- faults ------------------------------------------------------------------------
    def _over(self, flags: int) -> RuntimeFault | None:
        """The fault a call has earned by its account's FLAGS, if any (memory, then time,
        then what the code holds; an over-held code object is reset in any case)."""
        name = self.code.short_name
        held = self._held() if flags & HELD else None
        if flags & MEMORY:
            return BudgetExceeded(
                f"{name}: memory budget of {self._meter.memory} bytes per call spent", FaultReason.MEMORY_BUDGET
            )
        if flags & TIME:
            return BudgetExceeded(f"{name}: time budget of {self._meter.time_ns / 1e6:g} ms spent")
        return held

    def _held(self) -> RuntimeFault | None:
        """The code object holds more than its limit after a call: unless collecting
        reference cycles brings it back under, it needs a reset (its globals go)."""
        acct, limit = self._account, self._limits.held_memory_bytes
        gc.collect()
        if acct.held <= limit:
            return None
        self.needs_reset = True
        return BudgetExceeded(
            f"{self.code.short_name}: holds {acct.held} bytes between calls, more than its limit of {limit}",
            FaultReason.MEMORY_HELD,
        )

    def _fault(self, exc: BaseException, flags: int = 0) -> BaseException:
        meter = self._meter
        where = self._line_of(exc)
        _drop_frames(exc)
        if isinstance(exc, KeyboardInterrupt):
            return exc
        if flags:
            over = self._over(flags)
            if over is not None:
                return BudgetExceeded(f"{over}{where}", over.reason)
        if meter.halted:
            if meter.reason == "budget":
                return BudgetExceeded(f"{self.code.short_name}: {meter.detail}{where}")
            return RuntimeFault(f"{self.code.short_name}: guard: {meter.detail}{where}", FaultReason.GUARD)
        if isinstance(exc, Halt):  # cannot happen without a halted meter; be safe
            return RuntimeFault(f"{self.code.short_name}: {exc.detail}{where}", FaultReason(exc.reason))
        if isinstance(exc, KeyboardInterrupt):
            return exc
        if isinstance(exc, RecursionError):
            self.needs_reset = True
            return RuntimeFault(f"{self.code.short_name}: guard: recursion too deep{where}", FaultReason.GUARD)
        if isinstance(exc, MemoryError):
            self.needs_reset = True
            return RuntimeFault(f"{self.code.short_name}: out of memory{where}", FaultReason.MEMORY)
        if isinstance(exc, RuntimeFault):
            return RuntimeFault(f"{self.code.short_name}: in a dependency: {exc}", exc.reason)
        return RuntimeFault(f"{self.code.short_name}: {type(exc).__name__}: {exc}{where}", FaultReason.CODE_ERROR)

    def _line_of(self, exc: BaseException) -> str:
        tb = exc.__traceback__
        line = None
        filename = self._compiled.filename
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return f" (line {line})" if line is not None else ""

    # -- calls -------------------------------------------------------------------------
    def accept(self, env: Environment) -> int:
        """Replaced per instance by the closure ``_bind_accept`` makes (no bound-method cost)."""
        return self._bind_accept()(env)

    def _bind_accept(self) -> Callable[[Environment], int]:
        """Make the per-capsule entry: arm the meter, call, map faults, report steps.

        A closure over everything it needs, stored as the instance attribute ``accept``.
        An ``accept`` that neither loops nor calls cannot spend steps: it runs unmetered.
        """
        g, meter, fn, pni = self._g, self._meter, self._accept, self._pni
        fault, over, configure, name = self._fault, self._over, self._configure, self.code.short_name
        enter, leave = self._account.enter, self._account.leave
        budget = self._budget
        chunk0, extra0, steps = meter.chunk0, meter.extra0, meter.steps
        metered = "_left_" in fn.__code__.co_names

        def not_int(r: Any) -> RuntimeFault:
            return RuntimeFault(f"{name}: accept returned {type(r).__name__}, not an int", FaultReason.BAD_VERDICT)

        def accept_metered(env: Environment) -> int:
            nonlocal budget, chunk0, extra0, steps
            if env.budget is not budget:
                configure(env.budget)
                budget, chunk0, extra0, steps = env.budget, meter.chunk0, meter.extra0, meter.steps
            g["_left_"] = chunk0
            meter.extra = extra0
            enter()
            try:
                r = fn(pni, 1, env.length)
            except BaseException as exc:
                raise fault(exc, leave()) from None
            flags = leave()
            env.usage.steps = steps - meter.extra - g["_left_"]
            if flags:
                f = over(flags)
                if f is not None:
                    raise f
            if r.__class__ is not int:
                raise not_int(r)
            return r

        def accept_unmetered(env: Environment) -> int:
            nonlocal budget
            if env.budget is not budget:
                configure(env.budget)
                budget = env.budget
            enter()
            try:
                r = fn(pni, 1, env.length)
            except BaseException as exc:
                f = fault(exc, leave())
                meter.arm()  # a guard halt must not outlive its call
                raise f from None
            flags = leave()
            env.usage.steps = 0
            if flags:
                f = over(flags)
                if f is not None:
                    raise f
            if r.__class__ is not int:
                raise not_int(r)
            return r

        self._meter.sentinels.update((accept_metered.__code__, accept_unmetered.__code__))
        bound = accept_metered if metered else accept_unmetered
        self.accept = bound  # type: ignore[method-assign]
        return bound

    def _bind_fast(self) -> None:
        """Make ``fast_accept``: ``accept`` on a capsule body the node's UDP fast path holds,
        with the PNI answered by a generated ``pni_hot.BodyHost`` (no environment unless the
        code needs one)."""
        g, meter, fn, pni, lean = self._g, self._meter, self._accept, self._lean_pni, self._lean
        fault, over, name = self._fault, self._over, self.code.short_name
        enter, leave = self._account.enter, self._account.leave
        node_budget = getattr(getattr(getattr(self.host, "node", None), "config", None), "budget", None)
        if node_budget is None:
            return
        metered = "_left_" in fn.__code__.co_names
        chunk0 = extra0 = steps = 0

        def fast_accept(body: memoryview, prev_hop: bytes) -> int:
            nonlocal chunk0, extra0, steps
            if self._budget is not node_budget or not steps:
                self._configure(node_budget)
                chunk0, extra0, steps = meter.chunk0, meter.extra0, meter.steps
            g["_left_"] = chunk0
            meter.extra = extra0
            lean.body = body
            lean.prev_hop = prev_hop
            enter()
            try:
                r = fn(pni, 1, len(body))
            except BaseException as exc:
                lean.body = None
                f = fault(exc, leave())
                meter.arm()  # a guard halt must not outlive its call
                raise f from None
            flags = leave()
            lean.body = None
            if metered:
                self.fast_steps += steps - meter.extra - g["_left_"]
            if flags:
                f = over(flags)
                if f is not None:
                    raise f
            if r.__class__ is not int:
                raise RuntimeFault(f"{name}: accept returned {type(r).__name__}, not an int", FaultReason.BAD_VERDICT)
            return r

        self._meter.sentinels.add(fast_accept.__code__)
        self.fast_accept = fast_accept  # type: ignore[method-assign]
        if _fast is None:
            self._fast_entry = None
            return

        # the C entry runs what fast_accept does without its frame; these are its rare turns
        def prepare() -> tuple[int, int, int]:
            self._configure(node_budget)
            return meter.chunk0, meter.extra0, meter.steps

        def failed(exc: BaseException) -> BaseException:
            f = fault(exc, leave())
            meter.arm()  # a guard halt must not outlive its call
            return f

        def not_int(r: Any) -> RuntimeFault:
            return RuntimeFault(f"{name}: accept returned {type(r).__name__}, not an int", FaultReason.BAD_VERDICT)

        entry = _fast.Entry(fast_accept)
        entry.bind(fn, pni, g, meter, lean, enter, leave, self, node_budget, prepare, failed, over, not_int, metered)
        self._fast_entry = entry

    #: the C door the fast path calls (``_fast.c``), or None (it calls ``fast_accept``)
    _fast_entry: Any = None

    def fast_entry(self) -> tuple[int, int] | None:
        """``_fast.c``'s run over ``fast_accept``: a run of capsules crosses in one call."""
        e = self._fast_entry
        return (_fast.RUN, e.state) if e is not None and _fast is not None else None

    def fast_batch_entry(self) -> int | None:
        return _fast.BATCH if self._fast_entry is not None and _fast is not None else None

    def after_fast_run(self) -> None:
        e = self._fast_entry
        fault = e.take_fault() if e is not None else None
        if fault is not None:  # a RuntimeFault of the code, already named by fast_accept
            raise fault

    #: interpreter steps ``fast_accept`` runs used since the node last took them
    fast_steps: int = 0

    def take_fast_usage(self) -> tuple[int, int]:
        steps, self.fast_steps = self.fast_steps, 0
        e = self._fast_entry
        return steps + (e.take_steps() if e is not None else 0), 0

    def _run(self, fn: Any, *args: Any) -> Any:
        """Run an entry other than accept with a full budget; re-entrant calls keep the caller's."""
        g, meter, acct = self._g, self._meter, self._account
        nested = self._active > 0
        if nested:
            saved = (g["_left_"], meter.extra)
        elif self.host.current.budget is not self._budget:
            self._configure(self.host.current.budget)
        meter.arm()
        self._active += 1
        try:
            acct.enter()
            try:
                r = fn(self._pni, *args)
            except BaseException as exc:
                raise self._fault(exc, acct.leave()) from None
            flags = acct.leave()
            if flags:
                f = self._over(flags)
                if f is not None:
                    raise f
            return r
        finally:
            self._active -= 1
            if nested:
                g["_left_"], meter.extra = saved

    def _int_result(self, what: str, r: Any, default: int | None = None) -> int:
        if r is None and default is not None:
            return default
        if type(r) is not int:
            raise RuntimeFault(f"{self.code.short_name}: {what} returned {type(r).__name__}, not an int", FaultReason.CODE_ERROR)
        return r

    def init(self) -> int:
        if self._init is None:
            return 0
        return self._int_result("init", self._run(self._init), 0)

    def finalize(self) -> int:
        if self._finalize is None:
            return 0
        return self._int_result("finalize", self._run(self._finalize), 0)

    def call_export(self, name: str, a0: int, a1: int) -> int:
        fn = self._exports.get(name)
        if fn is None:
            raise RuntimeFault(f"{self.code.short_name}: no export {name!r}", FaultReason.NO_EXPORT)
        return self._int_result(f"export {name}", self._run(fn, a0, a1))

    @property
    def steps_used(self) -> int:
        """Steps the last call used (also written to ``env.usage.steps`` by ``accept``)."""
        return self._meter.used()

    def reset(self) -> None:
        """Re-run the module body into a fresh globals dict (the compiled code is reused).
        The old globals are cleared first: what they held is freed now, not at a later
        collection, and does not count against the new module body's memory."""
        self._g.clear()
        self._instantiate()
        self.needs_reset = False

    def unload(self) -> None:
        self._g.clear()
        self._exports = {}
        self._account.bind(None, None)


_RUNTIME_CODES = (RestrictedPyCode._run.__code__, RestrictedPyCode._instantiate.__code__)


def _drop_frames(exc: BaseException) -> None:
    """Let go of the frames (and so the locals) a failed call left on its exceptions'
    tracebacks: the fault raised instead keeps none of the call's memory alive."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 16:
        e.__traceback__ = None
        e = e.__context__ or e.__cause__
        seen += 1
