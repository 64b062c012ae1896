"""Link a parsed object into executable memory: layout, GOT, trampolines, relocation, W^X.

One region is reserved per object with ``mmap`` (in the low 2 GiB when the kernel allows,
so absolute 32-bit relocations and 32-bit PC-relative references between images fit), and
split in three page-aligned groups::

    [ text sections | trampolines ]  read+execute
    [ rodata, .data.rel.ro | GOT  ]  read-only after relocation
    [ data | bss | COMMON symbols ]  read+write

Calls to functions outside the image (PNI host functions, dependency exports, the C
helpers) go through a 16-byte trampoline ``jmp *slot(%rip)`` whose slot is in the GOT, so a
32-bit displacement always reaches them. Relocation happens in Python buffers that are
copied into the mapping once; the mapping is then ``mprotect``-ed, so no page is ever
writable and executable at the same time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pan_native.elfobject import (
    RELOC_NAMES,
    SHN_ABS,
    SHN_COMMON,
    STB_WEAK,
    STT_SECTION,
    ElfObject,
    Symbol,
)
from pan_runtime.errors import ClosedError, CodeObjectError, FaultReason

__all__ = ["Resolved", "Image", "link", "libc_helper"]

PAGE = mmap.PAGESIZE
_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_MAP_PRIVATE, _MAP_ANONYMOUS, _MAP_32BIT, _MAP_NORESERVE = 0x02, 0x20, 0x40, 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

#: compiler-emitted helpers an object may call without declaring a dependency (from libc)
HELPERS = ("memcpy", "memset", "memmove", "memcmp")

_GOT_TYPES = frozenset({9, 41, 42})  # GOTPCREL, GOTPCRELX, REX_GOTPCRELX
_BRANCH32 = frozenset({2, 4, 10, 11})  # PC32, PLT32, 32, 32S: reach a function via a trampoline
_TRAMPOLINE = 16
_GOT_SYMBOL = "_GLOBAL_OFFSET_TABLE_"


@dataclass(frozen=True, slots=True)
class Resolved:
    """What an undefined symbol binds to: an address, whether it is code, what keeps it alive."""

    address: int
    function: bool = True
    keep: object = None


def libc_helper(name: str) -> Resolved | None:
    """The libc address of an allowlisted helper (``HELPERS``), else ``None``."""
    if name not in HELPERS:
        return None
    return Resolved(ctypes.cast(getattr(_libc, name), ctypes.c_void_p).value or 0, True)


def _round(n: int, align: int) -> int:
    return (n + align - 1) & ~(align - 1)


class Image:
    """An object linked into memory; ``close()`` unmaps it and drops what it kept alive."""

    def __init__(self, base: int, size: int, symbols: dict[str, tuple[int, Symbol]], keep: list[object]):
        self.base = base
        self.size = size
        self._symbols = symbols
        self._keep = keep

    @property
    def closed(self) -> bool:
        return self.base == 0

    def address(self, name: str) -> int | None:
        """Address of a defined global symbol, or ``None``."""
        if self.base == 0:
            raise ClosedError("native image is closed")
        entry = self._symbols.get(name)
        return entry[0] if entry else None

    def symbol(self, name: str) -> Symbol | None:
        entry = self._symbols.get(name)
        return entry[1] if entry else None

    def close(self) -> None:
        if self.base:
            _munmap(self.base, self.size)
            self.base = 0
            self._keep.clear()
            self._symbols = {}

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _map(size: int) -> int:
    flags = _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE
    addr = _mmap(None, size, _PROT_READ | _PROT_WRITE, flags | _MAP_32BIT, -1, 0)
    if addr in (None, _MAP_FAILED):
        addr = _mmap(None, size, _PROT_READ | _PROT_WRITE, flags, -1, 0)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise CodeObjectError(f"native object: cannot map {size} bytes: {os.strerror(err)}")
    return addr


def link(obj: ElfObject, resolve: Callable[[str], Resolved | None]) -> Image:
    """Map and relocate ``obj``; undefined symbols are bound by ``resolve`` (``None`` = unknown)."""
    # undefined symbols first: nothing is mapped if one is missing
    external: dict[int, Resolved] = {}
    for sym in obj.undefined():
        if sym.name == _GOT_SYMBOL:
            continue
        found = resolve(sym.name)
        if found is None:
            if sym.bind == STB_WEAK:
                found = Resolved(0, False)
            else:
                raise CodeObjectError(
                    f"native object: undefined symbol '{sym.name}' is neither a PNI call nor an export "
                    f"of a dependency (allowed helpers: {', '.join(HELPERS)})"
                )
        external[sym.index] = found

    # layout: offsets within each group
    offsets: dict[int, int] = {}
    sizes = {"text": 0, "rodata": 0, "data": 0}
    for sec in obj.sections.values():
        at = _round(sizes[sec.kind], sec.align)
        offsets[sec.index] = at
        sizes[sec.kind] = at + sec.size
    commons: dict[int, int] = {}
    for sym in obj.symbols:
        if sym.shndx == SHN_COMMON:
            at = _round(sizes["data"], max(1, sym.value))
            commons[sym.index] = at
            sizes["data"] = at + sym.size
    got: dict[int, int] = {}
    plt: dict[int, int] = {}
    for r in obj.relocations:
        if r.type in _GOT_TYPES and r.symbol not in got:
            got[r.symbol] = len(got)
        if r.type in _BRANCH32 and r.symbol in external and external[r.symbol].function:
            if r.symbol not in plt:
                plt[r.symbol] = len(plt)
    for sym_index in plt:  # every trampoline jumps through a GOT slot
        if sym_index not in got:
            got[sym_index] = len(got)
    plt_at = _round(sizes["text"], 16)
    sizes["text"] = plt_at + _TRAMPOLINE * len(plt)
    got_at = _round(sizes["rodata"], 8)
    sizes["rodata"] = got_at + 8 * len(got)
    spans = {k: _round(v, PAGE) for k, v in sizes.items()}
    total = sum(spans.values()) or PAGE
    base = _map(total)
    starts = {"text": base, "rodata": base + spans["text"], "data": base + spans["text"] + spans["rodata"]}
    try:
        buffers = {k: bytearray(sizes[k]) for k in sizes}
        for sec in obj.sections.values():
            if sec.data is not None:
                at = offsets[sec.index]
                buffers[sec.kind][at : at + sec.size] = sec.data
        kinds = {i: s.kind for i, s in obj.sections.items()}
        got_base = starts["rodata"] + got_at

        def sym_addr(index: int) -> int:
            sym = obj.symbols[index]
            if sym.name == _GOT_SYMBOL and not sym.defined:
                return got_base
            if index in external:
                return external[index].address
            if sym.shndx == SHN_ABS:
                return sym.value
            if sym.shndx == SHN_COMMON:
                return starts["data"] + commons[index]
            if sym.shndx not in offsets:
                raise CodeObjectError(
                    f"native object: symbol '{sym.name or obj.section_names[sym.shndx]}' is in section "
                    f"'{obj.section_names[sym.shndx]}', which is not loaded",
                    FaultReason.UNMAPPED_SECTION,
                )
            return starts[kinds[sym.shndx]] + offsets[sym.shndx] + sym.value

        gotbuf = buffers["rodata"]
        for sym_index, slot in got.items():
            struct.pack_into("<Q", gotbuf, got_at + 8 * slot, sym_addr(sym_index))
        textbuf = buffers["text"]
        for sym_index, slot in plt.items():
            here = plt_at + _TRAMPOLINE * slot
            disp = got_base + 8 * got[sym_index] - (base + here + 6)
            textbuf[here : here + _TRAMPOLINE] = b"\xff\x25" + struct.pack("<i", disp) + b"\xcc" * 10

        for r in obj.relocations:
            if r.type == 0:
                continue
            kind = kinds[r.section]
            buf = buffers[kind]
            at = offsets[r.section] + r.offset
            P = starts[kind] + at
            A = r.addend
            if r.symbol in plt and r.type in _BRANCH32:
                S = base + plt_at + _TRAMPOLINE * plt[r.symbol]
            else:
                S = sym_addr(r.symbol)
            t = r.type
            if t in (1, 24, 25, 29):  # 64, PC64, GOTOFF64, GOTPC64: 64-bit, wrapping as ld does
                value = {1: S + A, 24: S + A - P, 25: S + A - got_base, 29: got_base + A - P}[t]
                struct.pack_into("<Q", buf, at, value & 0xFFFFFFFFFFFFFFFF)
                continue
            if t in (2, 4):  # PC32, PLT32
                value, signed = S + A - P, True
            elif t == 10:  # 32
                value, signed = S + A, False
            elif t == 11:  # 32S
                value, signed = S + A, True
            elif t in _GOT_TYPES:
                value, signed = got_base + 8 * got[r.symbol] + A - P, True
            else:  # 26, GOTPC32
                value, signed = got_base + A - P, True
            lo, hi = (-(1 << 31), (1 << 31) - 1) if signed else (0, (1 << 32) - 1)
            if not lo <= value <= hi:
                sym = obj.symbols[r.symbol]
                sname = sym.name if sym.type != STT_SECTION else obj.section_names[sym.shndx]
                raise CodeObjectError(
                    f"native object: relocation {RELOC_NAMES[t]} against '{sname}' in "
                    f"'{obj.section_names[r.section]}' at offset {r.offset:#x} overflows 32 bits "
                    f"(value {value:#x}); rebuild with -fPIC"
                )
            struct.pack_into("<i" if signed else "<I", buf, at, value)

        for kind, buf in buffers.items():
            if buf:
                ctypes.memmove(starts[kind], bytes(buf), len(buf))
        prot = {"text": _PROT_READ | _PROT_EXEC, "rodata": _PROT_READ, "data": _PROT_READ | _PROT_WRITE}
        for kind in ("text", "rodata"):
            if spans[kind] and _mprotect(starts[kind], spans[kind], prot[kind]) != 0:
                raise CodeObjectError(f"native object: mprotect failed: {os.strerror(ctypes.get_errno())}")
        symbols: dict[str, tuple[int, Symbol]] = {}
        for name, sym in obj.globals().items():
            symbols[name] = (sym_addr(sym.index), sym)
        keep = [r.keep for r in external.values() if r.keep is not None]
    except BaseException:
        _munmap(base, total)
        raise
    return Image(base, total, symbols, keep)
