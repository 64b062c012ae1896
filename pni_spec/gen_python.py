"""Render ``pan_runtime/pni_api.py``: the Python face of the PNI for code objects and runtimes."""

from __future__ import annotations

from pni_spec.gen_common import BANNER, groups, outputs, wrap
from pni_spec.spec import Call, Spec

PY_TYPES = {
    "i32": "int", "u32": "int", "i64": "int", "u64": "int", "handle": "int", "link": "int",
    "bytes_in": "bytes", "addr_in": "bytes",
}


def py_params(call: Call) -> list[tuple[str, str, str]]:
    """(python name, python type, spec type) of each argument a Python caller passes."""
    outs = [p for p in call.params if p.type == "bytes_out"]
    names = {p.name for p in call.params}
    out = []
    for p in call.params:
        if p.type == "bytes_out":
            name = "length" if len(outs) == 1 and "length" not in names else f"{p.name}_length"
            out.append((name, "int", p.type))
        elif p.type in ("addr_out", "name_out"):
            continue
        else:
            out.append((p.name, PY_TYPES[p.type], p.type))
    return out


def _returns(call: Call) -> str:
    outs = outputs(call)
    if not outs:
        return "int"
    if len(outs) == 1:
        return "bytes"
    return "tuple[" + ", ".join("bytes" for _ in outs) + "]"


def _docstring(call: Call, indent: str) -> list[str]:
    text = call.doc
    outs = outputs(call)
    if outs:
        text += " The Python binding returns " + " and ".join(
            f"the bytes written to {p.name.upper()}" for p in outs
        ) + "."
    errs = ", ".join(call.errors) or "none"
    text += f" Raises PniError on: {errs}."
    lines = wrap(text, 96, indent)
    lines[0] = indent + '"""' + lines[0][len(indent):]
    if len(lines) == 1 and len(lines[0]) < 104:
        lines[0] += '"""'
    else:
        lines.append(indent + '"""')
    return lines


def _protocol_method(call: Call) -> list[str]:
    args = ", ".join(f"{n}: {t}" for n, t, _ in py_params(call))
    sig = f"    def {call.name}(self{', ' if args else ''}{args}) -> {_returns(call)}:"
    return [sig, *_docstring(call, "        "), "        ..."]


def _host_method(call: Call, sizes: dict[str, int]) -> list[str]:
    params = py_params(call)
    args = ", ".join(n for n, _, _ in params)
    o = [f"    def {call.name}(self{', ' if args else ''}{args}):"]
    host_args = []
    bufs = []
    pyname = iter(params)
    for p in call.params:
        if p.type in ("addr_out", "name_out"):
            buf = f"{p.name}_buf"
            o.append(f"        {buf} = bytearray({sizes[p.type]})")
            host_args.append(f"memoryview({buf})")
            bufs.append((buf, p.type))
            continue
        n, _, t = next(pyname)
        if t == "bytes_out":
            buf = f"{p.name}_buf"
            o.append(f"        {buf} = bytearray({n})")
            host_args.append(f"memoryview({buf})")
            bufs.append((buf, t))
        else:
            host_args.append(n)
    o.append(f"        r = self.{call.name}_impl({', '.join(host_args)})")
    o.append("        if r < 0:")
    o.append(f"            raise _error({call.name!r}, r)")
    if not bufs:
        o.append("        return r")
        return o
    rets = []
    for buf, t in bufs:
        if t == "bytes_out":
            # the result is the count copied (seg_read) or the full length (state_get): keep what was filled
            o.append(f"        if r < len({buf}):")
            o.append(f"            {buf} = {buf}[:r]")
        rets.append(f"bytes({buf})")
    o.append(f"        return {', '.join(rets)}")
    return o


def render_python(spec: Spec) -> str:
    public = ["PNI_VERSION", "PNI_VERSION_MAJOR", "PNI_VERSION_MINOR", "WASM_MODULE", "PARAM_SIZES"]
    public += ["STATUS", "STATUS_NAMES"]
    public += [s.name for s in spec.statuses]
    public += ["VERDICTS", *[v.name for v in spec.verdicts]]
    public += [v.name.lower() for v in spec.verdicts if v.arg]
    public += ["verdict_kind", "verdict_arg", "CALLS", "ENTRIES", "REQUIRED_ENTRIES", "PNI", "HostPNI"]
    public += ["PniError"]
    o = [
        f'"""{BANNER}',
        "",
        f"The PAN Node Interface {spec.version} for Python: constants, call and entry tables for runtimes,",
        "the ``PNI`` protocol that Python code objects program against, ``HostPNI`` (that protocol over",
        "a ``pan_runtime.node.pni.PniServer``). Protocols' header codecs come from their own header specs.",
        "Reference: docs/pni-reference.md.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Protocol",
        "",
        "from pan_runtime.errors import PniError",
        "",
        "__all__ = [",
        *[f"    {n!r}," for n in public],
        "]",
        "",
        f"PNI_VERSION = {spec.version!r}",
        f"PNI_VERSION_MAJOR = {spec.major}",
        f"PNI_VERSION_MINOR = {spec.minor}",
        f"WASM_MODULE = {spec.wasm_module!r}",
        "#: bytes at the pointer of each parameter type that carries no length",
        "PARAM_SIZES = {" + ", ".join(f"{t!r}: {n}" for t, n in spec.sizes) + "}",
        "",
        "# ---- statuses: negative results of calls ----",
        "",
    ]
    for s in spec.statuses:
        o.append(f"{s.name} = {s.value}")
        o.append(f'"""{s.doc}"""')
    o.append("")
    o.append("STATUS = {" + ", ".join(f"{s.name!r}: {s.value}" for s in spec.statuses) + "}")
    o[-1:] = _wrap_dict(o[-1])
    o.append("STATUS_NAMES = {value: name for name, value in STATUS.items()}")
    o += ["", "# ---- verdicts: what accept returns (kind in the low byte, argument above) ----", ""]
    for v in spec.verdicts:
        o.append(f"{v.name} = {v.value}")
        o.append(f'"""{v.doc}"""')
    o.append("")
    o.append("VERDICTS = {" + ", ".join(f"{v.name!r}: {v.value}" for v in spec.verdicts) + "}")
    o.append("#: the largest verdict argument that keeps the i32 verdict non-negative")
    o.append("_ARG_MAX = 0x7FFFFF")
    for v in spec.verdicts:
        if not v.arg:
            continue
        o += ["", ""]
        o.append(f"def {v.name.lower()}({v.arg}: int) -> int:")
        o.append(f'    """The {v.name} verdict with argument {v.arg.upper()}."""')
        o.append(f"    if {v.arg} < 0 or {v.arg} > _ARG_MAX:")
        o.append(f"        raise PniError(f\"{v.name.lower()}({{{v.arg}}}): argument outside 0..{{_ARG_MAX}}\", BAD_ARGUMENT)")
        o.append(f"    return {v.name} | ({v.arg} << 8)")
    o += [
        "",
        "",
        "def verdict_kind(verdict: int) -> int:",
        '    """The kind (low byte) of a verdict."""',
        "    return verdict & 0xFF",
        "",
        "",
        "def verdict_arg(verdict: int) -> int:",
        '    """The argument (bits above the low byte) of a verdict."""',
        "    return verdict >> 8",
        "",
        "",
        "# ---- calls and entry points, for runtimes that bind them without reading TOML ----",
        "# (name, ((param name, param type), ...), result type)",
        "",
        "CALLS = (",
    ]
    for c in spec.calls:
        params = "".join(f"({p.name!r}, {p.type!r}), " for p in c.params).rstrip(" ")
        o.append(f"    ({c.name!r}, ({params}), {c.result!r}),")
    o.append(")")
    o.append("ENTRIES = (")
    for e in spec.entries:
        params = "".join(f"({p.name!r}, {p.type!r}), " for p in e.params).rstrip(" ")
        o.append(f"    ({e.name!r}, ({params}), {e.result!r}),")
    o.append(")")
    o.append("REQUIRED_ENTRIES = (" + "".join(f"{e.name!r}, " for e in spec.entries if e.required).rstrip(" ") + ")")
    o += [
        "",
        "",
        "def _error(call: str, status: int) -> PniError:",
        '    name = STATUS_NAMES.get(status, "unknown status")',
        '    return PniError(f"pni.{call} failed with {name} ({status})", status)',
        "",
        "",
        "class PNI(Protocol):",
        '    """The node interface as Python code objects see it.',
        "",
        "    Scalars and handles are ints; byte ranges going in are bytes-like; a ``bytes_out``",
        "    parameter becomes a ``length`` and the call returns the bytes filled; node addresses",
        "    and code names are returned as ``bytes``. A negative status raises ``PniError``",
        "    whose ``status`` is the spec's code.",
        '    """',
    ]
    for group, calls in groups(spec):
        o += ["", f"    # -- {group} --"]
        for c in calls:
            o.append("")
            o += _protocol_method(c)
    o += [
        "",
        "",
        "class HostPNI:",
        '    """``PNI`` over a ``pan_runtime.node.pni.PniServer``: marshals, then raises on negative statuses.',
        "",
        "    The host's bound methods are looked up once, here; each call costs one Python call into",
        "    the host plus the output buffer it fills.",
        '    """',
        "",
        "    __slots__ = (\"host\", " + ", ".join(f"\"{c.name}_impl\"" for c in spec.calls) + ")",
    ]
    o[-1:] = _wrap_tuple(o[-1])
    o += ["", "    def __init__(self, host) -> None:", "        self.host = host"]
    for c in spec.calls:
        o.append(f"        self.{c.name}_impl = host.{c.name}")
    for c in spec.calls:
        o.append("")
        o += _host_method(c, dict(spec.sizes))
    o.append("")
    return "\n".join(o)


def _wrap_dict(line: str) -> list[str]:
    """Break a long one-line literal ``X = {a, b}`` into one item per line."""
    if len(line) <= 100:
        return [line]
    head, _, body = line.partition("{")
    items = body[:-1].split(", ")
    return [head + "{", *(f"    {i}," for i in items), "}"]


def _wrap_tuple(line: str) -> list[str]:
    if len(line) <= 100:
        return [line]
    head, _, body = line.partition("(")
    items = body[:-1].split(", ")
    indent = head[: len(head) - len(head.lstrip())]
    return [head + "(", *(f"{indent}    {i}," for i in items if i), f"{indent})"]
