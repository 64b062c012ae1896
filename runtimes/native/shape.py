"""A native object's shape against the node's load limits, read before it is parsed or linked.

Parsing (``elfobject``) and linking (``image``) cost time in Python that grows with the
object's sections, symbols and relocations; ``scan`` reads only the ELF header, the section
header table and the symbol table's section indexes (``struct``, no pyelftools) and refuses,
with a ``CodeObjectError`` naming the limit, an object that declares more sections, symbols
or relocations than ``code_entries`` or more undefined symbols (imports) than
``code_imports``. What is malformed is left to ``elfobject``, which names it.
"""

from __future__ import annotations

import struct

from pan_runtime.errors import FaultReason
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = ["scan"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM_SIZE = 24
_SHT_SYMTAB, _SHT_RELA, _SHT_REL = 2, 4, 9
_RELOC_SIZES = {_SHT_RELA: 24, _SHT_REL: 16}
_STB_LOCAL = 0


def scan(payload: bytes, limits: LoadLimits, who: str = "native object") -> None:
    """Refuse an object that declares more than ``limits`` allow. Reads headers and the symbol
    table's binding and section fields: O(sections + symbols), both bounded first."""
    data = bytes(payload)
    size = len(data)
    limits.require(f"{who} bytes", size, "code_bytes", FaultReason.CODE_TOO_BIG)
    if size < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2:
        return  # not a 64-bit ELF: elfobject names what is wrong
    fields = _EHDR.unpack_from(data, 0)
    shoff, shentsize, shnum = fields[6], fields[11], fields[12]
    if shoff == 0 or shentsize != _SHDR.size or shoff + _SHDR.size > size:
        return
    if shnum == 0:  # extended numbering: the count is in section 0's size
        shnum = _SHDR.unpack_from(data, shoff)[5]
    limits.require(f"{who} sections", shnum, "code_entries", FaultReason.TOO_MANY_ENTRIES)
    if shoff + shnum * _SHDR.size > size:
        return
    symbols = relocations = 0
    symtab: tuple[int, int] | None = None
    for i in range(shnum):
        _name, kind, _flags, _addr, offset, length, *_rest = _SHDR.unpack_from(data, shoff + i * _SHDR.size)
        if kind == _SHT_SYMTAB:
            symbols += length // _SYM_SIZE
            symtab = (offset, length)
        elif kind in _RELOC_SIZES:
            relocations += length // _RELOC_SIZES[kind]
    limits.require(f"{who} symbols", symbols, "code_entries", FaultReason.TOO_MANY_ENTRIES)
    limits.require(f"{who} relocations", relocations, "code_entries", FaultReason.TOO_MANY_ENTRIES)
    if symtab is None:
        return
    offset, length = symtab
    end = offset + length - length % _SYM_SIZE
    if end > size:
        return
    undefined = 0
    for _name, info, _other, shndx, _value, _size in struct.iter_unpack("<IBBHQQ", data[offset + _SYM_SIZE : end]):
        if shndx == 0 and info >> 4 != _STB_LOCAL:
            undefined += 1
    limits.require(f"{who} undefined symbols", undefined, "code_imports", FaultReason.TOO_MANY_IMPORTS)
