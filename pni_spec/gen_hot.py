"""Generate the shortcuts of the PNI's hot calls: the calls marked ``hot`` in ``pni.toml``.

The node's UDP fast path runs a capsule's code without building its environment; the calls
such code makes most are then answered from the capsule body (handle 1) or from the fast
path's context (``pan_fast.h``), with exactly the statuses of the node's ``PniServer``. Each
runtime needs those answers in its own language, so they are generated here, once:

* ``pan_runtime/include/pni_hot.h``: static inline C over one body descriptor
  (``pni_hot_body``), for ``runtimes/native/support.c``, ``runtimes/wasm/_fast.c`` and the
  node's ``_fastpath.c``;
* ``runtimes/jvm/java/org/pan/jvm/PniHot.java``: the abstract base of the jvm's PNI bridge;
* ``pan_runtime/pni_hot.py``: ``BodyHost``, the host of code run from Python (restricted_py);
* ``pan_runtime/include/pni_hot_py.h``: the direct forms of ``BodyHost.direct_calls`` as C
  methods (CPython's API) over a ``BodyHost``, for ``runtimes/restricted_py/_fast.c``: the
  same answers and the same fall-backs, without a Python frame per call.

What a call does is its ``hot`` kind (``spec.HOT_KINDS``); the generator refuses a mark on
a call whose parameters do not fit the kind.
"""

from __future__ import annotations

from pni_spec.gen_c import c_params
from pni_spec.gen_common import BANNER, BANNER_ASCII, camel
from pni_spec.gen_java import java_params
from pni_spec.spec import Call, Spec, SpecError

__all__ = ["HOT_PATHS", "hot_calls", "render_hot"]

#: where the generated files go, relative to the repository root
HOT_PATHS = {
    "c": "pan_runtime/include/pni_hot.h",
    "java": "runtimes/jvm/java/org/pan/jvm/PniHot.java",
    "python": "pan_runtime/pni_hot.py",
    "cpython": "pan_runtime/include/pni_hot_py.h",
}
#: byte offsets of pan_fast_ctx's fields (include/pan_fast.h; pni_hot.h asserts them)
CTX_OFFSETS = {"origin_kind": 0, "has_prev_hop": 4, "node_address": 8, "prev_hop": 24}
#: parameter types each kind takes after the body handle (body kinds) or alone (context kinds)
_SHAPES = {
    "length": ("handle",),
    "read": ("handle", "u32", "bytes_out"),
    "write": ("handle", "u32", "bytes_in"),
    "get": ("handle", "u32"),
    "set": ("handle", "u32", "u32"),
    "origin_kind": (),
    "prev_hop": ("addr_out",),
    "node_address": ("addr_out",),
}
_CONTEXT = ("origin_kind", "prev_hop", "node_address")


def _base(call: Call) -> tuple[str, int]:
    """(kind without width, width in bytes or 0)."""
    for k in ("get", "set"):
        if call.hot.startswith(k):
            return k, int(call.hot[len(k):]) // 8
    return call.hot, 0


def hot_calls(spec: Spec) -> list[Call]:
    """The calls marked hot, in spec order, each checked against its kind's shape."""
    out = [c for c in spec.calls if c.hot]
    for c in out:
        kind, _ = _base(c)
        if tuple(p.type for p in c.params) != _SHAPES[kind]:
            raise SpecError(f"[[call]] {c.name}: hot = {c.hot!r} needs parameters of types {_SHAPES[kind]}")
    return out


def _status(spec: Spec, name: str) -> int:
    return spec.status_value(name)


# -- C ----------------------------------------------------------------------------------------
def _c_call(call: Call) -> list[str]:
    kind, width = _base(call)
    ctype = "int64_t" if call.result == "i64" else "int32_t"
    rest = c_params(call.params[1:]) if kind not in _CONTEXT else c_params(call.params)
    args = "const pni_hot_body *b" + ("" if rest == "void" else f", {rest}")
    head = f"static inline {ctype} pni_hot_{call.name}({args}) {{"
    p = [x.name for x in call.params]
    oor = "return PNI_OUT_OF_RANGE;"
    if kind == "length":
        body = [f"    return ({ctype})b->length;"]
    elif kind in ("read", "write"):
        off, buf = p[1], p[2]
        copy = (f"__builtin_memcpy({buf}, b->data + {off}, {buf}_len);" if kind == "read"
                else f"__builtin_memcpy(b->data + {off}, {buf}, {buf}_len);")
        body = [
            f"    if ((uint64_t){off} + {buf}_len > b->length || ({buf} == 0 && {buf}_len != 0)) {oor}",
            f"    {copy}",
            f"    return ({ctype}){buf}_len;",
        ]
    elif kind == "get":
        off = p[1]
        body = [
            f"    if ((uint64_t){off} + {width} > b->length) {oor}",
            "    uint64_t v = 0;",
            f"    for (uint32_t i = 0; i < {width}; i++) v = (v << 8) | b->data[{off} + i];",
            f"    return ({ctype})v;",
        ]
    elif kind == "set":
        off, val = p[1], p[2]
        body = [f"    if ((uint64_t){off} + {width} > b->length) {oor}"]
        if width < 4:
            body.append(f"    if ({val} > 0x{(1 << (8 * width)) - 1:x}u) return PNI_BAD_ARGUMENT;")
        body += [
            f"    for (int i = {width - 1}; i >= 0; i--, {val} >>= 8) b->data[{off} + (uint32_t)i] = (uint8_t){val};",
            "    return PNI_OK;",
        ]
    elif kind == "origin_kind":
        body = [f"    return ({ctype})b->ctx->origin_kind;"]
    else:
        dst = p[0]
        body = [f"    if ({dst} == 0) {oor}"]
        if kind == "prev_hop":
            body.append("    if (!b->ctx->has_prev_hop) return PNI_NOT_FOUND;")
        body += [f"    __builtin_memcpy({dst}, b->ctx->{kind}, PNI_ADDR_SIZE);", "    return PNI_OK;"]
    where = "B's body (call it when pni_hot_on_body)" if kind not in _CONTEXT else "B's context (call it when pni_hot_in_context)"
    return [f"/* {call.name}, answered from {where} */", head, *body, "}", ""]


def _render_c(spec: Spec, calls: list[Call]) -> str:
    asserts = [
        f"_Static_assert(__builtin_offsetof(pan_fast_ctx, {f}) == {o}, \"pan_fast_ctx layout\");"
        for f, o in CTX_OFFSETS.items()
    ]
    out = [
        f"/* {BANNER}",
        " * pni_hot.h, by pni_spec/gen_hot.py: the PNI's hot calls answered without the node.",
        " * The calls marked `hot` in the spec, answered from one body",
        " * descriptor (the capsule body and the fast path's context) with the statuses of the",
        " * node's PniServer. A caller checks pni_hot_on_body / pni_hot_in_context first and",
        " * otherwise asks the host. Freestanding: no libc header.",
        " */",
        "#ifndef PAN_PNI_HOT_H",
        "#define PAN_PNI_HOT_H",
        "",
        '#include "pni.h"',
        '#include "pan_fast.h"',
        "",
        *asserts,
        "",
        "/* What a hot call is answered from. */",
        "typedef struct pni_hot_body {",
        "    uint8_t *data;            /* the capsule body; 0: segment calls go to the host */",
        "    uint64_t length;          /* its length in bytes */",
        "    const pan_fast_ctx *ctx;  /* the fast path's context; 0: environment calls go to the host */",
        "} pni_hot_body;",
        "",
        "#define PNI_HOT_BODY_HANDLE 1u",
        "",
        "/* 1 when a segment call on SEG is answered from B's body */",
        "static inline int pni_hot_on_body(const pni_hot_body *b, pni_handle_t seg) {",
        "    return seg == PNI_HOT_BODY_HANDLE && b->data != 0;",
        "}",
        "",
        "/* 1 when an environment call is answered from B's context */",
        "static inline int pni_hot_in_context(const pni_hot_body *b) { return b->ctx != 0; }",
        "",
    ]
    for c in calls:
        out += _c_call(c)
    out += ["#endif", ""]
    return "\n".join(out)


# -- Java -------------------------------------------------------------------------------------
def _java_call(call: Call) -> list[str]:
    kind, width = _base(call)
    jtype = "long" if call.result == "i64" else "int"
    name = camel(call.name)
    params = java_params(call.params)
    names = [camel(p.name) for p in call.params]
    fwd = []
    for p in call.params:
        n = camel(p.name)
        fwd += [n, f"{n}Off", f"{n}Len"] if p.type in ("bytes_in", "bytes_out") else [n]
    host = f"host().{name}({', '.join(fwd)})"
    oor = "return PniStatus.OUT_OF_RANGE;"
    out = ["    @Override", f"    public final {jtype} {name}({params}) {{"]
    if kind == "length":
        out.append(f"        return fast({names[0]}) ? len : {host};")
    elif kind in ("read", "write"):
        off, buf = names[1], names[2]
        op = "get" if kind == "read" else "put"
        out += [
            f"        if (!fast({names[0]})) return {host};",
            f"        if (!arrayOk({buf}, {buf}Off, {buf}Len) || !inside({off}, {buf}Len)) {oor}",
            f"        body.{op}(base + {off}, {buf}, {buf}Off, {buf}Len);",
            f"        return {buf}Len;",
        ]
    elif kind == "get":
        off = names[1]
        read = {1: "body.get(base + {o}) & 0xff", 2: "body.getShort(base + {o}) & 0xffff",
                4: "body.getInt(base + {o}) & 0xffffffffL"}[width].format(o=off)
        out += [f"        if (!fast({names[0]})) return {host};", f"        if (!inside({off}, {width})) {oor}",
                f"        return {read};"]
    elif kind == "set":
        off, val = names[1], names[2]
        put = {1: "body.put(base + {o}, (byte) {v})", 2: "body.putShort(base + {o}, (short) {v})",
               4: "body.putInt(base + {o}, {v})"}[width].format(o=off, v=val)
        out += [f"        if (!fast({names[0]})) return {host};", f"        if (!inside({off}, {width})) {oor}"]
        if width < 4:
            out.append(f"        if (({val} & ~0x{(1 << (8 * width)) - 1:x}) != 0) return PniStatus.BAD_ARGUMENT;")
        out += [f"        {put};", "        return PniStatus.OK;"]
    elif kind == "origin_kind":
        out.append(f"        return fastOn ? fastCtx.getInt({CTX_OFFSETS['origin_kind']}) : {host};")
    else:
        dst = names[0]
        out += [f"        if (!fastOn) return {host};", f"        if (!arrayOk({dst}, 0, 16)) {oor}"]
        if kind == "prev_hop":
            out.append(f"        if (fastCtx.getInt({CTX_OFFSETS['has_prev_hop']}) == 0) return PniStatus.NOT_FOUND;")
        out += [f"        fastCtx.get({CTX_OFFSETS[kind]}, {dst}, 0, 16);", "        return PniStatus.OK;"]
    return [*out, "    }", ""]


def _render_java(spec: Spec, calls: list[Call]) -> str:
    out = [
        f"// {BANNER_ASCII}",
        "// Generator: pni_spec/gen_hot.py.",
        "package org.pan.jvm;",
        "",
        "import java.nio.ByteBuffer;",
        f"import {spec.java_package}.PNI;",
        f"import {spec.java_package}.PniStatus;",
        "",
        "/**",
        " * The PNI's hot calls answered in Java: segment calls on the capsule body (handle 1) from the",
        " * direct buffer over the node's memory, environment calls from the node's UDP fast path's",
        " * context (little-endian pan_fast_ctx) while fastOn. Everything else goes to host().",
        " */",
        "abstract class PniHot implements PNI {",
        "    static final int BODY = 1;",
        "",
        "    ByteBuffer body; // null: the body is not directly mapped; use the host",
        "    int base;",
        "    int len;",
        "    boolean fastOn;",
        "    ByteBuffer fastCtx;",
        "",
        "    /** Where every call not answered here goes. */",
        "    abstract PNI host();",
        "",
        "    final void setBody(ByteBuffer b, int offset, int length) {",
        "        body = b;",
        "        base = offset;",
        "        len = length;",
        "    }",
        "",
        "    final boolean fast(int seg) {",
        "        return seg == BODY && body != null;",
        "    }",
        "",
        "    final boolean inside(int offset, int n) {",
        "        return offset >= 0 && n >= 0 && offset <= len - n;",
        "    }",
        "",
        "    static boolean arrayOk(byte[] a, int off, int n) {",
        "        return a != null && off >= 0 && n >= 0 && off <= a.length - n;",
        "    }",
        "",
    ]
    for c in calls:
        out += _java_call(c)
    out[-1:] = ["}", ""]
    return "\n".join(out)


# -- Python -----------------------------------------------------------------------------------
def _py_call(call: Call, st: dict[str, int]) -> list[str]:
    kind, width = _base(call)
    p = [x.name for x in call.params]
    sig = ", ".join(["self", *(f"{n}: {'int' if t in ('handle', 'u32') else 'Any'}"
                               for n, t in zip(p, (x.type for x in call.params), strict=True))])
    out = [f"    def {call.name}({sig}) -> int:"]
    fwd = f"return int(self._server().{call.name}({', '.join(p)}))"
    if kind not in _CONTEXT:
        out += ["        body = self.body",
                f"        if {p[0]}.__class__ is not int or {p[0]} != {st['BODY']} or body is None:  # the server's handles are ints",
                f"            {fwd}"]
    else:
        out += ["        if self.body is None:", f"            {fwd}"]
    oor = f"return {st['OUT_OF_RANGE']}  # OUT_OF_RANGE"
    if kind == "length":
        out.append("        return len(body)")
    elif kind in ("read", "write"):
        off, buf = p[1], p[2]
        copy = f"{buf}[:] = body[{off} : {off} + n]" if kind == "read" else f"body[{off} : {off} + n] = {buf}"
        out += [f"        n = len({buf})", f"        if {off} < 0 or {off} + n > len(body):", f"            {oor}",
                f"        {copy}", "        return n"]
    elif kind == "get":
        off = p[1]
        out += [f"        if {off} < 0 or {off} + {width} > len(body):", f"            {oor}",
                f'        return int.from_bytes(body[{off} : {off} + {width}], "big")']
    elif kind == "set":
        off, val = p[1], p[2]
        out += [f"        if {off} < 0 or {off} + {width} > len(body):", f"            {oor}"]
        if width < 4:
            out += [f"        if not 0 <= {val} < {1 << (8 * width)}:",
                    f"            return {st['BAD_ARGUMENT']}  # BAD_ARGUMENT"]
        else:
            out.append(f"        {val} &= 0xFFFFFFFF")
        out += [f'        body[{off} : {off} + {width}] = {val}.to_bytes({width}, "big")', f"        return {st['OK']}  # OK"]
    elif kind == "origin_kind":
        out.append("        return self.origin_kind")
    else:
        dst = p[0]
        src = "self.prev_hop" if kind == "prev_hop" else "self.node_address_raw"
        if kind == "prev_hop":
            out += ["        if not self.prev_hop:", f"            return {st['NOT_FOUND']}  # NOT_FOUND"]
        out += [f"        data = {src}", f"        if len({dst}) < len(data):", f"            {oor}",
                f"        {dst}[: len(data)] = data", f"        return {st['OK']}  # OK"]
    return [*out, ""]


def _py_direct(call: Call) -> list[str] | None:
    """The direct (``pni_api``-shaped) form of CALL inside ``direct_calls``, or None for calls
    that keep going through ``pni_api.HostPNI`` (writes: their argument checks live there)."""
    kind, width = _base(call)
    n = call.name
    if kind == "length":
        return [f"        def {n}(seg: int) -> int:", "            body = host.body",
                f"            return len(body) if seg.__class__ is int and seg == 1 and body is not None else slow_{n}(seg)  # type: ignore[no-any-return]"]
    if kind == "read":
        return [f"        def {n}(seg: int, offset: int, length: int) -> bytes:", "            body = host.body",
                "            if (", "                seg.__class__ is int and seg == 1 and body is not None and offset.__class__ is int",
                "                and length.__class__ is int",
                "                and 0 <= offset and 0 <= length and offset + length <= len(body)", "            ):",
                "                return bytes(body[offset : offset + length])",
                f"            return slow_{n}(seg, offset, length)  # type: ignore[no-any-return]"]
    if kind == "get":
        return [f"        def {n}(seg: int, offset: int) -> int:", "            body = host.body",
                "            if (seg.__class__ is int and seg == 1 and body is not None and offset.__class__ is int and 0 <= offset",
                f"                    and offset + {width} <= len(body)):",
                f'                return int.from_bytes(body[offset : offset + {width}], "big")',
                f"            return slow_{n}(seg, offset)  # type: ignore[no-any-return]"]
    if kind == "origin_kind":
        return [f"        def {n}() -> int:",
                f"            return host.origin_kind if host.body is not None else slow_{n}()  # type: ignore[no-any-return]"]
    if kind in ("prev_hop", "node_address"):
        src = "host.prev_hop" if kind == "prev_hop" else "host.node_address_raw"
        return [f"        def {n}() -> bytes:",
                f"            return {src} if host.body is not None and {src} else slow_{n}()  # type: ignore[no-any-return]"]
    return None


def _render_python(spec: Spec, calls: list[Call]) -> str:
    st = {name: _status(spec, name) for name in ("OK", "OUT_OF_RANGE", "BAD_ARGUMENT", "NOT_FOUND")}
    st["BODY"] = 1
    out = [
        f'"""{BANNER}',
        "",
        "The PNI's hot calls answered from a capsule body, without the node's environment",
        "(generator: pni_spec/gen_hot.py).",
        "",
        "``BodyHost`` is the host of code the node's UDP fast path runs from Python: while ``body``",
        "is set, the calls marked hot in the spec are answered from the body (handle 1) and the",
        "fields below, with the statuses of the node's ``PniServer``; any other call, or a hot call",
        "on another handle, goes to the server (which builds the capsule's environment when the call",
        "needs it), and from then on every call does.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Callable",
        "from typing import Any",
        "",
        '__all__ = ["HOT_CALLS", "BodyHost"]',
        "",
        "#: the calls marked hot in pni_spec/pni.toml",
        "HOT_CALLS: frozenset[str] = frozenset({",
        *(f'    "{c.name}",' for c in calls),
        "})",
        "",
        "",
        "class BodyHost:",
        '    """PNI host calls of a run without an environment; see the module docstring."""',
        "",
        "    def __init__(self, server: Any) -> None:",
        "        self._host = server",
        "        #: the capsule body during a run (None: not in a run, or the server took over)",
        "        self.body: memoryview | None = None",
        "        #: the capsule's origin kind (0: network, the only origin the fast path runs)",
        "        self.origin_kind = 0",
        "        #: the previous hop's address during a run (empty: none)",
        "        self.prev_hop = b\"\"",
        "        node = getattr(server, \"node\", None)",
        "        self.node_address_raw: bytes = node.address.raw if node is not None else b\"\"",
        "",
        "    def _server(self) -> Any:",
        "        self.body = None",
        "        return self._host",
        "",
        "    def __getattr__(self, name: str) -> Any:",
        "        method = getattr(self._host, name)  # AttributeError for what the server lacks",
        "",
        "        def call(*args: Any) -> Any:",
        "            self.body = None",
        "            return method(*args)",
        "",
        "        call.__name__ = name",
        "        return call",
        "",
    ]
    for c in calls:
        out += _py_call(c, st)
    direct = [(c, _py_direct(c)) for c in calls]
    direct = [(c, d) for c, d in direct if d is not None]
    out += [
        "    def direct_calls(self, pni: Any) -> dict[str, Callable[..., Any]]:",
        '        """Direct forms of the hot reads of ``pni`` (a ``pni_api.HostPNI`` over this host): the',
        '        same results and errors, one Python call instead of three while a run is on."""',
        "        host = self",
    ]
    for c, _ in direct:
        out.append(f"        slow_{c.name} = pni.{c.name}")
    for _, d in direct:
        out += ["", *d]
    out += ["", "        return {"]
    out += [f'            "{c.name}": {c.name},' for c, _ in direct]
    out += ["        }", ""]
    return "\n".join(out)


# -- CPython ----------------------------------------------------------------------------------
#: the BodyHost attribute each context kind answers from (as ``direct_calls`` does)
_PY_CONTEXT_ATTR = {"origin_kind": "origin_kind", "prev_hop": "prev_hop", "node_address": "node_address_raw"}
_DIRECT_KINDS = ("length", "read", "get", "origin_kind", "prev_hop", "node_address")


def _cpy_call(call: Call, index: int) -> list[str]:
    """CALL's direct form as a METH_FASTCALL method of ``pni_hot_direct``: what the Python
    form in ``direct_calls`` answers, answered here; everything else to the slow call."""
    kind, width = _base(call)
    n = call.name
    nargs = {"length": 1, "read": 3, "get": 2}.get(kind, 0)
    out = [
        f"/* {n}: the direct form of BodyHost.direct_calls()['{n}'] */",
        f"static PyObject *pni_hot_py_{n}(pni_hot_direct *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {{",
        f"    PyObject *slow = self->slow[{index}];",
        f"    if (PyVectorcall_NARGS(nargsf) != {nargs} || kwnames != NULL) return PyObject_Vectorcall(slow, args, nargsf, kwnames);",
    ]
    if kind in _DIRECT_KINDS[:3]:
        out += [
            "    pni_hot_body b;",
            "    int on = pni_hot_py_body(self, args[0], &b);",
            "    if (on < 0) return NULL;",
        ]
        if kind == "length":
            out += ["    if (!on) return PyObject_Vectorcall(slow, args, nargsf, NULL);",
                    "    return PyLong_FromLongLong(pni_hot_seg_length(&b));"]
        else:
            out += ["    uint32_t offset;",
                    "    if (!on || !pni_hot_py_u32(args[1], &offset)) return PyObject_Vectorcall(slow, args, nargsf, NULL);"]
            if kind == "read":
                out += [
                    "    uint32_t length;",
                    "    if (!pni_hot_py_u32(args[2], &length) || (uint64_t)offset + length > b.length)",
                    "        return PyObject_Vectorcall(slow, args, nargsf, NULL);",
                    "    return PyBytes_FromStringAndSize((const char *)b.data + offset, (Py_ssize_t)length);",
                ]
            else:
                out += [
                    f"    int64_t v = pni_hot_{n}(&b, offset);",
                    "    if (v < 0) return PyObject_Vectorcall(slow, args, nargsf, NULL);",
                    "    return PyLong_FromLongLong(v);",
                ]
    else:
        attr = _PY_CONTEXT_ATTR[kind]
        out += [
            "    int on = pni_hot_py_running(self);",
            "    if (on < 0) return NULL;",
            "    if (!on) return PyObject_Vectorcall(slow, args, nargsf, NULL);",
            f"    PyObject *v = PyObject_GenericGetAttr(self->host, pni_hot_py_str_{attr});",
        ]
        if kind == "origin_kind":
            out.append("    return v;")
        else:
            out += [
                "    if (v == NULL) return NULL;",
                "    int truth = PyObject_IsTrue(v);",
                "    if (truth > 0) return v;",
                "    Py_DECREF(v);",
                "    return truth < 0 ? NULL : PyObject_Vectorcall(slow, args, nargsf, NULL);",
            ]
    return [*out, "}", ""]


def _render_cpython(spec: Spec, calls: list[Call]) -> str:
    direct = [c for c in calls if _base(c)[0] in _DIRECT_KINDS]
    attrs = ["body", *sorted(set(_PY_CONTEXT_ATTR.values()))]
    out = [
        f"/* {BANNER}",
        " * pni_hot_py.h, by pni_spec/gen_hot.py: the direct forms of pan_runtime/pni_hot.py's",
        " * BodyHost.direct_calls() (the hot reads) as C methods, for restricted_py's _fast.c.",
        " * A pni_hot_direct holds the BodyHost and, per call, the slow form (the call of the",
        " * pni_api.HostPNI over that host). While the host's `body` is a memoryview (a run is on",
        " * and the server has not taken over), a call on the body (handle 1) with in-range int",
        " * arguments is answered from it with pni_hot.h, and a context call from the host's",
        " * fields; anything else (other handles, other types, out of range, keywords, another",
        " * number of arguments) goes to the slow form, which raises what it always raised.",
        " * Include after Python.h; call pni_hot_py_init() once (module init).",
        " */",
        "#ifndef PAN_PNI_HOT_PY_H",
        "#define PAN_PNI_HOT_PY_H",
        "",
        '#include "pni_hot.h"',
        "",
        f"#define PNI_HOT_PY_CALLS {len(direct)}",
        "",
        "/* The direct calls of one BodyHost. */",
        "typedef struct {",
        "    PyObject_HEAD",
        "    PyObject *host;                      /* the pni_hot.BodyHost */",
        "    PyObject *slow[PNI_HOT_PY_CALLS];    /* the HostPNI calls, in PNI_HOT_PY_NAMES order */",
        "} pni_hot_direct;",
        "",
        "/* the calls, in the order of pni_hot_direct.slow */",
        "static const char *const PNI_HOT_PY_NAMES[PNI_HOT_PY_CALLS] = {",
        *(f'    "{c.name}",' for c in direct),
        "};",
        "",
        *(f"static PyObject *pni_hot_py_str_{a};" for a in attrs),
        "",
        "/* Interns the attribute names; 0, or -1 with an error set. */",
        "static int pni_hot_py_init(void) {",
        *(f'    if (!(pni_hot_py_str_{a} = PyUnicode_InternFromString("{a}"))) return -1;' for a in attrs),
        "    return 0;",
        "}",
        "",
        "/* (The host's fields are read as plain attributes: BodyHost's __getattr__ is for calls.) */",
        "",
        "/* The host's body as B when it is a live memoryview: 1; 0 when the call goes to the",
        " * slow form (no body, released, or the server took over); -1 with an error set. */",
        "static int pni_hot_py_view(pni_hot_direct *self, pni_hot_body *b) {",
        "    PyObject *body = PyObject_GenericGetAttr(self->host, pni_hot_py_str_body);",
        "    if (body == NULL) return -1;",
        "    int on = PyMemoryView_Check(body) && !(((PyMemoryViewObject *)body)->flags & _Py_MEMORYVIEW_RELEASED);",
        "    if (on) {",
        "        Py_buffer *v = PyMemoryView_GET_BUFFER(body);",
        "        b->data = (uint8_t *)v->buf;",
        "        b->length = (uint64_t)v->len;",
        "        b->ctx = 0;",
        "    }",
        "    Py_DECREF(body); /* the host holds the view for the run */",
        "    return on;",
        "}",
        "",
        "/* 1 when a run is on (the host's body is not None), 0 when not, -1 with an error set. */",
        "static int pni_hot_py_running(pni_hot_direct *self) {",
        "    PyObject *body = PyObject_GenericGetAttr(self->host, pni_hot_py_str_body);",
        "    if (body == NULL) return -1;",
        "    int on = body != Py_None;",
        "    Py_DECREF(body);",
        "    return on;",
        "}",
        "",
        "/* A segment call on SEG answered from the body: SEG is the int 1 (the server's handles are",
        " * ints) and B a live body. 1, 0 (the slow form), or -1 with an error set. */",
        "static int pni_hot_py_body(pni_hot_direct *self, PyObject *seg, pni_hot_body *b) {",
        "    if (!PyLong_CheckExact(seg)) return 0;",
        "    int overflow;",
        "    long h = PyLong_AsLongAndOverflow(seg, &overflow);",
        "    return h == (long)PNI_HOT_BODY_HANDLE && !overflow ? pni_hot_py_view(self, b) : 0;",
        "}",
        "",
        "/* An exact int in 0 .. 2**32-1 as *OUT: 1; else 0 (the slow form decides; no error set). */",
        "static int pni_hot_py_u32(PyObject *o, uint32_t *out) {",
        "    if (!PyLong_CheckExact(o)) return 0;",
        "    int overflow;",
        "    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);",
        "    if (overflow || v < 0 || v > (long long)UINT32_MAX) return 0;",
        "    *out = (uint32_t)v;",
        "    return 1;",
        "}",
        "",
    ]
    for i, c in enumerate(direct):
        out += _cpy_call(c, i)
    out += [
        "/* the methods of pni_hot_direct, one per call */",
        "static PyMethodDef PNI_HOT_PY_METHODS[] = {",
        *(f'    {{"{c.name}", (PyCFunction)(void (*)(void))pni_hot_py_{c.name}, METH_FASTCALL | METH_KEYWORDS, NULL}},'
          for c in direct),
        "    {NULL, NULL, 0, NULL},",
        "};",
        "",
        "#endif",
        "",
    ]
    return "\n".join(out)


def render_hot(spec: Spec) -> dict[str, str]:
    """The generated shortcut files as ``{path relative to the repo root: text}``."""
    calls = hot_calls(spec)
    return {
        HOT_PATHS["c"]: _render_c(spec, calls),
        HOT_PATHS["java"]: _render_java(spec, calls),
        HOT_PATHS["python"]: _render_python(spec, calls),
        HOT_PATHS["cpython"]: _render_cpython(spec, calls),
    }
