"""``pan codec`` (pan_runtime/cli/codec.py): a user's header spec becomes C, Java and Python
codecs that agree byte for byte (compiled with gcc and javac and run on the same values), the
codecs of pan's own headers come out as the ones the reference protocols use, and a bad spec
is refused with ``file:line: key`` of the problem."""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pan_runtime import protocol_headers
from pan_runtime.cli.main import main
from pan_runtime.resources import include_dir, pni_java_dir, protocols_dir

PAN = [sys.executable, "-m", "pan_runtime.cli.main"]
SPEC = """\
# a user's protocol: two headers
[codecs]
c_prefix = "t_"
java_package = "t.wire"

[[struct]]
name = "all_types"
doc = "One field of every type."
fields = [
  { name = "a", type = "u8" },
  { name = "b", type = "u16" },
  { name = "c", type = "u32" },
  { name = "d", type = "u64" },
  { name = "e", type = "i32" },
  { name = "f", type = "i64" },
  { name = "g", type = "addr" },
]

[[struct]]
name = "probe_reply"
doc = "Fields out of order of size."
fields = [
  { name = "hops", type = "u8" },
  { name = "origin", type = "addr" },
  { name = "delta_ns", type = "i64" },
  { name = "seq", type = "u32" },
]
"""
#: (struct, C type, Java class) -> fields as (name, type), in order
STRUCTS = {
    "all_types": [("a", "u8"), ("b", "u16"), ("c", "u32"), ("d", "u64"), ("e", "i32"), ("f", "i64"), ("g", "addr")],
    "probe_reply": [("hops", "u8"), ("origin", "addr"), ("delta_ns", "i64"), ("seq", "u32")],
}
BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "i32": 32, "i64": 64}


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


def _java_ident(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _values(ftype: str, rng: random.Random) -> list[str]:
    """Edge values of a field type, then random ones, as the harnesses read them."""
    if ftype == "addr":
        return ["00" * 16, "ff" * 16, bytes(range(16)).hex()] + [rng.randbytes(16).hex() for _ in range(3)]
    bits = BITS[ftype]
    if ftype.startswith("i"):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return [str(v) for v in (0, lo, hi, -1, *(rng.randint(lo, hi) for _ in range(2)))]
    hi = (1 << bits) - 1
    return [str(v) for v in (0, hi, 1, hi >> 1, *(rng.randint(0, hi) for _ in range(2)))]


def _records() -> list[tuple[str, list[str]]]:
    rng = random.Random(15)
    out = []
    for struct, fields in STRUCTS.items():
        columns = [_values(t, rng) for _, t in fields]
        out += [(struct, [col[i] for col in columns]) for i in range(len(columns[0]))]
    return out


def _wire(struct: str, values: list[str]) -> str:
    """The bytes the spec means (network order, no padding), worked out independently."""
    raw = b""
    for (_, ftype), v in zip(STRUCTS[struct], values, strict=True):
        if ftype == "addr":
            raw += bytes.fromhex(v)
        else:
            raw += int(v).to_bytes(BITS[ftype] // 8, "big", signed=ftype.startswith("i"))
    return raw.hex()


# ---- one harness per language: "enc STRUCT v..." -> wire hex; "dec STRUCT hex" -> values

def _c_harness() -> str:
    o = ["#include <inttypes.h>", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>",
         '#include "user_headers.h"', "",
         "static void hex_in(const char *s, uint8_t *out, size_t n) {",
         "    for (size_t i = 0; i < n; i++) { unsigned v; if (sscanf(s + 2 * i, \"%2x\", &v) != 1) exit(3); out[i] = (uint8_t)v; }",
         "}",
         "static void hex_out(const uint8_t *b, size_t n) { for (size_t i = 0; i < n; i++) printf(\"%02x\", b[i]); }",
         "", "int main(void) {", "    char line[4096];", "    while (fgets(line, sizeof line, stdin)) {",
         "        char *t[32]; int n = 0;",
         "        for (char *p = strtok(line, \" \\n\"); p && n < 32; p = strtok(NULL, \" \\n\")) t[n++] = p;",
         "        if (n < 3) return 4;"]
    for struct, fields in STRUCTS.items():
        size = f"T_{struct.upper()}_SIZE"
        o += [f'        if (!strcmp(t[1], "{struct}")) {{', f"            t_{struct} s; uint8_t b[{size}];",
              '            if (!strcmp(t[0], "enc")) {']
        for k, (name, ftype) in enumerate(fields):
            arg = f"t[{k + 2}]"
            if ftype == "addr":
                o.append(f"                hex_in({arg}, s.{name}, 16);")
            elif ftype.startswith("i"):
                o.append(f"                s.{name} = (int{BITS[ftype]}_t)strtoll({arg}, NULL, 10);")
            else:
                o.append(f"                s.{name} = (uint{BITS[ftype]}_t)strtoull({arg}, NULL, 10);")
        o += [f"                t_{struct}_encode(&s, b);", f"                hex_out(b, {size});", "            } else {",
              f"                hex_in(t[2], b, {size});", f"                t_{struct}_decode(b, &s);"]
        for k, (name, ftype) in enumerate(fields):
            sep = 'printf(" "); ' if k else ""
            if ftype == "addr":
                o.append(f"                {sep}hex_out(s.{name}, 16);")
            elif ftype.startswith("i"):
                o.append(f'                {sep}printf("%" PRId64, (int64_t)s.{name});')
            else:
                o.append(f'                {sep}printf("%" PRIu64, (uint64_t)s.{name});')
        o += ["            }", '            printf("\\n");', "        }"]
    o += ["    }", "    return 0;", "}", ""]
    return "\n".join(o)


def _java_harness() -> str:
    parse = {"u8": "Integer.parseInt", "u16": "Integer.parseInt", "i32": "Integer.parseInt",
             "u32": "Long.parseLong", "i64": "Long.parseLong", "u64": "Long.parseUnsignedLong"}
    o = ["import java.io.BufferedReader;", "import java.io.InputStreamReader;", "import java.nio.ByteBuffer;",
         "import java.nio.charset.StandardCharsets;", "import java.util.Arrays;", "import t.wire.*;", "",
         "public final class Main {",
         "    static byte[] hex(String s) {",
         "        byte[] b = new byte[s.length() / 2];",
         "        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);",
         "        return b;", "    }",
         "    static String hex(byte[] b) {",
         "        StringBuilder s = new StringBuilder();", "        for (byte x : b) s.append(String.format(\"%02x\", x & 0xff));",
         "        return s.toString();", "    }", "",
         "    public static void main(String[] args) throws Exception {",
         "        BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));",
         "        StringBuilder out = new StringBuilder();",
         "        for (String line; (line = r.readLine()) != null;) {",
         "            String[] t = line.trim().split(\" \");"]
    for struct, fields in STRUCTS.items():
        cls = _camel(struct)
        o += [f'            if (t[1].equals("{struct}")) {{', f"                {cls} s = new {cls}();",
              f"                byte[] b = new byte[{cls}.SIZE];", '                if (t[0].equals("enc")) {']
        for k, (name, ftype) in enumerate(fields):
            field = _java_ident(name)
            if ftype == "addr":
                o.append(f"                    System.arraycopy(hex(t[{k + 2}]), 0, s.{field}, 0, 16);")
            else:
                o.append(f"                    s.{field} = {parse[ftype]}(t[{k + 2}]);")
        o += ["                    s.encode(b, 0);",
              f"                    ByteBuffer bb = ByteBuffer.allocate({cls}.SIZE + 3);",
              "                    s.encode(bb, 3);",
              f"                    if (!Arrays.equals(b, Arrays.copyOfRange(bb.array(), 3, 3 + {cls}.SIZE)))",
              '                        throw new AssertionError("byte[] and ByteBuffer encodings differ");',
              "                    out.append(hex(b));", "                } else {", "                    s.decode(hex(t[2]), 0);"]
        parts = []
        for name, ftype in fields:
            field = _java_ident(name)
            parts.append(f"hex(s.{field})" if ftype == "addr" else
                         (f"Long.toUnsignedString(s.{field})" if ftype == "u64" else f"String.valueOf(s.{field})"))
        o.append(f'                    out.append(String.join(" ", {", ".join(parts)}));')
        o += ["                }", "                out.append('\\n');", "            }"]
    o += ["        }", "        System.out.print(out);", "    }", "}", ""]
    return "\n".join(o)


def _python_run(module: Path, script: str) -> str:
    spec = importlib.util.spec_from_file_location("user_headers", module)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = []
    for line in script.splitlines():
        op, struct, *args = line.split()
        cls = mod.STRUCTS[struct]
        fields = STRUCTS[struct]
        if op == "enc":
            kw = {n: bytes.fromhex(v) if t == "addr" else int(v) for (n, t), v in zip(fields, args, strict=True)}
            raw = cls(**kw).pack()
            buf = bytearray(len(raw) + 5)
            cls(**kw).pack_into(buf, 5)
            assert bytes(buf[5:]) == raw
            out.append(raw.hex())
        else:
            s = cls.unpack(bytes.fromhex(args[0]))
            out.append(" ".join(getattr(s, n).hex() if t == "addr" else str(getattr(s, n)) for n, t in fields))
    return "\n".join(out) + "\n"


def _pan_codec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PAN, "codec", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_c_java_and_python_codecs_agree_byte_for_byte(tmp_path: Path):
    gcc, javac, java = shutil.which("gcc"), shutil.which("javac"), shutil.which("java")
    assert gcc and javac and java, "gcc and a JDK 17 are required"
    (tmp_path / "user_headers.toml").write_text(SPEC)
    proc = _pan_codec("user_headers.toml", "--out", "gen", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    gen = tmp_path / "gen"
    assert f"-I {include_dir()}" in proc.stdout and str(pni_java_dir()) in proc.stdout
    records = _records()
    enc = "".join(f"enc {struct} {' '.join(values)}\n" for struct, values in records)
    wire = [_wire(struct, values) for struct, values in records]
    dec = "".join(f"dec {struct} {w}\n" for (struct, _), w in zip(records, wire, strict=True))
    expected_values = "".join(" ".join(values) + "\n" for _, values in records)

    (tmp_path / "harness.c").write_text(_c_harness())
    subprocess.run([gcc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(include_dir()), "-I", str(gen),
                    "-o", str(tmp_path / "harness"), str(tmp_path / "harness.c")], check=True, timeout=120)
    c_run = [str(tmp_path / "harness")]

    (tmp_path / "Main.java").write_text(_java_harness())
    sources = [*sorted((pni_java_dir() / "org/pan/pni").glob("*.java")), *sorted((gen / "java/t/wire").glob("*.java"))]
    assert [p.name for p in sources[-2:]] == ["AllTypes.java", "ProbeReply.java"]
    classes = tmp_path / "classes"
    subprocess.run([javac, "--release", "17", "-Xlint:all", "-Werror", "-d", str(classes), *map(str, sources),
                    str(tmp_path / "Main.java")], check=True, timeout=180)
    java_run = [java, "-cp", str(classes), "Main"]

    def run(cmd: list[str], script: str) -> str:
        p = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout

    encodings = {"c": run(c_run, enc), "java": run(java_run, enc), "python": _python_run(gen / "user_headers.py", enc)}
    assert encodings["c"].splitlines() == wire
    assert encodings == dict.fromkeys(encodings, encodings["c"])
    decodings = {"c": run(c_run, dec), "java": run(java_run, dec), "python": _python_run(gen / "user_headers.py", dec)}
    assert decodings == dict.fromkeys(decodings, expected_values)


def test_pan_codec_makes_the_reference_protocols_codecs(tmp_path: Path):
    """The generator is pan's own: its own header spec gives the codecs its protocols use."""
    spec = protocols_dir() / "headers.toml"
    proc = _pan_codec(str(spec), "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shipped = {tmp_path / "headers.h": protocols_dir() / "headers.h",
               tmp_path / "java/pan/protocols/PingHdr.java": protocols_dir() / "java/pan/protocols/PingHdr.java",
               tmp_path / "headers.py": Path(protocol_headers.__file__)}
    for made, theirs in shipped.items():
        assert made.read_text().splitlines()[1:] == theirs.read_text().splitlines()[1:], made.name
        assert "GENERATED by `pan codec` from headers.toml" in made.read_text().splitlines()[0]


def test_check_names_stale_files_and_lang_picks_languages(tmp_path: Path):
    (tmp_path / "mine.toml").write_text(SPEC)
    assert _pan_codec("mine.toml", "--lang", "python,c", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.h", "mine.py", "mine.toml"]
    assert _pan_codec("mine.toml", "--lang", "python,c", "--check", cwd=tmp_path).returncode == 0
    (tmp_path / "mine.h").write_text("/* edited */\n")
    proc = _pan_codec("mine.toml", "--check", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.split() == ["stale:", "mine.h", "stale:", "java/t/wire/AllTypes.java",
                                   "stale:", "java/t/wire/ProbeReply.java"]
    again = _pan_codec("mine.toml", "--lang", "c", cwd=tmp_path)
    assert again.returncode == 0 and "wrote mine.h" in again.stdout


def _line(text: str, marker: str) -> int:
    """The line of the last occurrence of ``marker``."""
    return [i for i, line in enumerate(text.splitlines(), 1) if marker in line][-1]


@pytest.mark.parametrize(
    ("old", "new", "marker", "key", "says"),
    [
        ('{ name = "b", type = "u16" }', '{ name = "b", type = "f32" }', '"f32"', "struct[0].fields[1].type",
         "unknown type 'f32'"),
        ('{ name = "seq", type = "u32" }', '{ name = "seq", typ = "u32" }', "typ =", "struct[1].fields[3].typ",
         "unknown key 'typ'"),
        ('{ name = "c", type = "u32" }', '{ name = "a", type = "u32" }', '"a", type = "u32"', "struct[0].fields[2].name",
         "duplicate field names"),
        ('c_prefix = "t_"', 'c_prefix = "T"', "c_prefix", "codecs.c_prefix", "must be lower-case"),
        ('c_prefix = "t_"', 'c_prefix = "pni_"', "c_prefix", "codecs.c_prefix", "pni.h's own"),
        ('java_package = "t.wire"', 'java_package = "t.int"', "java_package", "codecs.java_package",
         "not a lower-case dotted package"),
        ('{ name = "hops", type = "u8" }', '{ name = "int", type = "u8" }', '"int"', "struct[1].fields[0].name",
         "a C keyword"),
        ('{ name = "hops", type = "u8" }', '{ name = "pack", type = "u8" }', '"pack"', "struct[1].fields[0].name",
         "taken in the Python codec"),
        ('name = "probe_reply"', 'name = "pni_error"', "pni_error", "struct[1].name", "would hide the PniError"),
        ('name = "probe_reply"', 'name = "all_types"', 'name = "all_types"', "struct[1].name", "duplicate struct name"),
        ('doc = "Fields out of order of size."\n', "", "[[struct]]", "struct[1]", "missing key 'doc'"),
    ],
    ids=["type", "unknown-key", "duplicate-field", "c-prefix", "pni-prefix", "java-keyword-package", "c-keyword",
         "python-method", "class-clash", "duplicate-struct", "missing-doc"],
)
def test_a_bad_spec_is_refused_with_file_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str,
                                                      new: str, marker: str, key: str, says: str):
    assert old in SPEC
    text = SPEC.replace(old, new)
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    code = main(["codec", str(spec), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"pan codec: error: {spec}:{_line(text, marker)}: {key}: "), err
    assert says in err
    assert not (tmp_path / "out").exists()


def test_unreadable_specs_and_bad_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    spec = tmp_path / "broken.toml"
    spec.write_text(SPEC.replace('c_prefix = "t_"', 'c_prefix = "t_'))
    assert main(["codec", str(spec)]) == 2
    assert f"{spec}:{_line(SPEC, 'c_prefix')}: not valid TOML" in capsys.readouterr().err
    assert main(["codec", str(tmp_path / "none.toml")]) == 2
    assert "none.toml: cannot read" in capsys.readouterr().err
    spec.write_text(SPEC)
    assert main(["codec", str(spec), "--lang", "c,rust"]) == 2
    assert "--lang: unknown language rust" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["codec", str(spec), "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    odd = tmp_path / "2headers.toml"
    odd.write_text(SPEC)
    assert main(["codec", str(odd), "--lang", "python"]) == 2
    assert "name the spec so that its stem can name a Python module" in capsys.readouterr().err
