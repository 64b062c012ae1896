"""Compile restricted_py source: RestrictedPython's policy, our refusals, then instrumentation.

Three passes over the AST, once per code object:

1. ``PanPolicy`` (RestrictedPython's transformer plus refusals): no imports, classes,
   lambdas, generators, ``print``, starred displays or dynamic format specs; attribute
   reads and item/attribute writes become guard calls.
2. ``Instrumenter``: a step tick at the top of every loop body and comprehension and at
   the entry of every function that can call, ``if _left_ < 0:
   _stop_()`` at the top of every ``except`` handler and ``finally`` block, and guard calls
   for ``*``, ``**``, ``<<``, ``+``, ``%`` and f-strings where they could allocate without
   bound. Guards that buy nothing here are taken out again: subscript reads compile to
   plain subscripts and tuple unpacking to plain unpacking (``_getiter_`` is ``iter``).
3. CPython's ``compile``.

Refusals raise ``CodeObjectError`` naming line and column; a source nested too deeply for
any of the passes (a parser or a recursion limit) is refused with reason ``too_deep``.
"""

from __future__ import annotations

import ast
import re
import types
from dataclasses import dataclass

from RestrictedPython.transformer import RestrictingNodeTransformer

from pan_restricted_py.guards import DENIED_ATTRIBUTES, SIZE_METHODS
from pan_restricted_py.limits import DEFAULT_LIMITS, Limits
from pan_runtime.errors import CodeObjectError, FaultReason

__all__ = ["CompiledSource", "compile_source", "GUARD_NAMES"]

#: globals the instrumented code calls that never run code of the code object itself
GUARD_NAMES = frozenset(
    {"_getattr_", "_getitem_", "_write_", "_getiter_", "_mul_", "_pow_", "_lshift_", "_add_",
     "_mod_", "_fmt_", "_fstr_", "_inplacevar_", "_stop_", "_pace_"}
)
_SAFE_INPLACE = {"-=": ast.Sub(), "/=": ast.Div(), "//=": ast.FloorDiv(), ">>=": ast.RShift(),
                 "&=": ast.BitAnd(), "|=": ast.BitOr(), "^=": ast.BitXor()}
_WIDTH = re.compile(r"(\d+)")


@dataclass(frozen=True)
class CompiledSource:
    """A compiled code object payload: the CPython code and the functions it defines."""

    code: types.CodeType
    filename: str
    functions: tuple[str, ...]


def _where(node: ast.AST) -> str:
    line = getattr(node, "lineno", None)
    col = getattr(node, "col_offset", None)
    return f"line {line}, column {col + 1 if col is not None else '?'}"


class PanPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy with pan's refusals; messages name line and column."""

    def __init__(self, errors: list[str], warnings: list[str], used_names: dict[str, bool], limits: Limits):
        super().__init__(errors, warnings, used_names)
        self.limits = limits

    def error(self, node: ast.AST, info: str) -> None:
        self.errors.append(f"{_where(node)}: {info}")

    def refuse(self, node: ast.AST, what: str) -> None:
        self.error(node, f"{what} not available in restricted_py code")

    def visit_Import(self, node: ast.Import) -> ast.AST:
        self.refuse(node, "imports are")
        self.errors[-1] += "; reach a dependency's exports as deps[i].<export>(a0, a1)"
        return node

    visit_ImportFrom = visit_Import  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.refuse(node, "class definitions are")
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.refuse(node, "lambda is")
        self.errors[-1] += "; use def (function entries are counted, a lambda cannot be)"
        return node

    def visit_Yield(self, node: ast.Yield) -> ast.AST:
        self.refuse(node, "generators (yield) are")
        return node

    visit_YieldFrom = visit_Yield  # type: ignore[assignment]

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("print", "printed"):
            self.refuse(node, f"{node.id!r} is")
            self.errors[-1] += "; use pni.log(level, message)"
            return node
        return super().visit_Name(node)

    def _no_starred(self, node: ast.List | ast.Tuple | ast.Set) -> ast.AST:
        if isinstance(getattr(node, "ctx", ast.Load()), ast.Load) and any(
            isinstance(e, ast.Starred) for e in node.elts
        ):
            self.refuse(node, "starred items in displays are")
        return self.node_contents_visit(node)

    visit_List = visit_Tuple = visit_Set = _no_starred  # type: ignore[assignment]

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        spec = node.format_spec
        if spec is not None:
            if any(isinstance(v, ast.FormattedValue) for v in ast.walk(spec) if v is not spec):
                self.refuse(node, "computed format specs in f-strings are")
            else:
                for v in ast.walk(spec):
                    if isinstance(v, ast.Constant) and isinstance(v.value, str):
                        for w in _WIDTH.findall(v.value):
                            if int(w) > self.limits.max_width:
                                self.error(node, f"format width {w} is more than {self.limits.max_width}")
        return self.node_contents_visit(node)


def _name(id_: str) -> ast.Name:
    return ast.Name(id_, ast.Load())


def _call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(_name(fn), list(args), [])


def _tick_expr() -> ast.expr:
    """``(_left_ := _left_ - 1) < 0``"""
    dec = ast.NamedExpr(ast.Name("_left_", ast.Store()), ast.BinOp(_name("_left_"), ast.Sub(), ast.Constant(1)))
    return ast.Compare(dec, [ast.Lt()], [ast.Constant(0)])


def _tick_stmt() -> ast.stmt:
    return ast.If(_tick_expr(), [ast.Expr(_call("_stop_"))], [])


def _check_stmt() -> ast.stmt:
    """``if _left_ < 0: _stop_()`` — re-raise a halt before a handler runs."""
    test = ast.Compare(_name("_left_"), [ast.Lt()], [ast.Constant(0)])
    return ast.If(test, [ast.Expr(_call("_stop_"))], [])


def _plain_attribute(call: ast.Call) -> bool:
    """Is CALL, ``_getattr_(ob, "name")``, a read the guard would pass unchanged whatever
    ``ob`` is? The guard decides by the name alone: a constant name that is not denied, not
    private and not a method it wraps is read natively (as ``getattr`` would), saving a
    Python call per read; every other read keeps its guard call."""
    if len(call.args) != 2 or call.keywords:
        return False
    name = call.args[1]
    if not isinstance(name, ast.Constant) or type(name.value) is not str:
        return False
    n = name.value
    return n.isidentifier() and n[:1] != "_" and n not in DENIED_ATTRIBUTES and n not in SIZE_METHODS


def _is_num_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


class _Scope:
    __slots__ = ("calls", "needs_global")

    def __init__(self) -> None:
        self.calls = False
        self.needs_global = False


class Instrumenter(ast.NodeTransformer):
    """Adds step ticks, depth counting, handler checks and arithmetic guards."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.scopes: list[_Scope] = [_Scope()]

    # -- scopes ------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        self.scopes.append(_Scope())
        body = []
        for stmt in node.body:
            r = self.visit(stmt)
            body.extend(r if isinstance(r, list) else [r])
        _pace(body)
        scope = self.scopes.pop()
        if scope.calls:
            # a step at every entry of a function that can call: recursion spends steps, and
            # the meter measures the call depth whenever a chunk of steps runs out
            body.insert(0, _tick_stmt())
        if scope.calls or scope.needs_global:
            body.insert(0, ast.Global(["_left_"]))
        node.body = body
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        return super().generic_visit(node)

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self.generic_visit(node)
        _pace(node.body)
        return node

    # -- ticks -------------------------------------------------------------------------
    def _loop(self, node: ast.For | ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, _tick_stmt())
        self.scopes[-1].needs_global = True
        return node

    visit_For = visit_While = _loop  # type: ignore[assignment]

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        # every iteration: (_left_ := _left_ - 1) >= 0 or _stop_()
        tick = ast.BoolOp(ast.Or(), [
            ast.UnaryOp(ast.Not(), _tick_expr()),
            _call("_stop_"),
        ])
        node.ifs.insert(0, tick)
        self.scopes[-1].needs_global = True
        return node

    def visit_Try(self, node: ast.Try) -> ast.AST:
        self.generic_visit(node)
        for h in node.handlers:
            h.body.insert(0, _check_stmt())
        if node.finalbody:
            node.finalbody.insert(0, _check_stmt())
        self.scopes[-1].needs_global = True
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Name):
            if func.id == "_unpack_sequence_":
                return node.args[0]
            if func.id == "_iter_unpack_sequence_":
                return _call("_getiter_", node.args[0])
            if func.id == "_getitem_":
                return ast.Subscript(node.args[0], node.args[1], ast.Load())
            if func.id == "_getattr_" and _plain_attribute(node):
                return ast.copy_location(ast.Attribute(node.args[0], node.args[1].value, ast.Load()), node)  # type: ignore[attr-defined]
            if func.id in GUARD_NAMES:
                return node
        self.scopes[-1].calls = True
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        self.generic_visit(node)
        v = node.value
        # n = _inplacevar_(op, n, value): back to a native augmented assignment when safe
        if (
            isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "_inplacevar_"
            and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            op = v.args[0].value  # type: ignore[attr-defined]
            value = v.args[2]
            native = _SAFE_INPLACE.get(op)
            if native is None and op == "+=" and _is_num_const(value):
                native = ast.Add()
            if native is None and op == "<<=" and self._small_shift(value):
                native = ast.LShift()
            if native is not None:
                return ast.AugAssign(node.targets[0], native, value)
        return node

    # -- arithmetic guards -------------------------------------------------------------
    def _small_shift(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 64

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        op, left, right = node.op, node.left, node.right
        both_const = isinstance(left, ast.Constant) and isinstance(right, ast.Constant)
        if isinstance(op, ast.Mult):
            guard = None if both_const and self._const_ok(node) else "_mul_"
        elif isinstance(op, ast.Pow):
            guard = None if both_const and self._const_ok(node) else "_pow_"
        elif isinstance(op, ast.LShift):
            guard = None if self._small_shift(right) or (both_const and self._const_ok(node)) else "_lshift_"
        elif isinstance(op, ast.Add):
            guard = None if _is_num_const(left) or _is_num_const(right) or both_const else "_add_"
        elif isinstance(op, ast.Mod):
            guard = None if _is_num_const(left) else "_mod_"
        else:
            guard = None
        if guard is None:
            return node
        return ast.copy_location(_call(guard, left, right), node)

    def _const_ok(self, node: ast.BinOp) -> bool:
        a, b = node.left.value, node.right.value  # type: ignore[attr-defined]
        bits = self.limits.max_int_bits
        if type(a) is int and type(b) is int:
            if isinstance(node.op, ast.Pow):
                return b <= 0 or a in (0, 1, -1) or a.bit_length() * b <= bits
            if isinstance(node.op, ast.LShift):
                return b <= 0 or a == 0 or a.bit_length() + b <= bits
            return a.bit_length() + b.bit_length() <= bits
        if isinstance(node.op, ast.Mult):
            for seq, n in ((a, b), (b, a)):
                if isinstance(seq, (str, bytes)) and type(n) is int:
                    return len(seq) * n <= self.limits.max_items
        return isinstance(node.op, ast.Mult) and type(a) is float and type(b) is float

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        if not any(isinstance(v, ast.FormattedValue) for v in node.values):
            return node
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                v.value = _call("_fmt_", self.visit(v.value))
        return ast.copy_location(_call("_fstr_", node), node)


#: straight-line code gets ``if _pace_(): _stop_()`` before the statement that brings the
#: operations since the last one to this many. ``_pace_`` is the account's ``check`` (true
#: once the call is over its time or memory budget); being a call, it is also where the
#: interpreter lets the account's ticker take the GIL (3.11 only switches at calls and
#: backward jumps), so a long run of statements cannot outlast the time budget by much
_PACE = 64
#: a single statement with more operations than this is refused (no tick fits inside one)
_MAX_STATEMENT_OPS = 16 * _PACE
_OPS = (ast.Compare, ast.BinOp, ast.BoolOp, ast.UnaryOp, ast.Call, ast.Subscript, ast.Attribute)
_BLOCKS = ("body", "orelse", "finalbody")


def _ops(node: ast.AST) -> int:
    """Operations in NODE, its nested statement lists included."""
    return sum(isinstance(n, _OPS) for n in ast.walk(node))


def _pace_stmt() -> ast.stmt:
    return ast.If(_call("_pace_"), [ast.Expr(_call("_stop_"))], [])


def _pace(stmts: list[ast.stmt]) -> bool:
    """Insert pace checks into STMTS (and their nested statement lists, not nested functions)
    so that no more than ``_PACE`` operations run between two; True if any was inserted."""
    inserted = False
    since = 0
    i = 0
    while i < len(stmts):
        stmt = stmts[i]
        if isinstance(stmt, ast.FunctionDef):
            i += 1
            continue
        blocks = [getattr(stmt, b) for b in _BLOCKS if isinstance(getattr(stmt, b, None), list)]
        blocks += [h.body for h in getattr(stmt, "handlers", [])]
        for block in blocks:
            inserted |= _pace(block)
        n = _ops(stmt) if not blocks else sum(_ops(v) for f, v in ast.iter_fields(stmt) if f not in (*_BLOCKS, "handlers")
                                              for v in (v if isinstance(v, list) else [v]) if isinstance(v, ast.AST))
        if not blocks and n > _MAX_STATEMENT_OPS:
            raise CodeObjectError(
                f"{_where(stmt)}: a statement of {n} operations, more than {_MAX_STATEMENT_OPS}; split it"
            )
        if since + n > _PACE and since:
            stmts.insert(i, ast.copy_location(_pace_stmt(), stmt))
            inserted = True
            i += 1
            since = 0
        since += n
        i += 1
    return inserted


def compile_source(source: str | bytes, filename: str = "<restricted_py>", limits: Limits = DEFAULT_LIMITS) -> CompiledSource:
    """Check, instrument and compile one code object's source; ``CodeObjectError`` if refused."""
    if isinstance(source, (bytes, bytearray)):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodeObjectError(f"{filename}: source is not UTF-8 (byte {exc.start})") from None
    try:
        return _compile(source, filename, limits)
    except RecursionError:  # a pass (ours, RestrictedPython's, CPython's) nested too deep
        raise _too_deep(filename, "compiling it") from None


def _too_deep(filename: str, where: str) -> CodeObjectError:
    return CodeObjectError(
        f"{filename}: the source nests too deeply to compile (the limit was reached {where}); "
        "split long expressions and deep nesting",
        FaultReason.TOO_DEEP,
    )


def _compile(source: str, filename: str, limits: Limits) -> CompiledSource:
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        raise CodeObjectError(
            f"{filename}: line {exc.lineno}, column {exc.offset}: syntax error: {exc.msg}"
        ) from None
    except MemoryError:  # CPython's parser reports a nesting too deep for its stack this way
        raise _too_deep(filename, "parsing it") from None
    errors: list[str] = []
    PanPolicy(errors, [], {}, limits).visit(tree)
    if errors:
        raise CodeObjectError(f"{filename}: refused: " + "; ".join(errors))
    tree = Instrumenter(limits).visit(tree)
    ast.fix_missing_locations(tree)
    try:
        code = compile(tree, filename, "exec")
    except (SyntaxError, ValueError) as exc:  # a construct our passes cannot express
        raise CodeObjectError(f"{filename}: cannot compile after instrumentation: {exc}") from None
    functions = tuple(n.name for n in tree.body if isinstance(n, ast.FunctionDef))
    return CompiledSource(code, filename, functions)
