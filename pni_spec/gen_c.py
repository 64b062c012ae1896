"""Render ``pan_runtime/include/pni.h``: one freestanding C header for native and wasm code."""

from __future__ import annotations

from pni_spec.gen_common import BANNER, groups, wrap
from pni_spec.spec import Call, Param, Spec

SCALARS = {
    "i32": "int32_t",
    "u32": "uint32_t",
    "i64": "int64_t",
    "u64": "uint64_t",
    "handle": "pni_handle_t",
    "link": "pni_link_t",
}
FIELD_C = {"u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "u64": "uint64_t", "i32": "int32_t", "i64": "int64_t"}
# big-endian accessor per field type (addr handled separately)
GETTER = {"u8": "", "u16": "pni_be16_get", "u32": "pni_be32_get", "u64": "pni_be64_get",
          "i32": "pni_be32_get", "i64": "pni_be64_get"}
SETTER = {"u16": "pni_be16_put", "u32": "pni_be32_put", "u64": "pni_be64_put",
          "i32": "pni_be32_put", "i64": "pni_be64_put"}


def c_params(params: tuple[Param, ...]) -> str:
    out: list[str] = []
    for p in params:
        if p.type in SCALARS:
            out.append(f"{SCALARS[p.type]} {p.name}")
        elif p.type == "bytes_in":
            out.append(f"const void *{p.name}, uint32_t {p.name}_len")
        elif p.type == "bytes_out":
            out.append(f"void *{p.name}, uint32_t {p.name}_len")
        elif p.type == "addr_in":
            out.append(f"const uint8_t *{p.name}")
        else:  # addr_out, name_out
            out.append(f"uint8_t *{p.name}")
    return ", ".join(out) or "void"


def block_comment(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    """A C block comment: ``/* text */`` on one line, or wrapped into `` * `` lines."""
    lines = wrap(text, 96, "")
    lines += list(extra)
    if len(lines) == 1 and len(lines[0]) < 90:
        return [f"/* {lines[0]} */"]
    return ["/*", *(f" * {line}" for line in lines), " */"]


def _call_comment(call: Call, sizes: dict[str, int]) -> list[str]:
    lines = wrap(call.doc, 96, "")
    sized = [f"{p.name}: {sizes[p.type]} bytes" for p in call.params if p.type in sizes]
    if sized:
        lines.append("; ".join(sized) + ".")
    errs = ", ".join(f"PNI_{e}" for e in call.errors) or "none"
    lines.append(f"Errors: {errs}.")
    return ["/*", *(f" * {line}" for line in lines), " */"]


def render_c(spec: Spec) -> str:
    o: list[str] = []
    o += [
        f"/* {BANNER}",
        " *",
        f" * The PAN Node Interface (PNI) {spec.version} for code objects written in C. One header serves",
        " * the `native` runtime (x86-64 ELF object, gcc -ffreestanding -fno-builtin, no libc) and the",
        f" * `wasm` runtime (wasm32-freestanding; calls are imported from module \"{spec.wasm_module}\").",
        " * Reference: docs/pni-reference.md. Everything here is a prototype, a macro or static inline.",
        " */",
        "#ifndef PAN_PNI_H",
        "#define PAN_PNI_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define PNI_VERSION_MAJOR {spec.major}",
        f"#define PNI_VERSION_MINOR {spec.minor}",
        *[f"#define PNI_{t.upper()}_SIZE {n}" for t, n in spec.sizes],
        f"#define PNI_WASM_MODULE \"{spec.wasm_module}\"",
        "",
        "/* A segment handle (0 is never valid) and an application-link token. */",
        "typedef uint32_t pni_handle_t;",
        "typedef int64_t pni_link_t;",
        "",
        "/* Sizes of a node address and of a code object name. */",
        "#define PNI_ADDR_SIZE 16u",
        "#define PNI_NAME_SIZE 32u",
        "",
        "#if defined(__wasm__)",
        f"#define PNI_IMPORT(name) __attribute__((import_module(\"{spec.wasm_module}\"), import_name(#name)))",
        "#define PNI_EXPORT(name) __attribute__((export_name(#name)))",
        "#else",
        "#define PNI_IMPORT(name)",
        "#define PNI_EXPORT(name) __attribute__((visibility(\"default\")))",
        "#endif",
        "",
        "#ifdef __cplusplus",
        "extern \"C\" {",
        "#endif",
        "",
        "/* ---- statuses: negative results of calls ---- */",
    ]
    width = max(len(s.name) for s in spec.statuses) + 4
    for s in spec.statuses:
        value = str(s.value) if s.value >= 0 else f"({s.value})"
        o.append(f"#define PNI_{s.name:<{width}} {value:<6} /* {s.doc} */")
    o += ["", "/* ---- verdicts: what accept returns (kind in the low byte, argument above) ---- */"]
    for v in spec.verdicts:
        o.append(f"#define PNI_KIND_{v.name} {v.value}")
    for v in spec.verdicts:
        o += block_comment(v.doc)
        if v.arg:
            o.append(
                f"#define PNI_{v.name}({v.arg}) ((int32_t)(PNI_KIND_{v.name} | ((uint32_t)({v.arg}) << 8)))"
            )
        else:
            o.append(f"#define PNI_{v.name} ((int32_t)PNI_KIND_{v.name})")
    o += [
        "#define PNI_VERDICT_KIND(v) ((uint32_t)(v) & 0xffu)",
        "#define PNI_VERDICT_ARG(v) ((uint32_t)(v) >> 8)",
        "",
        "/* ---- entry points a code object defines (declare them with PNI_EXPORT) ----",
    ]
    for e in spec.entries:
        req = "required" if e.required else "optional"
        sig = f"{SCALARS[e.result]} {e.name}({c_params(e.params)})"
        lines = wrap(f"{sig} [{req}]: {e.doc}", 94, "")
        o += [f" * - {lines[0]}", *(f" *   {line}" for line in lines[1:])]
    o.append(" */")
    for group, calls in groups(spec):
        o += ["", f"/* ---- calls: {group} ---- */", ""]
        for c in calls:
            o += _call_comment(c, dict(spec.sizes))
            o.append(f"PNI_IMPORT({c.name}) {SCALARS[c.result]} {spec.c_prefix}{c.name}({c_params(c.params)});")
    o += [
        "",
        "/* ---- helpers: network-order integers and addresses, byte by byte (no libc) ---- */",
        "",
        "static inline uint16_t pni_be16_get(const uint8_t *p) {",
        "    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);",
        "}",
        "static inline uint32_t pni_be32_get(const uint8_t *p) {",
        "    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];",
        "}",
        "static inline uint64_t pni_be64_get(const uint8_t *p) {",
        "    return ((uint64_t)pni_be32_get(p) << 32) | pni_be32_get(p + 4);",
        "}",
        "static inline void pni_be16_put(uint8_t *p, uint16_t v) {",
        "    p[0] = (uint8_t)(v >> 8);",
        "    p[1] = (uint8_t)v;",
        "}",
        "static inline void pni_be32_put(uint8_t *p, uint32_t v) {",
        "    p[0] = (uint8_t)(v >> 24);",
        "    p[1] = (uint8_t)(v >> 16);",
        "    p[2] = (uint8_t)(v >> 8);",
        "    p[3] = (uint8_t)v;",
        "}",
        "static inline void pni_be64_put(uint8_t *p, uint64_t v) {",
        "    pni_be32_put(p, (uint32_t)(v >> 32));",
        "    pni_be32_put(p + 4, (uint32_t)v);",
        "}",
        "/* 1 when the 16-byte addresses A and B are equal, else 0. */",
        "static inline int pni_addr_eq(const uint8_t *a, const uint8_t *b) {",
        "    uint8_t diff = 0;",
        "    for (uint32_t i = 0; i < PNI_ADDR_SIZE; i++) diff |= (uint8_t)(a[i] ^ b[i]);",
        "    return diff == 0;",
        "}",
        "static inline void pni_addr_copy(uint8_t *dst, const uint8_t *src) {",
        "    for (uint32_t i = 0; i < PNI_ADDR_SIZE; i++) dst[i] = src[i];",
        "}",
        "",
    ]
    o += [
        "/* ---- batches: one call into the code for many capsules ----",
        " * PNI_BATCH_ENTRY(N), placed after accept, exports pni_batch_area() and accept_batch(n).",
        " * The area holds u32 cursor, u32 capacity and N slots of {u32 capsule, u32 length,",
        " * i32 verdict}; the host fills capsules and lengths, accept_batch runs accept on each",
        " * and stores its verdict, keeping `cursor` on the capsule being run so PNI calls made",
        " * during the batch act on the right capsule. Runtimes that cannot use it ignore it. */",
        "#define PNI_BATCH_ENTRY(slots) \\",
        "    static struct { \\",
        "        uint32_t cursor, capacity; \\",
        "        struct { uint32_t capsule, length; int32_t verdict; } slot[slots]; \\",
        "    } pni_batch_ = {.cursor = 0, .capacity = (slots)}; \\",
        "    PNI_EXPORT(pni_batch_area) uintptr_t pni_batch_area(void) { \\",
        "        return (uintptr_t)&pni_batch_; \\",
        "    } \\",
        "    PNI_EXPORT(accept_batch) int32_t accept_batch(uint32_t n) { \\",
        "        uint32_t i; \\",
        "        for (i = 0; i < n && i < (slots); i++) { \\",
        "            *(volatile uint32_t *)&pni_batch_.cursor = i; \\",
        "            pni_batch_.slot[i].verdict = accept(pni_batch_.slot[i].capsule, pni_batch_.slot[i].length); \\",
        "        } \\",
        "        return (int32_t)i; \\",
        "    }",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        "#endif /* PAN_PNI_H */",
        "",
    ]
    return "\n".join(o)
