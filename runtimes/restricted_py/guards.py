"""Guards and builtins for restricted code: what each step may touch, make and allocate.

RestrictedPython rewrites attribute reads, item and attribute writes, iteration and a few
other operations into calls of ``_getattr_``, ``_write_``, ``_getiter_``, ...; our compiler
adds ``_mul_``, ``_pow_``, ``_lshift_``, ``_add_``, ``_mod_``, ``_fmt_`` and ``_fstr_`` for the
operators that can allocate or compute without bound in one step. ``make_guards`` builds
them per code object, bound to its ``Meter`` so that a violation halts the call for good.

A violation is never an ordinary exception the code could catch: it halts the call and the
runtime reports ``RuntimeFault(reason="guard")``. Ordinary errors (a missing attribute, a
type mismatch) stay ordinary Python exceptions.

Limits are not a sandbox: they make the common ways of exhausting a node in one step fail
fast, they do not prove that no such way is left.
"""

from __future__ import annotations

import builtins as _py
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any

from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from pan_restricted_py.limits import Limits
from pan_restricted_py.meter import Meter
from pan_runtime.errors import PniError

__all__ = ["make_guards", "make_builtins", "DENIED_ATTRIBUTES", "SIZE_METHODS", "EXCEPTIONS"]

#: attributes code may never read, whatever the object
DENIED_ATTRIBUTES = frozenset(
    {"format", "format_map", "translate", "maketrans", "mro", "host", "obj"} | set(INSPECT_ATTRIBUTES)
)
#: methods that can make a big object from small arguments; checked by a wrapper
SIZE_METHODS = frozenset(
    {"join", "ljust", "rjust", "center", "zfill", "expandtabs", "replace", "extend", "to_bytes",
     "encode", "decode", "hex", "sort"}
)
_SIZED = frozenset({str, bytes, bytearray, list, tuple})
#: inputs whose size bulk builtins are charged for: one step per ``1 << _BULK_SHIFT`` items
_BULK = frozenset({str, bytes, bytearray, list, tuple, dict, set, frozenset, range})
_BULK_SHIFT = 6
_BULK_FREE = 1 << 10
_TEXT = frozenset({str, bytes, bytearray})
_INTS = frozenset({int, bool})
_SCALARS = frozenset({int, bool, float, str, bytes, type(None)})
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
#: exception classes code may name, raise and catch
EXCEPTIONS = (
    "ArithmeticError", "AssertionError", "AttributeError", "BaseException", "BufferError",
    "EOFError", "Exception", "IndexError", "KeyError", "LookupError", "MemoryError",
    "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError",
    "StopIteration", "SystemExit", "TypeError", "UnboundLocalError", "UnicodeDecodeError",
    "UnicodeEncodeError", "UnicodeError", "ValueError", "ZeroDivisionError",
)
_PLAIN_BUILTINS = (
    "abs", "all", "any", "bin", "bool", "callable", "chr", "dict", "divmod", "enumerate",
    "filter", "float", "frozenset", "hash", "hex", "id", "int",
    "len", "list", "map", "max", "memoryview", "min", "next", "oct", "ord", "reversed",
    "round", "set", "slice", "sorted", "tuple", "zip",
)
_FORMAT_FIELD = re.compile(rb"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def make_guards(meter: Meter, limits: Limits, writable: Iterable[type]) -> dict[str, Any]:
    """The guard functions for one code object, keyed by the global names code uses."""
    halt = meter.halt
    charge = meter.charge
    max_items = limits.max_items
    max_bits = limits.max_int_bits
    max_args = limits.max_args
    max_width = limits.max_width
    writable_types = frozenset({list, dict, bytearray, *writable})
    formats_ok: set[Any] = set()

    def violation(what: str) -> Any:
        return halt("guard", what)

    def too_long(n: int, what: str) -> None:
        if n > max_items:
            violation(f"{what} would make {n} items, more than the limit of {max_items}")

    def _write_(ob: Any) -> Any:
        if type(ob) in writable_types:
            return ob
        return violation(f"code may not assign to items or attributes of a {type(ob).__name__}")

    plain: set[str] = set()  # names already checked that need no wrapper: one lookup next time

    def _getattr_(ob: Any, name: str) -> Any:
        if name.__class__ is str and name in plain:  # exact str: a subclass could fake equality
            return getattr(ob, name)
        if name in DENIED_ATTRIBUTES or name[:1] == "_":
            violation(f"attribute {name!r} is not available to code")
        if name in SIZE_METHODS:
            if type(ob) in _METHOD_TYPES:
                return _sized_method(ob, name)
        elif name.__class__ is str and len(plain) < 4096:
            plain.add(name)
        return getattr(ob, name)

    def _sized_method(ob: Any, name: str) -> Callable[..., Any]:
        method = getattr(ob, name)
        t = type(ob)
        if name == "join":
            def join(items: Iterable[Any]) -> Any:
                items = list(items)
                n = len(ob) * max(len(items) - 1, 0)
                for i in items:
                    if type(i) in _SIZED:
                        n += len(i)
                too_long(n, "join")
                return method(items)
            return join
        if name in ("ljust", "rjust", "center", "zfill"):
            def pad(width: int, *fill: Any) -> Any:
                too_long(operator.index(width), name)
                return method(width, *fill)
            return pad
        if name == "expandtabs":
            def expand(tabsize: int = 8) -> Any:
                tab = "\t" if t is str else b"\t"
                too_long(len(ob) + ob.count(tab) * max(operator.index(tabsize), 0), name)
                return method(tabsize)
            return expand
        if name == "replace":
            def replace(old: Any, new: Any, count: int = -1) -> Any:
                n = ob.count(old) if len(old) else len(ob) + 1
                if count >= 0:
                    n = min(n, count)
                too_long(len(ob) + n * max(len(new) - len(old), 0), name)
                return method(old, new, count)
            return replace
        if name == "sort":
            def sort(*args: Any, **kw: Any) -> None:
                check_compare(ob, "list.sort()")
                return method(*args, **kw)
            return sort
        if name == "to_bytes":
            def to_bytes(length: int = 1, *args: Any, **kw: Any) -> Any:
                too_long(operator.index(length), name)
                return method(length, *args, **kw)
            return to_bytes

        def checked(*args: Any, **kw: Any) -> Any:
            r = method(*args, **kw)
            if type(r) in _SIZED:
                too_long(len(r), name)
            elif type(ob) in _SIZED:
                too_long(len(ob), name)
            return r
        return checked

    def _apply_(f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if len(args) + len(kw) > max_args:
            violation(f"a call with {len(args) + len(kw)} arguments, more than {max_args}")
        return f(*args, **kw)

    def _mul_(a: Any, b: Any) -> Any:
        ta = type(a)
        tb = type(b)
        if ta in _INTS:
            if tb in _INTS:
                if a.bit_length() + b.bit_length() > max_bits:
                    violation(f"an integer product of more than {max_bits} bits")
                return a * b
            if tb in _SIZED:
                too_long(len(b) * a, "'*'")
        elif tb in _INTS and ta in _SIZED:
            too_long(len(a) * b, "'*'")
        return a * b

    def _pow_(a: Any, b: Any, mod: Any = None) -> Any:
        if type(a) in _INTS and type(b) in _INTS:
            if mod is not None:
                if b.bit_length() > 2048 or operator.index(mod).bit_length() > 2048:
                    violation("modular power with operands over 2048 bits")
                return _py.pow(a, b, mod)
            if b > 0 and a not in (0, 1, -1) and a.bit_length() * b > max_bits:
                violation(f"a power of more than {max_bits} bits")
        if mod is None:
            return a**b
        return _py.pow(a, b, mod)

    def _lshift_(a: Any, b: Any) -> Any:
        if type(a) in _INTS and type(b) in _INTS and b > 0 and a and a.bit_length() + b > max_bits:
            violation(f"a shift to more than {max_bits} bits")
        return a << b

    def _add_(a: Any, b: Any) -> Any:
        r = a + b
        if type(r) in _SIZED and len(r) > max_items:
            too_long(len(r), "'+'")
        return r

    def check_format(fmt: Any) -> None:
        key = fmt if len(fmt) < 256 else None
        if key is not None and key in formats_ok:
            return
        raw = fmt.encode("utf-8", "replace") if type(fmt) is str else bytes(fmt)
        for m in _FORMAT_FIELD.finditer(raw):
            for part in m.groups():
                if part == b"*":
                    violation("'*' widths in % formats are not available to code")
                if part is not None and int(part) > max_width:
                    violation(f"a % format width of {int(part)}, more than {max_width}")
        if key is not None and len(formats_ok) < 1024:
            formats_ok.add(key)

    def _mod_(a: Any, b: Any) -> Any:
        if type(a) in _TEXT:
            check_format(a)
            render_size(b)
            r = a % b
            too_long(len(r), "'%'")
            return r
        return a % b

    def render_size(x: Any) -> None:
        """Refuse values whose text form would be huge (shared nested containers)."""
        if type(x) not in _CONTAINERS:
            return
        count = 0
        stack = [x]
        while stack:
            v = stack.pop()
            t = type(v)
            if t in _CONTAINERS:
                items = v.items() if t is dict else v
                count += len(v)
                if count > max_items:
                    violation(f"rendering a container of more than {max_items} items")
                if t is dict:
                    for k, w in items:
                        stack.append(k)
                        stack.append(w)
                else:
                    stack.extend(items)
            elif t in _TEXT:
                count += len(v)
                if count > max_items:
                    violation(f"rendering more than {max_items} characters")

    def _fmt_(x: Any) -> Any:
        if type(x) not in _SCALARS:
            render_size(x)
        return x

    def _fstr_(s: str) -> str:
        too_long(len(s), "an f-string")
        return s

    def _inplacevar_(op: str, x: Any, y: Any) -> Any:
        if op == "+=":
            r = operator.iadd(x, y)
            if type(r) in _SIZED:
                too_long(len(r), "'+='")
            return r
        if op == "*=":
            _mul_(x, y) if type(x) in _INTS and type(y) in _INTS else _check_repeat(x, y)
            return operator.imul(x, y)
        special = _SPECIAL_INPLACE.get(op)
        if special is not None:
            return guards[special](x, y)
        return _INPLACE[op](x, y)

    def _check_repeat(x: Any, y: Any) -> None:
        if type(x) in _SIZED and type(y) in _INTS:
            too_long(len(x) * y, "'*='")

    def guarded_range(*args: int) -> range:
        r = range(*args)
        try:
            n = len(r)
        except OverflowError:
            n = max_items + 1
        too_long(n, "range()")
        return r

    def sized_ctor(ctor: type) -> Callable[..., Any]:
        def make(*args: Any, **kw: Any) -> Any:
            if args:
                a = args[0]
                if type(a) in _INTS:
                    too_long(a, f"{ctor.__name__}()")
                elif type(a) in _BULK and len(a) > _BULK_FREE:
                    charge(len(a) >> _BULK_SHIFT)
            return ctor(*args, **kw)
        make.__name__ = ctor.__name__
        return make

    ctors = {bytes: sized_ctor(bytes), bytearray: sized_ctor(bytearray)}

    def guarded_pow(a: Any, b: Any, mod: Any = None) -> Any:
        return _pow_(a, b, mod)

    def guarded_sum(items: Iterable[Any], start: Any = 0) -> Any:
        if type(start) not in (int, float, bool):
            violation("sum() with a non-numeric start; use join or a loop")
        if type(items) in _BULK and len(items) > _BULK_FREE:  # type: ignore[arg-type]
            charge(len(items) >> _BULK_SHIFT)  # type: ignore[arg-type]
        return _py.sum(items, start)

    def bulk(fn: Callable[..., Any]) -> Callable[..., Any]:
        """FN charged one step per 64 items of a big sized first argument."""
        def call(*args: Any, **kw: Any) -> Any:
            if args and type(args[0]) in _BULK:
                n = len(args[0])
                if n > _BULK_FREE:
                    charge(n >> _BULK_SHIFT)
            return fn(*args, **kw)
        call.__name__ = fn.__name__
        return call

    def check_compare(items: Any, what: str) -> None:
        """Refuse ordering ITEMS when that could take long in one step: more than
        ``max_items`` of them, or containers whose items (all the way down, shared ones
        counted each time) add up to more than ``max_items``, since every comparison of
        two containers walks them. Charge one step per 64 items."""
        if type(items) not in _BULK:
            return
        n = len(items)
        if n > max_items:
            violation(f"{what} of {n} items, more than the limit of {max_items}")
        if n > _BULK_FREE:
            charge(n >> _BULK_SHIFT)
        if n > 1 and not _CONTAINERS.isdisjoint(map(type, items.values() if type(items) is dict else items)):
            count = 0
            stack = list(items)
            while stack:
                v = stack.pop()
                if type(v) in _CONTAINERS:
                    count += len(v)
                    if count > max_items:
                        violation(f"{what} of containers holding more than {max_items} items in all")
                    stack.extend(v.values() if type(v) is dict else v)

    def compared(fn: Callable[..., Any]) -> Callable[..., Any]:
        """FN (sorted, min, max) refused on what ``check_compare`` refuses."""
        what = f"{fn.__name__}()"

        def call(*args: Any, **kw: Any) -> Any:
            if len(args) == 1:
                check_compare(args[0], what)
            elif len(args) > 1:
                check_compare(args, what)
            return fn(*args, **kw)
        call.__name__ = fn.__name__
        return call

    def guarded_str(*args: Any, **kw: Any) -> str:
        if args:
            _fmt_(args[0])
        return str(*args, **kw)

    def guarded_repr(x: Any) -> str:
        _fmt_(x)
        return repr(x)

    bulk_fns = {name: bulk(getattr(_py, name)) for name in _BULK_BUILTINS}
    bulk_fns.update({name: compared(getattr(_py, name)) for name in _COMPARING_BUILTINS})
    real_types = {guarded_range: range, guarded_str: str}
    for name in _BULK_BUILTINS:
        if isinstance(getattr(_py, name), type):
            real_types[bulk_fns[name]] = getattr(_py, name)
    for t in (bytes, bytearray):
        real_types[ctors[t]] = t

    def real(t: Any) -> Any:
        if type(t) is tuple:
            return tuple(real_types.get(x, x) for x in t)
        return real_types.get(t, t)

    def guarded_isinstance(x: Any, t: Any) -> bool:
        return isinstance(x, real(t))

    def guarded_issubclass(x: Any, t: Any) -> bool:
        return issubclass(real(x), real(t))

    guards: dict[str, Any] = {
        "_getattr_": _getattr_,
        "_getitem_": operator.getitem,
        "_write_": _write_,
        "_getiter_": iter,
        "_apply_": _apply_,
        "_mul_": _mul_,
        "_pow_": _pow_,
        "_lshift_": _lshift_,
        "_add_": _add_,
        "_mod_": _mod_,
        "_fmt_": _fmt_,
        "_fstr_": _fstr_,
        "_inplacevar_": _inplacevar_,
        "range": guarded_range,
        "bytes": ctors[bytes],
        "bytearray": ctors[bytearray],
        "isinstance": guarded_isinstance,
        "issubclass": guarded_issubclass,
        "pow": guarded_pow,
        "sum": guarded_sum,
        "str": guarded_str,
        "repr": guarded_repr,
        **bulk_fns,
    }
    return guards


#: builtins that compare items: refused on too many, or on containers too big to compare in one step
_COMPARING_BUILTINS = ("sorted", "min", "max")
_BULK_BUILTINS = ("sorted", "min", "max", "list", "tuple", "set", "frozenset", "dict", "any", "all")
_METHOD_TYPES = frozenset({str, bytes, bytearray, list, int})
_SPECIAL_INPLACE = {"**=": "_pow_", "<<=": "_lshift_", "%=": "_mod_"}
_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "-=": operator.isub,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def make_builtins(guards: dict[str, Any]) -> dict[str, Any]:
    """The ``__builtins__`` of restricted code: plain safe builtins plus guarded ones."""
    b: dict[str, Any] = {name: getattr(_py, name) for name in _PLAIN_BUILTINS}
    for name in EXCEPTIONS:
        b[name] = getattr(_py, name)
    for name in ("range", "bytes", "bytearray", "pow", "sum", "str", "repr", "isinstance", "issubclass",
                 *_BULK_BUILTINS):
        b[name] = guards[name]
    b["PniError"] = PniError
    b["True"] = True
    b["False"] = False
    b["None"] = None
    return b
