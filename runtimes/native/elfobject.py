"""A validated model of one x86-64 ELF relocatable object (``.o``): sections, symbols, relocations.

Parsing never maps or runs anything; it turns untrusted bytes into plain data or raises
``CodeObjectError``. The checks run in this fixed order and each failure has one message:

1. truncated or corrupt ELF (identification, header, section table, section contents)
2. not a relocatable object (``ET_EXEC``, ``ET_DYN``, ...)
3. wrong machine (anything but ``EM_X86_64``)
4. section and symbol indexes out of range (symbol table, relocation links and targets,
   symbols' sections, relocations' symbols and offsets)
5. unsupported sections (constructors/destructors, thread-local storage, a section both
   writable and executable: ``writable_code``, the image is W^X), relocations of an
   allocated section the loader does not map (``unmapped_section``)
6. unsupported relocation types (named)
7. sizes that would overflow the image (section sizes, alignments, the total); symbols whose
   value (and size) lie outside their section (``symbol_outside_section``: calling one would
   jump outside the code)

Refusals that could otherwise have crashed the node carry a ``FaultReason`` (``reason``).

Undefined symbols and relocation overflows are found when the object is linked
(``pan_native.image``), because they depend on what it is linked against.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile

from pan_runtime.errors import CodeObjectError, FaultReason

__all__ = [
    "MAX_IMAGE",
    "RELOC_NAMES",
    "SUPPORTED_RELOCS",
    "ElfObject",
    "Relocation",
    "Section",
    "Symbol",
    "parse_object",
]

#: the largest image (all sections, GOT and trampolines) one object may need, in bytes
MAX_IMAGE = 256 * 1024 * 1024
#: the largest section alignment honoured (the image is page aligned)
MAX_ALIGN = 4096

SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHN_XINDEX = 0xFFFF

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_TLS = 0x400

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4

_SHT_PROGBITS = 1
_SHT_SYMTAB = 2
_SHT_RELA = 4
_SHT_NOBITS = 8
_SHT_REL = 9
_SHT_SYMTAB_SHNDX = 18
_SHT_NOTE = 7
_SHT_X86_64_UNWIND = 0x70000001
_CTOR_TYPES = {14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY", 16: "SHT_PREINIT_ARRAY"}
_CTOR_NAMES = (".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors", ".init", ".fini")

#: relocation type numbers of x86-64 (System V ABI) and their names
RELOC_NAMES = {
    0: "R_X86_64_NONE", 1: "R_X86_64_64", 2: "R_X86_64_PC32", 3: "R_X86_64_GOT32",
    4: "R_X86_64_PLT32", 5: "R_X86_64_COPY", 6: "R_X86_64_GLOB_DAT", 7: "R_X86_64_JUMP_SLOT",
    8: "R_X86_64_RELATIVE", 9: "R_X86_64_GOTPCREL", 10: "R_X86_64_32", 11: "R_X86_64_32S",
    12: "R_X86_64_16", 13: "R_X86_64_PC16", 14: "R_X86_64_8", 15: "R_X86_64_PC8",
    16: "R_X86_64_DTPMOD64", 17: "R_X86_64_DTPOFF64", 18: "R_X86_64_TPOFF64",
    19: "R_X86_64_TLSGD", 20: "R_X86_64_TLSLD", 21: "R_X86_64_DTPOFF32",
    22: "R_X86_64_GOTTPOFF", 23: "R_X86_64_TPOFF32", 24: "R_X86_64_PC64",
    25: "R_X86_64_GOTOFF64", 26: "R_X86_64_GOTPC32", 27: "R_X86_64_GOT64",
    28: "R_X86_64_GOTPCREL64", 29: "R_X86_64_GOTPC64", 30: "R_X86_64_GOTPLT64",
    31: "R_X86_64_PLTOFF64", 32: "R_X86_64_SIZE32", 33: "R_X86_64_SIZE64",
    34: "R_X86_64_GOTPC32_TLSDESC", 35: "R_X86_64_TLSDESC_CALL", 36: "R_X86_64_TLSDESC",
    37: "R_X86_64_IRELATIVE", 38: "R_X86_64_RELATIVE64", 41: "R_X86_64_GOTPCRELX",
    42: "R_X86_64_REX_GOTPCRELX",
}
#: the relocation types the linker applies (everything gcc emits for C in the small and
#: medium code models, PIC or not)
SUPPORTED_RELOCS = frozenset({0, 1, 2, 4, 9, 10, 11, 24, 25, 26, 29, 41, 42})

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")


@dataclass(frozen=True, slots=True)
class Section:
    """A section the image maps: where its bytes come from and which group it joins."""

    index: int
    name: str
    size: int
    align: int
    data: bytes | None  # None for SHT_NOBITS (.bss)
    kind: str  # "text", "rodata" (read-only after relocation) or "data"


@dataclass(frozen=True, slots=True)
class Symbol:
    index: int
    name: str
    bind: int
    type: int
    shndx: int  # section index, SHN_UNDEF, SHN_ABS or SHN_COMMON
    value: int
    size: int

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF


@dataclass(frozen=True, slots=True)
class Relocation:
    section: int  # index of the section the relocation patches
    offset: int
    type: int
    symbol: int
    addend: int


@dataclass(frozen=True)
class ElfObject:
    """One parsed and validated relocatable object."""

    sections: dict[int, Section]  # only the sections the image maps, by index
    symbols: tuple[Symbol, ...]
    relocations: tuple[Relocation, ...]
    section_names: tuple[str, ...]  # every section's name, by index

    def globals(self) -> dict[str, Symbol]:
        """Defined global and weak symbols by name (what the object offers)."""
        return {
            s.name: s
            for s in self.symbols
            if s.defined and s.bind in (STB_GLOBAL, STB_WEAK) and s.name and s.type != STT_SECTION
        }

    def undefined(self) -> list[Symbol]:
        """Undefined symbols the relocations refer to (what the object needs)."""
        used = {r.symbol for r in self.relocations}
        return [s for s in self.symbols if s.index in used and not s.defined and s.index != 0]


def _fail(message: str, reason: FaultReason | None = None) -> CodeObjectError:
    return CodeObjectError(f"native object: {message}", reason)


def _cstr(table: bytes, offset: int, what: str) -> str:
    if offset >= len(table) and offset != 0:
        raise _fail(f"corrupt ELF: {what} name offset {offset} is outside its string table ({len(table)} bytes)")
    end = table.find(b"\0", offset)
    if end < 0:
        raise _fail(f"corrupt ELF: {what} name at offset {offset} is not NUL-terminated")
    return table[offset:end].decode("utf-8", "replace")


def _check_ident(data: bytes) -> None:
    n = len(data)
    if data[:4] != b"\x7fELF"[:n] or (n >= 4 and data[:4] != b"\x7fELF"):
        raise _fail(f"corrupt ELF: bad magic {data[:4]!r}, expected b'\\x7fELF'")
    if n < 16:
        raise _fail(f"truncated ELF: {n} bytes, the ELF header needs 64")
    if data[4] != 2:
        raise _fail(f"corrupt ELF: class {data[4]} is not ELFCLASS64 (2); build for x86-64")
    if data[5] != 1:
        raise _fail(f"corrupt ELF: data encoding {data[5]} is not little-endian (1)")
    if data[6] != 1:
        raise _fail(f"corrupt ELF: version {data[6]} is not EV_CURRENT (1)")
    if n < _EHDR.size:
        raise _fail(f"truncated ELF: {n} bytes, the ELF header needs 64")
    (_, _, _, _, _, _, shoff, _, ehsize, _, _, shentsize, shnum, shstrndx) = _EHDR.unpack_from(data)
    if shentsize != 64:
        raise _fail(f"corrupt ELF: section header size {shentsize}, expected 64")
    if shnum == 0 or shoff == 0:
        raise _fail("corrupt ELF: no section header table")
    if shoff + shnum * shentsize > n:
        raise _fail(
            f"truncated ELF: section header table at offset {shoff} needs {shnum * shentsize} bytes, "
            f"the file has {n}"
        )
    if shstrndx >= shnum:
        raise _fail(f"corrupt ELF: section name table index {shstrndx} is out of range ({shnum} sections)")


_TYPE_NAMES = {0: "ET_NONE (no file type)", 2: "ET_EXEC (an executable)", 3: "ET_DYN (a shared object)",
               4: "ET_CORE (a core dump)"}


def parse_object(data: bytes) -> ElfObject:
    """Parse and validate ``data`` as an x86-64 relocatable object; see the module docstring."""
    data = bytes(data)
    _check_ident(data)
    try:
        elf = ELFFile(io.BytesIO(data))
        header = elf.header
        e_type = _EHDR.unpack_from(data)[1]
        e_machine = _EHDR.unpack_from(data)[2]
        shnum = elf.num_sections()
        stream = elf.stream
        shoff, shdr = header["e_shoff"], elf.structs.Elf_Shdr
        raw_sections = [struct_parse(shdr, stream, shoff + 64 * i) for i in range(shnum)]
        shstr_hdr = raw_sections[header["e_shstrndx"]]
    except (ELFError, struct.error, ValueError, IndexError, OverflowError) as exc:
        raise _fail(f"corrupt ELF: {exc}") from None

    # 1. every section's bytes lie inside the file
    n = len(data)
    types = [_raw_sh_type(data, header["e_shoff"], i) for i in range(shnum)]
    for i, sh in enumerate(raw_sections):
        if types[i] in (0, _SHT_NOBITS):
            continue
        if sh["sh_offset"] + sh["sh_size"] > n:
            raise _fail(
                f"truncated ELF: section {i} at offset {sh['sh_offset']} needs {sh['sh_size']} bytes, "
                f"the file has {n}"
            )
    shstrtab = data[shstr_hdr["sh_offset"] : shstr_hdr["sh_offset"] + shstr_hdr["sh_size"]]
    names = tuple(_cstr(shstrtab, sh["sh_name"], f"section {i}") for i, sh in enumerate(raw_sections))

    # 2. relocatable, 3. x86-64
    if e_type != 1:
        what = _TYPE_NAMES.get(e_type, f"type {e_type}")
        raise _fail(f"not a relocatable object: e_type is {what}; build it with `cc -c`")
    if e_machine != 62:
        mname = header["e_machine"] if isinstance(header["e_machine"], str) else f"machine {e_machine}"
        raise _fail(f"wrong machine: {mname}, this loader links EM_X86_64 objects only")


    # 4. indexes: one symbol table, its string table, relocation links and targets
    symtabs = [i for i, t in enumerate(types) if t == _SHT_SYMTAB]
    if len(symtabs) > 1:
        raise _fail(f"corrupt ELF: {len(symtabs)} symbol tables, expected one")
    for i, t in enumerate(types):
        if t == _SHT_REL:
            raise _fail(f"corrupt ELF: section '{names[i]}' is SHT_REL; x86-64 objects use SHT_RELA")
        if t == _SHT_SYMTAB_SHNDX:
            raise _fail(f"section '{names[i]}': extended section indexes are not supported")
    symbols: tuple[Symbol, ...] = ()
    if symtabs:
        si = symtabs[0]
        sh = raw_sections[si]
        if sh["sh_entsize"] != _SYM.size or sh["sh_size"] % _SYM.size:
            raise _fail(f"corrupt ELF: symbol table '{names[si]}' has entry size {sh['sh_entsize']}, expected 24")
        if sh["sh_link"] >= shnum:
            raise _fail(
                f"section index out of range: symbol table '{names[si]}' links string table {sh['sh_link']}, "
                f"the object has {shnum} sections"
            )
        strh = raw_sections[sh["sh_link"]]
        strtab = data[strh["sh_offset"] : strh["sh_offset"] + strh["sh_size"]]
        raw = data[sh["sh_offset"] : sh["sh_offset"] + sh["sh_size"]]
        syms = []
        for k, (st_name, st_info, _other, shndx, value, size) in enumerate(_SYM.iter_unpack(raw)):
            name = _cstr(strtab, st_name, f"symbol {k}")
            if SHN_UNDEF != shndx and shndx < SHN_LORESERVE and shndx >= shnum:
                raise _fail(
                    f"section index out of range: symbol '{name}' (index {k}) is in section {shndx}, "
                    f"the object has {shnum} sections"
                )
            if shndx >= SHN_LORESERVE and shndx not in (SHN_ABS, SHN_COMMON):
                raise _fail(f"symbol '{name}' (index {k}) has unsupported section index {shndx:#x}")
            syms.append(Symbol(k, name, st_info >> 4, st_info & 0xF, shndx, value, size))
        symbols = tuple(syms)

    relocations: list[Relocation] = []
    unmapped: list[tuple[str, int]] = []
    rela_sections = [i for i, t in enumerate(types) if t == _SHT_RELA]
    for ri in rela_sections:
        sh = raw_sections[ri]
        rname = names[ri]
        if sh["sh_entsize"] != _RELA.size or sh["sh_size"] % _RELA.size:
            raise _fail(f"corrupt ELF: relocation section '{rname}' has entry size {sh['sh_entsize']}, expected 24")
        target = sh["sh_info"]
        if target >= shnum or target == 0:
            raise _fail(
                f"section index out of range: relocation section '{rname}' (index {ri}) applies to "
                f"section {target}, the object has {shnum} sections"
            )
        if not symtabs or sh["sh_link"] != symtabs[0]:
            raise _fail(
                f"section index out of range: relocation section '{rname}' links section {sh['sh_link']}, "
                "which is not the symbol table"
            )
        tsh = raw_sections[target]
        if not tsh["sh_flags"] & SHF_ALLOC or _skipped(names[target], types[target]):
            continue  # debug info, unwind tables: not mapped, so not relocated
        if types[target] not in (_SHT_PROGBITS, _SHT_NOBITS):
            unmapped.append((rname, target))  # refused after the sections' own checks (5.)
        tsize = tsh["sh_size"]
        raw = data[sh["sh_offset"] : sh["sh_offset"] + sh["sh_size"]]
        for k, (off, info, addend) in enumerate(_RELA.iter_unpack(raw)):
            sym, rtype = info >> 32, info & 0xFFFFFFFF
            if sym >= len(symbols):
                raise _fail(
                    f"symbol index out of range: relocation {k} in '{rname}' names symbol {sym}, "
                    f"the symbol table has {len(symbols)} entries"
                )
            if off + _width(rtype) > tsize:
                raise _fail(
                    f"relocation {k} in '{rname}' at offset {off:#x} reaches past the end of "
                    f"'{names[target]}' ({tsize:#x} bytes)"
                )
            relocations.append(Relocation(target, off, rtype, sym, addend))

    # 5. sections that would need start-up code or thread-local storage
    for i, sh in enumerate(raw_sections):
        if not sh["sh_flags"] & SHF_ALLOC:
            continue
        if types[i] in _CTOR_TYPES or names[i] in _CTOR_NAMES or names[i].startswith(_CTOR_NAMES):
            raise _fail(
                f"unsupported section '{names[i]}': constructors and destructors are not run; "
                "use the init and finalize entry points"
            )
        if sh["sh_flags"] & SHF_TLS:
            raise _fail(f"unsupported section '{names[i]}': thread-local storage")
        if sh["sh_flags"] & SHF_WRITE and sh["sh_flags"] & SHF_EXECINSTR:
            raise _fail(
                f"section '{names[i]}' (index {i}) is both writable and executable; the image is never "
                "writable and executable at once (its code is mapped read-execute)",
                FaultReason.WRITABLE_CODE,
            )
    if unmapped:
        rname, target = unmapped[0]
        raise _fail(
            f"relocation section '{rname}' applies to section '{names[target]}' (index {target}), "
            f"which has type {types[target]:#x}; the loader maps only SHT_PROGBITS and SHT_NOBITS",
            FaultReason.UNMAPPED_SECTION,
        )

    # 6. relocation types
    for r in relocations:
        if r.type not in SUPPORTED_RELOCS:
            rname = RELOC_NAMES.get(r.type, f"type {r.type}")
            s = symbols[r.symbol]
            sym = s.name or (names[s.shndx] if 0 < s.shndx < shnum else "")
            raise _fail(
                f"unsupported relocation {rname} in '{names[r.section]}' at offset {r.offset:#x}"
                + (f" against '{sym}'" if sym else "")
            )

    # 7. sizes and alignments
    sections: dict[int, Section] = {}
    total = 0
    for i, sh in enumerate(raw_sections):
        t = types[i]
        if not sh["sh_flags"] & SHF_ALLOC or _skipped(names[i], t) or t not in (_SHT_PROGBITS, _SHT_NOBITS):
            continue
        size, align = sh["sh_size"], max(1, sh["sh_addralign"])
        if size > MAX_IMAGE:
            raise _fail(f"section '{names[i]}' (index {i}) is {size} bytes; an image holds at most {MAX_IMAGE}")
        if align & (align - 1) or align > MAX_ALIGN:
            raise _fail(
                f"section '{names[i]}' (index {i}) asks for alignment {align}; "
                f"at most {MAX_ALIGN} (a power of two) is supported"
            )
        total += size + align
        if total > MAX_IMAGE:
            raise _fail(f"the sections need more than {MAX_IMAGE} bytes; an image holds at most {MAX_IMAGE}")
        flags = sh["sh_flags"]
        if flags & SHF_EXECINSTR:
            kind = "text"
        elif flags & SHF_WRITE and not names[i].startswith(".data.rel.ro"):
            kind = "data"
        else:
            kind = "rodata"
        body = None if t == _SHT_NOBITS else data[sh["sh_offset"] : sh["sh_offset"] + size]
        sections[i] = Section(i, names[i], size, align, body, kind)
    for s in symbols:
        sec = sections.get(s.shndx)
        if sec is not None and s.type != STT_SECTION:
            end = s.value + s.size
            if end > sec.size or (s.type == STT_FUNC and s.value >= sec.size):
                raise _fail(
                    f"symbol '{s.name}' (index {s.index}) at {s.value:#x}"
                    + (f" with size {s.size:#x}" if s.size else "")
                    + f" lies outside its section '{sec.name}' ({sec.size:#x} bytes)",
                    FaultReason.SYMBOL_OUTSIDE_SECTION,
                )
        if s.shndx == SHN_COMMON:
            align = max(1, s.value)
            if align & (align - 1) or align > MAX_ALIGN or s.size > MAX_IMAGE:
                raise _fail(f"common symbol '{s.name}' has size {s.size} and alignment {s.value}, too large")
            total += s.size + align
            if total > MAX_IMAGE:
                raise _fail(f"the sections need more than {MAX_IMAGE} bytes; an image holds at most {MAX_IMAGE}")
    return ElfObject(sections, symbols, tuple(relocations), names)


def _raw_sh_type(data: bytes, shoff: int, index: int) -> int:
    return struct.unpack_from("<I", data, shoff + 64 * index + 4)[0]


def _skipped(name: str, sh_type: int) -> bool:
    """Allocated sections that are not mapped: unwind tables and notes."""
    return sh_type in (_SHT_X86_64_UNWIND, _SHT_NOTE) or name == ".eh_frame"


def _width(rtype: int) -> int:
    """Bytes a relocation of this type patches (8 for unknown types, checked later)."""
    if rtype in (2, 4, 9, 10, 11, 26, 41, 42, 3, 19, 20, 21, 22, 23, 32, 34):
        return 4
    if rtype in (12, 13):
        return 2
    if rtype in (14, 15):
        return 1
    if rtype in (0, 35):
        return 0
    return 8
