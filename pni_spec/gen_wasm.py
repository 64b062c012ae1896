"""Render ``runtimes/wasm/pni_marshal.py``: every PNI call as a raw wasmtime host callback.

Each call gets its wasm signature and a factory ``make_<call>(method, mem, state, OOR, host,
)`` returning straight-line Python over the raw value array (stride ``SLOT``
int64 slots per value): it checks every (pointer, length) against linear memory, passes
memoryviews of it to the host and writes the result to slot 0. Generated so that no spec is
read and no source is ``exec``'d when code loads.
"""

from __future__ import annotations

from pni_spec.gen_common import BANNER
from pni_spec.spec import Call, Spec

#: wasm value types of each spec parameter type ("i32" pointers into linear memory)
WASM_PARAM: dict[str, tuple[str, ...]] = {
    "handle": ("i32",), "u32": ("i32",), "i32": ("i32",), "i64": ("i64",), "u64": ("i64",), "link": ("i64",),
    "bytes_in": ("i32", "i32"), "bytes_out": ("i32", "i32"),
    "addr_in": ("i32",), "addr_out": ("i32",), "name_out": ("i32",),
}
#: int64 slots per wasmtime_val_raw_t (16 bytes: it can hold a v128); pan_wasm.fastcall.SLOT agrees
SLOT = 2


def wasm_signature(call: Call) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(param types, result types) of the import for ``call``."""
    params: list[str] = []
    for p in call.params:
        params.extend(WASM_PARAM[p.type])
    return tuple(params), (call.result,)


def _factory(call: Call, sizes: dict[str, int]) -> list[str]:
    lines: list[str] = []
    args: list[str] = []
    checks: list[str] = []
    k = 0  # wasm value index
    for i, p in enumerate(call.params):
        a = f"a[{k * SLOT}]"
        if p.type in ("handle", "u32"):
            args.append(f"{a} & 0xFFFFFFFF")
        elif p.type == "i32":
            args.append(f"(({a} & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000")
        elif p.type == "u64":
            args.append(f"{a} & 0xFFFFFFFFFFFFFFFF")
        elif p.type in ("i64", "link"):
            args.append(a)
        elif p.type in ("bytes_in", "bytes_out"):
            lines.append(f"p{i} = {a} & 0xFFFFFFFF")
            lines.append(f"e{i} = p{i} + (a[{(k + 1) * SLOT}] & 0xFFFFFFFF)")
            checks.append(f"e{i}")
            args.append(f"view[p{i}:e{i}]")
        else:  # fixed-size pointer
            lines.append(f"p{i} = {a} & 0xFFFFFFFF")
            lines.append(f"e{i} = p{i} + {sizes[p.type]}")
            checks.append(f"e{i}")
            args.append(f"view[p{i}:e{i}]")
        k += len(WASM_PARAM[p.type])
    body = [
        "if state.batch_envs is not None:",
        "    state.sync_batch()",
        *lines,
    ]
    if checks:
        far = checks[0] if len(checks) == 1 else f"max({', '.join(checks)})"
        body += [
            f"far = {far}",
            "if far > mem.size and mem.refresh(caller) < far:",
            "    a[0] = OOR",
            "    return 0",
            "view = mem.view",
        ]
    body.append(f"a[0] = method({', '.join(args)})")
    return [
        f"def make_{call.name}(method, mem, state, OOR, host):",
        "    def callback(env, caller, a, n):",
        "        try:",
        *("            " + line for line in body),
        "        except BaseException as exc:",
        f"            return state.host_failed({call.name!r}, exc)",
        "        return 0",
        "",
        "    return callback",
    ]


def render_wasm(spec: Spec) -> str:
    sizes = dict(spec.sizes)
    o = [
        f'"""{BANNER}',
        "",
        f"Every call of PNI {spec.version} as a raw wasmtime host callback (see pni_spec/gen_wasm.py).",
        '"""',
        "",
        '__all__ = ["SLOT", "SIGNATURES", "FACTORIES"]',
        "",
        "#: int64 slots per raw wasm value that the callbacks index by",
        f"SLOT = {SLOT}",
    ]
    for c in spec.calls:
        o += ["", "", *_factory(c, sizes)]
    o += ["", "", "#: (param types, result types) of each call's import", "SIGNATURES = {"]
    for c in spec.calls:
        o.append(f"    {c.name!r}: {wasm_signature(c)!r},")
    o += ["}", "#: the callback factory of each call", "FACTORIES = {"]
    for c in spec.calls:
        o.append(f"    {c.name!r}: make_{c.name},")
    o += ["}", ""]
    return "\n".join(o)
