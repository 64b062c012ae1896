"""Render ``docs/pni-reference.md``: the reference of the PNI, generated from the spec."""

from __future__ import annotations

from pni_spec.gen_c import SCALARS as C_SCALARS
from pni_spec.gen_c import c_params
from pni_spec.gen_common import BANNER, camel, groups, outputs
from pni_spec.gen_java import ident, java_params
from pni_spec.gen_python import py_params
from pni_spec.spec import Call, Spec


def type_rows(sizes: dict[str, int]) -> list[tuple[str, ...]]:
    """One row per spec type: meaning, then its form in C, wasm, Java and Python."""
    a, a_out, n = sizes["addr_in"], sizes["addr_out"], sizes["name_out"]
    return [
        ("i32", "signed 32-bit", "`int32_t`", "`i32`", "`int`", "`int`"),
        ("u32", "unsigned 32-bit", "`uint32_t`", "`i32` (same bits)", "`int` (same bits)", "`int`"),
        ("i64", "signed 64-bit", "`int64_t`", "`i64`", "`long`", "`int`"),
        ("u64", "unsigned 64-bit", "`uint64_t`", "`i64` (same bits)", "`long` (same bits)", "`int`"),
        ("handle", "segment handle, u32, never 0", "`pni_handle_t`", "`i32`", "`int`", "`int`"),
        ("link", "application-link token, i64", "`pni_link_t`", "`i64`", "`long`", "`int`"),
        ("bytes_in", "byte range read by the host", "`const void *x, uint32_t x_len`", "`i32 ptr, i32 len`",
         "`byte[] x, int xOff, int xLen`", "bytes-like"),
        ("bytes_out", "byte range the host fills", "`void *x, uint32_t x_len`", "`i32 ptr, i32 len`",
         "`byte[] x, int xOff, int xLen`", "`length: int` in, `bytes` returned"),
        ("addr_in", f"{a}-byte node address read by the host", "`const uint8_t *x`", "`i32 ptr`",
         f"`byte[] x` (index 0..{a - 1})", f"`bytes` ({a})"),
        ("addr_out", f"{a_out}-byte node address the host writes", "`uint8_t *x`", "`i32 ptr`",
         f"`byte[] x` (index 0..{a_out - 1})", f"returned as `bytes` ({a_out})"),
        ("name_out", f"{n}-byte code object name the host writes", "`uint8_t *x`", "`i32 ptr`",
         f"`byte[] x` (index 0..{n - 1})", f"returned as `bytes` ({n})"),
    ]


def _python_sig(c: Call) -> str:
    args = ", ".join(n for n, _, _ in py_params(c))
    outs = outputs(c)
    ret = "int" if not outs else "bytes" if len(outs) == 1 else "tuple of bytes"
    return f"pni.{c.name}({args}) -> {ret}"


def render_doc(spec: Spec) -> str:
    o = [
        f"<!-- {BANNER} -->",
        "",
        f"# PNI reference, version {spec.version}",
        "",
        "The PAN Node Interface (PNI) is everything a code object can ask of the node it runs on.",
        "It is defined once, in `pni_spec/pni.toml`; this page, the C header",
        "`pan_runtime/include/pni.h`, the Java package `" + spec.java_package + "` under `pan_runtime/java/`",
        "and the Python module `pan_runtime/pni_api.py` are generated from it by",
        "`python -m pni_spec.generate` (see `pni_spec/README.md`). The host implements every call",
        "once, in `pan_runtime/node/pni.py`; runtimes only marshal arguments.",
        "",
        "## Terminology",
        "",
        "- **code**: a code object's entry points and exports, running in one of the node's runtimes.",
        "- **capsule**: a datagram naming a code object; its *body* is what code reads and rewrites.",
        "- **segment**: a byte buffer (or chain of buffers) owned by the node. Code names segments by",
        "  **handle**, a small positive integer valid only in the current environment (0 is never",
        "  valid). The capsule body is handle 1 during `accept`. Handles die with the environment;",
        "  soft state keeps a copy of a segment's bytes (`state_put_seg`), never the segment itself.",
        "- **environment**: the per-capsule context: origin (network or application link), budget and",
        "  the segments allocated while handling the capsule, all freed when the capsule is done.",
        "- **link**: an unforgeable 64-bit token for an application link, issued by the node per code",
        "  object; it may be kept in soft state and dies with the connection.",
        "- **address**: a 128-bit node address, 16 bytes in network order.",
        "- **name**: a code object's name, the 32-byte SHA-256 of its canonical encoding.",
        "- **status**: a negative result; results >= 0 are values. Code never sees host exceptions.",
        "- **verdict**: what `accept` returns, so the common path needs one call into the code.",
        "",
        "Memory: every pointer a call takes is into the code's own memory (wasm linear memory, the",
        "native object's address space, a Java array, a Python bytes object) and is only used during",
        "the call; the host never keeps it. Bytes cross between segments and code memory only by",
        "explicit copies (`seg_read`, `seg_write`, the struct readers and writers).",
        "",
        "## Types",
        "",
        "| spec type | meaning | C | wasm | Java | Python |",
        "|---|---|---|---|---|---|",
    ]
    for row in type_rows(dict(spec.sizes)):
        o.append("| `" + row[0] + "` | " + " | ".join(row[1:]) + " |")
    o += [
        "",
        "Results are `i32` or `i64`; in Python a negative status raises",
        "`pan_runtime.errors.PniError` whose `status` is the code, and a call that fills an output",
        "buffer returns the bytes filled instead of its integer result (so Python code cannot see",
        "`route_lookup`'s metric). Names: C `pni_<call>`,",
        f"wasm import `\"{spec.wasm_module}\".<call>`, Java `PNI.<camelCase>`, Python `pni.<call>`.",
        "",
        "## Statuses",
        "",
        "| name | value | meaning |",
        "|---|---|---|",
    ]
    for s in spec.statuses:
        o.append(f"| `{s.name}` | {s.value} | {s.doc} |")
    o += [
        "",
        "## Verdicts",
        "",
        "A verdict is an i32: the kind in the low 8 bits, an argument (if the kind takes one) in the",
        "bits above, so it stays non-negative for arguments up to 2^23-1. Negative results of",
        "`accept` are statuses and drop the capsule.",
        "",
        "| kind | value | argument | C | Java | Python | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in spec.verdicts:
        if v.arg:
            c, j, p = f"`PNI_{v.name}({v.arg})`", f"`Verdict.{camel(v.name.lower())}({v.arg})`", f"`{v.name.lower()}({v.arg})`"
        else:
            c, j, p = f"`PNI_{v.name}`", f"`Verdict.{v.name}`", f"`{v.name}`"
        o.append(f"| `{v.name}` | {v.value} | {v.arg or '-'} | {c} | {j} | {p} | {v.doc} |")
    o += [
        "",
        "## Entry points",
        "",
        "The manifest's `entry` table maps these names to the code's own symbols. In C declare them",
        "with `PNI_EXPORT(name)`; in Java implement `org.pan.pni.PanCode`; in Python define",
        "module-level functions taking `pni` first.",
        "",
        "| entry | required | C signature | meaning |",
        "|---|---|---|---|",
    ]
    for e in spec.entries:
        sig = f"{C_SCALARS[e.result]} {e.name}({c_params(e.params)})"
        o.append(f"| `{e.name}` | {'yes' if e.required else 'no'} | `{sig}` | {e.doc} |")
    o += ["", "## Calls", ""]
    for group, calls in groups(spec):
        o.append(f"- [{group}](#{group}): " + ", ".join(f"[`{c.name}`](#{c.name})" for c in calls))
    for group, calls in groups(spec):
        o += ["", f"### {group}"]
        for c in calls:
            o += ["", f"#### {c.name}", "", c.doc, ""]
            if c.params:
                o.append("| param | type |")
                o.append("|---|---|")
                for p in c.params:
                    o.append(f"| `{p.name}` | `{p.type}` |")
                o.append("")
            errs = ", ".join(f"`{e}`" for e in c.errors) or "none"
            o.append(f"Result: `{c.result}`. Errors: {errs}.")
            o += [
                "",
                "```",
                f"C      {C_SCALARS[c.result]} {spec.c_prefix}{c.name}({c_params(c.params)});",
                f"Java   {'int' if c.result == 'i32' else 'long'} {ident(c.name)}({java_params(c.params)});",
                f"Python {_python_sig(c)}",
                "```",
            ]
    o += [
        "",
        "## Capsule-body structures",
        "",
        "The node interface defines no body layout. Protocols describe their headers in a header",
        "spec of their own (the reference protocols: `protocols/headers.toml`, layouts in",
        "`docs/protocols.md`); `python -m pni_spec.codecs` turns one into C, Java and Python codecs",
        "over `seg_read`/`seg_write` and the byte helpers above.",
    ]
    o += [
        "",
        "## Versioning",
        "",
        f"This is version {spec.version} (`MAJOR.MINOR`); the wasm import module `{spec.wasm_module}`",
        "carries the major number.",
        "",
        "- A code object built against `M.m` runs on every node serving `M.n` with `n >= m`: a node",
        "  refuses code that needs a newer minor version or another major one.",
        "- MINOR: adding a call, a status or a verdict. Existing code keeps working",
        "  unchanged.",
        "- MAJOR: changing or removing anything that exists (a parameter, a type, a value, a field,",
        "  a name), or changing what a call means. Bump the major number and the wasm module name.",
        "",
    ]
    return "\n".join(o)
