"""Render the Java binding under ``pan_runtime/java/org/pan/pni/``.

``PNI`` is the host side a Java code object calls; ``PanCode`` is what a code object
implements. Output arrays are passed in by the caller (with offset and length for byte
ranges) so a capsule can be handled without allocating.
"""

from __future__ import annotations

from pni_spec.gen_common import BANNER_ASCII, camel, groups, wrap
from pni_spec.spec import Call, Param, Spec

JAVA_KEYWORDS = {
    "abstract", "assert", "boolean", "break", "byte", "case", "catch", "char", "class", "const", "continue",
    "default", "do", "double", "else", "enum", "extends", "final", "finally", "float", "for", "goto", "if",
    "implements", "import", "instanceof", "int", "interface", "long", "native", "new", "package", "private",
    "protected", "public", "return", "short", "static", "strictfp", "super", "switch", "synchronized", "this",
    "throw", "throws", "transient", "try", "void", "volatile", "while", "var", "record", "yield", "sealed",
}
SCALARS = {"i32": "int", "u32": "int", "handle": "int", "i64": "long", "u64": "long", "link": "long"}
FIELD_JAVA = {"u8": "int", "u16": "int", "u32": "long", "u64": "long", "i32": "int", "i64": "long"}


def ident(name: str) -> str:
    """A Java identifier for a spec name (camelCase, keywords suffixed with ``_``)."""
    out = camel(name)
    return out + "_" if out in JAVA_KEYWORDS else out


def ascii_text(text: str) -> str:
    """Comment-safe ASCII: no ``*/`` and non-ASCII characters as Java unicode escapes."""
    text = text.replace("*/", "* /")
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04x}" for c in text)


def javadoc(text: str, indent: str, extra: tuple[str, ...] = ()) -> list[str]:
    lines = wrap(ascii_text(text), 96, "")
    lines += list(extra)
    if len(lines) == 1 and len(indent) + len(lines[0]) < 100:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}" if line else f"{indent} *" for line in lines), f"{indent} */"]


def java_params(params: tuple[Param, ...]) -> str:
    out: list[str] = []
    for p in params:
        n = ident(p.name)
        if p.type in SCALARS:
            out.append(f"{SCALARS[p.type]} {n}")
        elif p.type in ("bytes_in", "bytes_out"):
            out.append(f"byte[] {n}, int {n}Off, int {n}Len")
        else:
            out.append(f"byte[] {n}")
    return ", ".join(out)


def header(spec: Spec) -> list[str]:
    return [f"// {BANNER_ASCII}", "", f"package {spec.java_package};", ""]


def _pni(spec: Spec) -> str:
    o = header(spec)
    o += javadoc(
        f"The PAN Node Interface {spec.version}: the calls a Java code object makes on its node.",
        "",
        (
            "",
            "Implemented once by the jvm runtime over the node's host; code objects receive it as the",
            "first argument of every PanCode method. Byte ranges are (array, offset, length) in the",
            "caller's own arrays, node addresses are the first 16 bytes of an array and code names the",
            "first 32, so a capsule can be handled without allocating. Results >= 0 are values; a",
            "negative result is a PniStatus code.",
        ),
    )
    o.append("public interface PNI {")
    o.append(f"    int VERSION_MAJOR = {spec.major};")
    o.append(f"    int VERSION_MINOR = {spec.minor};")
    o.append(f'    String VERSION = "{spec.version}";')
    for t, n in spec.sizes:
        o.append(f"    int {t.upper()}_SIZE = {n};")
    for group, calls in groups(spec):
        o += ["", f"    // ---- {group} ----"]
        for c in calls:
            o.append("")
            o += javadoc(c.doc, "    ", _call_extra(c, dict(spec.sizes)))
            o.append(f"    {SCALARS[c.result]} {ident(c.name)}({java_params(c.params)});")
    o += ["}", ""]
    return "\n".join(o)


def _call_extra(c: Call, sizes: dict[str, int]) -> tuple[str, ...]:
    extra = []
    sized = [f"{ident(p.name)}: {sizes[p.type]} bytes from index 0" for p in c.params if p.type in sizes]
    if sized:
        extra.append("; ".join(sized) + ".")
    extra.append("Errors: " + (", ".join(f"{{@link PniStatus#{e}}}" for e in c.errors) or "none") + ".")
    return tuple(extra)


def _status(spec: Spec) -> str:
    o = header(spec)
    o += javadoc("Status codes: negative results of PNI calls (0 is OK).", "")
    o.append("public final class PniStatus {")
    o.append("    private PniStatus() {}")
    for s in spec.statuses:
        o.append("")
        o += javadoc(s.doc, "    ")
        o.append(f"    public static final int {s.name} = {s.value};")
    o += ["", "    /** The spec name of a status code, or \"UNKNOWN\". */", "    public static String name(int status) {"]
    o.append("        switch (status) {")
    for s in spec.statuses:
        o.append(f'            case {s.name}: return "{s.name}";')
    o += ['            default: return "UNKNOWN";', "        }", "    }", "}", ""]
    return "\n".join(o)


def _verdict(spec: Spec) -> str:
    o = header(spec)
    o += javadoc("Verdicts returned by accept: the kind in the low byte, an argument in the bits above.", "")
    o.append("public final class Verdict {")
    o.append("    private Verdict() {}")
    for v in spec.verdicts:
        o.append("")
        o += javadoc(v.doc, "    ")
        o.append(f"    public static final int {v.name} = {v.value};")
    for v in spec.verdicts:
        if not v.arg:
            continue
        arg = ident(v.arg)
        o.append("")
        o.append(f"    /** The {v.name} verdict with argument {arg}. */")
        o.append(f"    public static int {camel(v.name.lower())}(int {arg}) {{")
        o.append(f"        return {v.name} | ({arg} << 8);")
        o.append("    }")
    o += [
        "",
        "    /** The kind (low byte) of a verdict. */",
        "    public static int kind(int verdict) {",
        "        return verdict & 0xff;",
        "    }",
        "",
        "    /** The argument (bits above the low byte) of a verdict. */",
        "    public static int arg(int verdict) {",
        "        return verdict >>> 8;",
        "    }",
        "}",
        "",
    ]
    return "\n".join(o)


def _pancode(spec: Spec) -> str:
    o = header(spec)
    o += javadoc(
        "What a Java code object implements; the jvm runtime makes one instance per loaded code object.",
        "",
        tuple(
            f"{e.name}: {ascii_text(e.doc)}" for e in spec.entries
        ),
    )
    o += [
        "public interface PanCode {",
        "    /** Process one capsule whose body is segment capsule of length bytes; a verdict or a status. */",
        "    int accept(PNI pni, int capsule, int length);",
        "",
        "    /** Called once after loading; a negative result refuses the installation. */",
        "    default int init(PNI pni) {",
        "        return 0;",
        "    }",
        "",
        "    /** Called once before unloading; the result is logged only. */",
        "    default int finalize(PNI pni) {",
        "        return 0;",
        "    }",
        "",
        "    /** Call the export called name (listed in the manifest); NOT_FOUND when there is none. */",
        "    default long export(PNI pni, String name, long a0, long a1) {",
        "        return PniStatus.NOT_FOUND;",
        "    }",
        "}",
        "",
    ]
    return "\n".join(o)


def _bytes(spec: Spec) -> str:
    o = header(spec)
    o.append("import java.nio.ByteBuffer;")
    o.append("")
    o += javadoc("Network-order integers and node addresses in arrays and buffers, without allocating.", "")
    o.append("public final class PniBytes {")
    o.append("    private PniBytes() {}")
    for kind, (arr, get, put) in {
        "array": ("byte[] b", "b[{i}]", "b[{i}] = {v};"),
        "buffer": ("ByteBuffer b", "b.get({i})", "b.put({i}, {v});"),
    }.items():
        del kind
        o.append("")
        g = get.format(i="off")
        o.append(f"    public static int getU8({arr}, int off) {{")
        o.append(f"        return {g} & 0xff;")
        o.append("    }")
        o.append("")
        o.append(f"    public static int getU16({arr}, int off) {{")
        o.append(f"        return (({get.format(i='off')} & 0xff) << 8) | ({get.format(i='off + 1')} & 0xff);")
        o.append("    }")
        o.append("")
        o.append(f"    public static long getU32({arr}, int off) {{")
        o.append("        return ((long) getU16(b, off) << 16) | getU16(b, off + 2);")
        o.append("    }")
        o.append("")
        o.append(f"    public static long getU64({arr}, int off) {{")
        o.append("        return (getU32(b, off) << 32) | getU32(b, off + 4);")
        o.append("    }")
        o.append("")
        o.append(f"    public static void putU8({arr}, int off, int v) {{")
        o.append(f"        {put.format(i='off', v='(byte) v')}")
        o.append("    }")
        o.append("")
        o.append(f"    public static void putU16({arr}, int off, int v) {{")
        o.append(f"        {put.format(i='off', v='(byte) (v >>> 8)')}")
        o.append(f"        {put.format(i='off + 1', v='(byte) v')}")
        o.append("    }")
        o.append("")
        o.append(f"    public static void putU32({arr}, int off, long v) {{")
        o.append("        putU16(b, off, (int) (v >>> 16));")
        o.append("        putU16(b, off + 2, (int) v);")
        o.append("    }")
        o.append("")
        o.append(f"    public static void putU64({arr}, int off, long v) {{")
        o.append("        putU32(b, off, v >>> 32);")
        o.append("        putU32(b, off + 4, v);")
        o.append("    }")
        o.append("")
        o.append("    /** Copy the 16-byte address at off into dst[0..16). */")
        o.append(f"    public static void getAddr({arr}, int off, byte[] dst) {{")
        o.append(f"        for (int i = 0; i < 16; i++) dst[i] = {get.format(i='off + i')};")
        o.append("    }")
        o.append("")
        o.append("    /** Store src[0..16) as the address at off. */")
        o.append(f"    public static void putAddr({arr}, int off, byte[] src) {{")
        o.append(f"        for (int i = 0; i < 16; i++) {put.format(i='off + i', v='src[i]')}")
        o.append("    }")
    o += [
        "",
        "    /** True when the 16-byte addresses a and b are equal. */",
        "    public static boolean addrEquals(byte[] a, byte[] b) {",
        "        int diff = 0;",
        "        for (int i = 0; i < 16; i++) diff |= a[i] ^ b[i];",
        "        return diff == 0;",
        "    }",
        "",
        "    /** Copy the 16-byte address src into dst. */",
        "    public static void addrCopy(byte[] dst, byte[] src) {",
        "        for (int i = 0; i < 16; i++) dst[i] = src[i];",
        "    }",
        "}",
        "",
    ]
    return "\n".join(o)


def render_java(spec: Spec) -> dict[str, str]:
    """``{file name: source}`` for the package directory."""
    files = {
        "PNI.java": _pni(spec),
        "PniStatus.java": _status(spec),
        "Verdict.java": _verdict(spec),
        "PanCode.java": _pancode(spec),
        "PniBytes.java": _bytes(spec),
    }
    return files
