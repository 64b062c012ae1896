"""Render ``runtimes/native/pni_marshal.py``: the ctypes callback of every PNI call for native code.

Each call gets a ctypes function type and a factory ``make_<call>(M, host, sink, method,
)`` returning straight-line Python: C pointers and lengths become slices of ``M``
(a memoryview over the address space, never copied); a null pointer with a length returns
``OUT_OF_RANGE``; nothing raises into C (``sink._fault`` records it). Generated so that no
spec is read and no source is ``exec``'d when code loads.
"""

from __future__ import annotations

from pni_spec.gen_common import BANNER
from pni_spec.spec import Call, Spec

#: ctypes type of each scalar parameter type
SCALARS = {"i32": "c_int32", "u32": "c_uint32", "i64": "c_int64", "u64": "c_uint64", "handle": "c_uint32",
           "link": "c_int64"}
RESULTS = {"i32": "c_int32", "i64": "c_int64"}


def _ctypes(call: Call) -> list[str]:
    """ctypes argument types of ``pni_<call>``: pointers are unsigned 64-bit integers."""
    out: list[str] = []
    for p in call.params:
        if p.type in SCALARS:
            out.append(SCALARS[p.type])
        elif p.type in ("bytes_in", "bytes_out"):
            out += ["c_uint64", "c_uint32"]
        else:
            out.append("c_uint64")
    return out


def _factory(call: Call, sizes: dict[str, int]) -> list[str]:
    params: list[str] = []
    checks: list[str] = []
    args: list[str] = []
    for p in call.params:
        n = p.name
        if p.type in SCALARS:
            params.append(n)
            args.append(n)
        elif p.type in ("bytes_in", "bytes_out"):
            params += [f"{n}_p", f"{n}_n"]
            checks.append(f"if not {n}_p and {n}_n:")
            args.append(f"M[{n}_p:{n}_p + {n}_n]")
        else:
            params.append(f"{n}_p")
            checks.append(f"if not {n}_p:")
            args.append(f"M[{n}_p:{n}_p + {sizes[p.type]}]")
    o = [f"def make_{call.name}(M, host, sink, method):"]
    o.append(f"    def pni_{call.name}({', '.join(params)}):")
    for c in checks:
        o += [f"        {c}", "            return OUT_OF_RANGE"]
    o += [
        "        try:",
        "            if sink._batch is not None:",
        "                host.current = sink._batch[sink._batch_index.value]",
        f"            return method({', '.join(args)})",
        "        except BaseException as exc:",
        f"            return sink._fault(exc, {call.name!r})",
        "",
        f"    return pni_{call.name}",
    ]
    return o


def render_native(spec: Spec) -> str:
    sizes = dict(spec.sizes)
    o = [
        f'"""{BANNER}',
        "",
        f"ctypes marshalling of every call of PNI {spec.version} for native code (see pni_spec/gen_native.py).",
        '"""',
        "",
        "from ctypes import CFUNCTYPE, c_int32, c_int64, c_uint32, c_uint64",
        "",
        '__all__ = ["CALLBACK_TYPES", "FACTORIES"]',
        "",
        f"OUT_OF_RANGE = {spec.status_value('OUT_OF_RANGE')}",
    ]
    for c in spec.calls:
        o += ["", "", *_factory(c, sizes)]
    o += ["", "", "#: the ctypes function type of each call's callback", "CALLBACK_TYPES = {"]
    for c in spec.calls:
        o.append(f"    {c.name!r}: CFUNCTYPE({', '.join([RESULTS[c.result], *_ctypes(c)])}),")
    o += ["}", "#: the callback factory of each call", "FACTORIES = {"]
    for c in spec.calls:
        o.append(f"    {c.name!r}: make_{c.name},")
    o += ["}", ""]
    return "\n".join(o)
