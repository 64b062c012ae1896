"""Every malformed object is refused with one precise CodeObjectError, in the loader's fixed order.

Defects are made by compiling a template object and mutating its bytes, or by compiling
something the loader does not accept (a shared object, an aarch64 object, a constructor).
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from native_helpers import SOURCES

from pan_native.elfobject import MAX_IMAGE, parse_object
from pan_native.image import Resolved, link
from pan_native.runtime import NativeRuntime
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError

SHDR = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize


@pytest.fixture
def template(cc) -> bytes:
    return cc(SOURCES / "dep.c", ["-O2", "-fPIC"], "template")


def _sections(data: bytes) -> dict[str, tuple[int, int]]:
    """Section name -> (index, offset of its header)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    str_off = SHDR.unpack_from(data, shoff + 64 * shstrndx)[4]
    out = {}
    for i in range(shnum):
        name_off = SHDR.unpack_from(data, shoff + 64 * i)[0]
        end = data.index(b"\0", str_off + name_off)
        out[data[str_off + name_off : end].decode()] = (i, shoff + 64 * i)
    return out


def _set_field(data: bytes, section: str, field: int, value: int) -> bytes:
    """Rewrite field number ``field`` of SHDR in the header of ``section``."""
    buf = bytearray(data)
    at = _sections(data)[section][1]
    fields = list(SHDR.unpack_from(buf, at))
    fields[field] = value
    SHDR.pack_into(buf, at, *fields)
    return bytes(buf)


def _nsections(data: bytes) -> int:
    return struct.unpack_from("<H", data, 0x3C)[0]


def _rela(data: bytes, section: str = ".rela.text") -> int:
    return SHDR.unpack_from(data, _sections(data)[section][1])[4]


def _refused(data: bytes) -> str:
    with pytest.raises(CodeObjectError) as info:
        parse_object(data)
    return str(info.value)


# -- 1. truncated or corrupt ------------------------------------------------------------


def test_empty():
    assert _refused(b"") == "native object: truncated ELF: 0 bytes, the ELF header needs 64"


def test_truncated_header(template):
    assert _refused(template[:40]) == "native object: truncated ELF: 40 bytes, the ELF header needs 64"


def test_truncated_section_table(template):
    n = len(template) - 10
    shoff, = struct.unpack_from("<Q", template, 0x28)
    need = 64 * _nsections(template)
    assert _refused(template[:n]) == (
        f"native object: truncated ELF: section header table at offset {shoff} needs {need} bytes, the file has {n}"
    )


def test_section_past_end_of_file(template):
    index, _ = _sections(template)[".text"]
    data = _set_field(template, ".text", 5, 1 << 20)
    offset = SHDR.unpack_from(data, _sections(data)[".text"][1])[4]
    assert _refused(data) == (
        f"native object: truncated ELF: section {index} at offset {offset} needs {1 << 20} bytes, "
        f"the file has {len(data)}"
    )


def test_bad_magic(template):
    assert _refused(b"MZ\x90\x00" + template[4:]) == (
        "native object: corrupt ELF: bad magic b'MZ\\x90\\x00', expected b'\\x7fELF'"
    )


def test_32_bit_object(tmp_path):
    src = tmp_path / "a.c"
    src.write_text("int f(int x) { return x; }\n")
    subprocess.run(["cc", "-m32", "-c", "-o", str(tmp_path / "a.o"), str(src)], check=True)
    assert _refused((tmp_path / "a.o").read_bytes()) == (
        "native object: corrupt ELF: class 1 is not ELFCLASS64 (2); build for x86-64"
    )


def test_big_endian(template):
    data = template[:5] + b"\x02" + template[6:]
    assert _refused(data) == "native object: corrupt ELF: data encoding 2 is not little-endian (1)"


def test_section_name_table_out_of_range(template):
    data = bytearray(template)
    struct.pack_into("<H", data, 0x3E, 99)
    assert _refused(bytes(data)) == (
        f"native object: corrupt ELF: section name table index 99 is out of range ({_nsections(template)} sections)"
    )


# -- 2. not relocatable, 3. wrong machine ---------------------------------------------------


def test_shared_object(tmp_path):
    src = tmp_path / "a.c"
    src.write_text("int f(int x) { return x; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "a.so"), str(src)], check=True)
    assert _refused((tmp_path / "a.so").read_bytes()) == (
        "native object: not a relocatable object: e_type is ET_DYN (a shared object); build it with `cc -c`"
    )


def test_executable(tmp_path):
    src = tmp_path / "a.c"
    src.write_text("int main(void) { return 0; }\n")
    subprocess.run(["cc", "-no-pie", "-o", str(tmp_path / "a"), str(src)], check=True)
    assert _refused((tmp_path / "a").read_bytes()) == (
        "native object: not a relocatable object: e_type is ET_EXEC (an executable); build it with `cc -c`"
    )


def test_aarch64_object(tmp_path):
    src = tmp_path / "a.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    out = tmp_path / "a.o"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", "--target=aarch64-linux", "-c", "-o", str(out), str(src)], check=True
    )
    assert _refused(out.read_bytes()) == (
        "native object: wrong machine: EM_AARCH64, this loader links EM_X86_64 objects only"
    )


# -- 4. indexes out of range -----------------------------------------------------------------


def test_relocation_target_section_out_of_range(template):
    index, _ = _sections(template)[".rela.text"]
    data = _set_field(template, ".rela.text", 7, 200)
    assert _refused(data) == (
        f"native object: section index out of range: relocation section '.rela.text' (index {index}) "
        f"applies to section 200, the object has {_nsections(template)} sections"
    )


def test_symbol_section_out_of_range(template):
    obj = parse_object(template)
    sym = obj.globals()["dep_add"]
    symtab = SHDR.unpack_from(template, _sections(template)[".symtab"][1])[4]
    data = bytearray(template)
    struct.pack_into("<H", data, symtab + 24 * sym.index + 6, 200)
    assert _refused(bytes(data)) == (
        f"native object: section index out of range: symbol 'dep_add' (index {sym.index}) is in section 200, "
        f"the object has {_nsections(template)} sections"
    )


def test_relocation_symbol_out_of_range(template):
    nsyms = len(parse_object(template).symbols)
    data = bytearray(template)
    at = _rela(template)
    _, info, _ = struct.unpack_from("<QQq", data, at)
    struct.pack_into("<Q", data, at + 8, (5000 << 32) | (info & 0xFFFFFFFF))
    assert _refused(bytes(data)) == (
        f"native object: symbol index out of range: relocation 0 in '.rela.text' names symbol 5000, "
        f"the symbol table has {nsyms} entries"
    )


def test_relocation_offset_past_section(template):
    data = bytearray(template)
    at = _rela(template)
    struct.pack_into("<Q", data, at, 0x10000)
    text_size = SHDR.unpack_from(template, _sections(template)[".text"][1])[5]
    assert _refused(bytes(data)) == (
        f"native object: relocation 0 in '.rela.text' at offset 0x10000 reaches past the end of "
        f"'.text' ({text_size:#x} bytes)"
    )


# -- 5. unsupported sections ------------------------------------------------------------------


def test_constructor_refused(cc):
    data = cc("static int x; __attribute__((constructor)) static void boot(void) { x = 1; }\n"
              "int accept(unsigned c, unsigned n) { return x; }\n", name="ctor")
    assert _refused(data) == (
        "native object: unsupported section '.init_array': constructors and destructors are not run; "
        "use the init and finalize entry points"
    )


def test_thread_local_refused(cc):
    data = cc("__thread int t; int accept(unsigned c, unsigned n) { return t++; }\n", name="tls")
    assert _refused(data) == "native object: unsupported section '.tbss': thread-local storage"


# -- 6. relocation types ----------------------------------------------------------------------


def test_unsupported_relocation_large_model(cc):
    data = cc("extern int f(int); int g(int x) { return f(x) + 1; }\n", ["-O2", "-fPIC", "-mcmodel=large"], "big")
    msg = _refused(data)
    assert msg.startswith("native object: unsupported relocation R_X86_64_PLTOFF64 in '.text' at offset 0x")
    assert msg.endswith(" against 'f'")


def test_unsupported_relocation_type_mutated(template):
    data = bytearray(template)
    at = _rela(template)
    off, info, _ = struct.unpack_from("<QQq", data, at)
    struct.pack_into("<Q", data, at + 8, (info & ~0xFFFFFFFF) | 23)
    msg = _refused(bytes(data))
    assert msg.startswith(f"native object: unsupported relocation R_X86_64_TPOFF32 in '.text' at offset {off:#x}")


def test_unknown_relocation_number(template):
    data = bytearray(template)
    at = _rela(template)
    off, info, _ = struct.unpack_from("<QQq", data, at)
    struct.pack_into("<Q", data, at + 8, (info & ~0xFFFFFFFF) | 200)
    assert _refused(bytes(data)).startswith(
        f"native object: unsupported relocation type 200 in '.text' at offset {off:#x}"
    )


# -- 7. sizes -----------------------------------------------------------------------------------


def test_huge_bss(template):
    index, _ = _sections(template)[".bss"]
    data = _set_field(template, ".bss", 5, 1 << 40)
    assert _refused(data) == (
        f"native object: section '.bss' (index {index}) is {1 << 40} bytes; an image holds at most {MAX_IMAGE}"
    )


def test_sections_sum_past_limit(template):
    data = _set_field(template, ".bss", 5, MAX_IMAGE - 8)
    data = _set_field(data, ".bss", 8, 4096)
    assert _refused(data) == (
        f"native object: the sections need more than {MAX_IMAGE} bytes; an image holds at most {MAX_IMAGE}"
    )


def test_huge_alignment(template):
    index, _ = _sections(template)[".data"]
    data = _set_field(template, ".data", 8, 1 << 20)
    assert _refused(data) == (
        f"native object: section '.data' (index {index}) asks for alignment {1 << 20}; "
        "at most 4096 (a power of two) is supported"
    )


# -- 8. at link time: undefined symbols, overflows, entry points --------------------------------


def test_undefined_symbol(cc, host):
    data = cc('int printf(const char *, ...); int accept(unsigned c, unsigned n) { return printf("x"); }\n',
              name="undef")
    code = CodeObject.create("native", data)
    with pytest.raises(CodeObjectError) as info:
        NativeRuntime().load(code, [], host)
    assert str(info.value) == (
        f"{code.short_name}: native object: undefined symbol 'printf' is neither a PNI call nor an export "
        "of a dependency (allowed helpers: memcpy, memset, memmove, memcmp)"
    )


def test_unknown_pni_call_is_undefined(cc, host):
    data = cc("int pni_teleport(int); int accept(unsigned c, unsigned n) { return pni_teleport(1); }\n",
              name="undef2")
    with pytest.raises(CodeObjectError, match="undefined symbol 'pni_teleport' is neither a PNI call"):
        NativeRuntime().load(CodeObject.create("native", data), [], host)


def test_dependency_symbol_not_exported(cc, host):
    rt = NativeRuntime()
    dep_code = CodeObject.create("native", cc(SOURCES / "dep.c", name="dep"), exports=["dep_add"])
    dep = rt.load(dep_code, [], host)
    data = cc("extern long shared_counter; int accept(unsigned c, unsigned n) { return (int)shared_counter; }\n",
              name="user")
    try:
        with pytest.raises(CodeObjectError, match="undefined symbol 'shared_counter'"):
            rt.load(CodeObject.create("native", data, dependencies=[dep_code.name]), [dep], host)
    finally:
        dep.unload()


def test_relocation_overflow(cc):
    obj = parse_object(cc("extern int far; int get(void) { return far; }\n", ["-O2", "-fno-pic"], "far"))
    far = ctypes.c_int(5)  # on the Python heap, far above 4 GiB
    with pytest.raises(CodeObjectError) as info:
        link(obj, lambda name: Resolved(ctypes.addressof(far), False, far))
    msg = str(info.value)
    assert msg.startswith("native object: relocation R_X86_64_PC32 against 'far' in '.text' at offset 0x")
    assert " overflows 32 bits (value 0x" in msg and msg.endswith("; rebuild with -fPIC")


def test_missing_entry_point(cc, host):
    data = cc("int receive(unsigned c, unsigned n) { return 0; }\n", name="noaccept")
    code = CodeObject.create("native", data)
    with pytest.raises(CodeObjectError) as info:
        NativeRuntime().load(code, [], host)
    assert str(info.value) == (
        f"{code.short_name}: native object: entry point 'accept' names 'accept', "
        "which the object does not define as a global function"
    )


def test_order_type_before_machine(tmp_path):
    """An aarch64 shared object is refused for its type first: the checks run in a fixed order."""
    src = tmp_path / "a.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    out = tmp_path / "a.so"
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "--target=aarch64-linux", "-shared", "-fPIC", "-nostdlib",
                    "-o", str(out), str(src)], check=True, capture_output=True)
    assert _refused(Path(out).read_bytes()).startswith("native object: not a relocatable object: e_type is ET_DYN")


# -- objects that linked on main and then killed the node, or failed untyped ------------------

#: a child process installs a code object on a node and runs one capsule through it; it
#: prints the refusal's reason, or "ran" (on main these objects killed the process instead)
INSTALL_AND_RUN = """
import sys
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
from pan_runtime.net.application import Application
from pan_runtime.node.node import Node
from pan_runtime.plugin.plugins import default_plugins

code = CodeObject.create("native", open(sys.argv[1], "rb").read())
with Node(1, plugins=default_plugins()) as node:
    try:
        node.install(code)
    except CodeObjectError as exc:
        print("refused", exc.reason, exc)
        raise SystemExit(0)
    app = Application(node)
    app.send(code, bytes(8))
    node.process()
    print("ran")
"""


def _install_and_run(data: bytes, tmp_path: Path) -> str:
    obj = tmp_path / "object.o"
    obj.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", INSTALL_AND_RUN, str(obj)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"the node process died ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout.strip()


WRITABLE_CODE = r"""
/* code and a counter it writes in one section asking to be writable and executable */
__asm__(
    ".section .wxcode,\"awx\",@progbits\n"
    ".globl accept\n"
    ".type accept,@function\n"
    "accept:\n"
    "    addl $1, counter(%rip)\n"
    "    xorl %eax, %eax\n"
    "    ret\n"
    ".size accept, .-accept\n"
    "counter: .long 0\n"
    ".text\n");
"""


def test_a_writable_and_executable_section_is_refused(cc, tmp_path):
    data = cc(WRITABLE_CODE, name="wx")
    msg = _refused(data)
    assert "section '.wxcode'" in msg and "both writable and executable" in msg
    assert _install_and_run(data, tmp_path).startswith("refused writable_code")


def _symbol_at(data: bytes, name: str, value: int, size: int | None = None) -> bytes:
    """``data`` with symbol ``name``'s st_value (and st_size) rewritten."""
    sym = parse_object(data).globals()[name]
    symtab = SHDR.unpack_from(data, _sections(data)[".symtab"][1])[4]
    buf = bytearray(data)
    struct.pack_into("<Q", buf, symtab + 24 * sym.index + 8, value)
    if size is not None:
        struct.pack_into("<Q", buf, symtab + 24 * sym.index + 16, size)
    return bytes(buf)


def test_a_symbol_outside_its_section_is_refused(template, tmp_path):
    text = SHDR.unpack_from(template, _sections(template)[".text"][1])[5]
    data = _symbol_at(template, "accept", 0x100000)
    msg = _refused(data)
    assert f"symbol 'accept' (index {parse_object(template).globals()['accept'].index}) at 0x100000" in msg
    assert f"lies outside its section '.text' ({text:#x} bytes)" in msg
    assert _install_and_run(data, tmp_path).startswith("refused symbol_outside_section")


@pytest.mark.parametrize(
    "value, size",
    [
        pytest.param(None, None, id="function-at-end"),  # a function of no bytes at the very end
        pytest.param(0, 1 << 20, id="size-past-end"),
        pytest.param(1 << 63, 1 << 63, id="wrapping"),
    ],
)
def test_symbol_extents_are_checked(template, value, size):
    text = SHDR.unpack_from(template, _sections(template)[".text"][1])[5]
    with pytest.raises(CodeObjectError) as err:
        parse_object(_symbol_at(template, "dep_add", text if value is None else value, 0 if size is None else size))
    assert err.value.reason == "symbol_outside_section"


def test_a_data_symbol_may_end_its_section(cc):
    obj = parse_object(cc("char buf[16]; char end[0]; int accept(unsigned c, unsigned n) { return buf[0]; }\n",
                          name="end"))
    assert "end" in obj.globals()


def test_a_relocation_of_a_section_the_loader_does_not_map_is_refused(cc, tmp_path):
    data = cc("int x; int *p = &x; int accept(unsigned c, unsigned n) { return 0; }\n", name="unmapped")
    name = next(n for n in _sections(data) if n.startswith(".data.rel"))
    index, _ = _sections(data)[name]
    data = _set_field(data, name, 1, 0x60000000)  # sh_type: an OS-specific type the loader skips
    msg = _refused(data)
    assert f"applies to section '{name}' (index {index}), which has type 0x60000000" in msg
    assert _install_and_run(data, tmp_path).startswith("refused unmapped_section")


def test_a_64_bit_relocation_value_wraps_instead_of_failing(template):
    """A 64-bit PC-relative value past the signed range wraps (as ld does) instead of an
    untyped struct.error; nothing here runs the code."""
    data = bytearray(template)
    at = _rela(template)
    off, info, _ = struct.unpack_from("<QQq", data, at)
    struct.pack_into("<Qq", data, at + 8, (info & ~0xFFFFFFFF) | 24, (1 << 63) - 1)  # PC64, huge addend
    image = link(parse_object(bytes(data)), lambda name: Resolved(0x1000, True))
    image.close()
