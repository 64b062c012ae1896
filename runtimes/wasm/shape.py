"""A wasm module's shape against the node's load limits, read before anything compiles it.

Compiling grows with what a module declares, not only with its bytes: 200,000 tiny
functions or 100,000 nested blocks in a megabyte cost Cranelift tens of seconds and
hundreds of megabytes. Two checks, both refusing with a ``CodeObjectError`` that names the
limit (``FaultReason``):

``scan`` reads only the section headers and each section's leading count (types, imports,
functions, tables, memories, globals, exports, element and data segments, code bodies),
plus the import entries (counted first): cheap enough for the node's own thread.

``check_bodies`` walks every function body: locals declared, and blocks nested (every
instruction is decoded, since block and end opcodes also occur inside immediates). It costs
a pass over the code section in Python, so for code from the network it runs in the
compiler's process, before compiling.

The decoder knows the instruction set the runtime's engine accepts (``compile.FEATURES``:
MVP, sign extension, saturating conversions, bulk memory, reference types, multi-value,
SIMD and relaxed SIMD, tail calls, extended constants); any other opcode is refused, so an
instruction this reader does not know cannot hide nesting from it. Malformed modules are not
this module's business beyond staying in bounds: Wasmtime validates them when it compiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = ["Shape", "scan", "check_bodies"]

_HEADER = 8
_CUSTOM, _TYPE, _IMPORT, _FUNCTION, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _START, _ELEMENT, _CODE, _DATA, _DATACOUNT = range(13)
#: sections whose leading count is checked against ``code_entries``
_COUNTED = {_TYPE: "types", _TABLE: "tables", _MEMORY: "memories", _GLOBAL: "globals", _EXPORT: "exports", _ELEMENT: "element segments", _DATA: "data segments"}


class _Malformed(CodeObjectError):
    pass


def _u32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """An unsigned LEB128 (at most 5 bytes) at ``pos``; (value, next position)."""
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed(f"wasm module: a number runs past offset {end}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 35:
            raise _Malformed(f"wasm module: a number at offset {pos} is longer than 5 bytes")


def _skip_leb(data: bytes, pos: int, end: int, limit: int = 10) -> int:
    """Past a LEB128 of any sign and at most ``limit`` bytes."""
    stop = min(end, pos + limit)
    while pos < stop:
        b = data[pos]
        pos += 1
        if not b & 0x80:
            return pos
    raise _Malformed(f"wasm module: a number at offset {pos} runs past its limit")


@dataclass
class Shape:
    """What a module declares: its import and function counts and its function bodies."""

    imports: int = 0
    imported_functions: int = 0
    functions: int = 0
    #: (offset, end) of the code section's entries, found by ``check_bodies``
    code: tuple[int, int] | None = None
    counts: dict[str, int] = field(default_factory=dict)


def scan(payload: bytes, limits: LoadLimits, who: str = "wasm module") -> Shape:
    """Read section headers and counts; refuse what exceeds ``limits``. O(sections + imports)."""
    data = bytes(payload)
    end = len(data)
    limits.require(f"{who} bytes", end, "code_bytes", FaultReason.CODE_TOO_BIG)
    shape = Shape()
    pos = _HEADER
    sections = 0
    try:
        while pos < end:
            sid = data[pos]
            size, body = _u32(data, pos + 1, end)
            stop = body + size
            if stop > end:
                raise _Malformed(f"{who}: section {sid} at offset {pos} runs past the end")
            sections += 1
            limits.require(f"{who} sections", sections, "code_entries", FaultReason.TOO_MANY_ENTRIES)
            if sid == _IMPORT:
                _imports(data, body, stop, shape, limits, who)
            elif sid == _FUNCTION:
                shape.functions, _ = _u32(data, body, stop)
            elif sid == _CODE:
                shape.code = (body, stop)
            elif sid in _COUNTED:
                n, _ = _u32(data, body, stop)
                shape.counts[_COUNTED[sid]] = n
                limits.require(f"{who} {_COUNTED[sid]}", n, "code_entries", FaultReason.TOO_MANY_ENTRIES)
            pos = stop
    except _Malformed:
        return shape  # Wasmtime names what is malformed when it compiles
    total = shape.functions + shape.imported_functions
    limits.require(f"{who} functions", total, "code_functions", FaultReason.TOO_MANY_FUNCTIONS)
    return shape


def _imports(data: bytes, pos: int, end: int, shape: Shape, limits: LoadLimits, who: str) -> None:
    count, pos = _u32(data, pos, end)
    limits.require(f"{who} imports", count, "code_imports", FaultReason.TOO_MANY_IMPORTS)
    shape.imports = count
    for _ in range(count):
        for _name in range(2):  # module, field
            n, pos = _u32(data, pos, end)
            pos += n
        if pos >= end:
            raise _Malformed(f"{who}: import section truncated")
        kind = data[pos]
        pos += 1
        if kind == 0x00:  # function: type index
            shape.imported_functions += 1
            _, pos = _u32(data, pos, end)
        elif kind == 0x01:  # table: reftype, limits
            pos = _skip_limits(data, pos + 1, end)
        elif kind == 0x02:  # memory: limits
            pos = _skip_limits(data, pos, end)
        elif kind == 0x03:  # global: valtype, mutability
            pos += 2
        else:
            raise _Malformed(f"{who}: import kind {kind}")


def _skip_limits(data: bytes, pos: int, end: int) -> int:
    if pos >= end:
        raise _Malformed("wasm module: limits truncated")
    flags = data[pos]
    pos = _skip_leb(data, pos + 1, end)
    if flags & 1:
        pos = _skip_leb(data, pos, end)
    return pos


# ---------------------------------------------------------------------- function bodies
# immediates after an opcode, by kind
_NONE, _LEB, _LEB2, _MEMARG, _BYTES4, _BYTES8, _TABLE_BR, _SELECT_T, _BLOCK, _END, _ELSE, _FC, _FD = range(13)


def _opcode_table() -> list[int | None]:
    t: list[int | None] = [None] * 256
    for op in (0x00, 0x01, 0x0F, 0x1A, 0x1B, 0xD1):
        t[op] = _NONE
    for op in range(0x45, 0xC5):  # numeric operators, sign extension
        t[op] = _NONE
    for op in (0x02, 0x03, 0x04):
        t[op] = _BLOCK
    t[0x05] = _ELSE
    t[0x0B] = _END
    for op in (0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3F, 0x40, 0x41, 0x42, 0xD0, 0xD2):
        t[op] = _LEB  # indexes, memory index, i32/i64 constants, heap type
    for op in (0x11, 0x13):  # call_indirect, return_call_indirect: type and table
        t[op] = _LEB2
    t[0x0E] = _TABLE_BR
    t[0x1C] = _SELECT_T
    for op in range(0x28, 0x3F):
        t[op] = _MEMARG
    t[0x43] = _BYTES4
    t[0x44] = _BYTES8
    t[0xFC] = _FC
    t[0xFD] = _FD
    return t


_OPS = _opcode_table()
#: 0xFC sub-opcodes -> LEB immediates after them
_FC_IMMEDIATES = {**dict.fromkeys(range(8), 0), 8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}


def _fd_immediates(sub: int) -> tuple[bool, int] | None:
    """0xFD (SIMD) sub-opcode -> (has a memarg, immediate bytes after it); None if unknown."""
    if sub <= 0x0B or sub in (0x5C, 0x5D):  # loads, stores, load zero
        return True, 0
    if sub in (0x0C, 0x0D):  # v128.const, i8x16.shuffle
        return False, 16
    if 0x15 <= sub <= 0x22:  # extract/replace lane
        return False, 1
    if 0x54 <= sub <= 0x5B:  # load/store lane
        return True, 1
    if 0x0E <= sub <= 0x113:  # everything else up to relaxed SIMD takes only operands
        return False, 0
    return None


def check_bodies(payload: bytes, shape: Shape, limits: LoadLimits, who: str = "wasm module") -> None:
    """Refuse a function declaring more locals, or nesting blocks deeper, than ``limits``
    allow, or using an instruction this node's engine does not accept. O(code bytes)."""
    if shape.code is None:
        return
    data = bytes(payload)
    pos, end = shape.code
    max_locals = limits.code_locals
    max_depth = limits.code_nesting
    try:
        count, pos = _u32(data, pos, end)
        for index in range(count):
            size, pos = _u32(data, pos, end)
            stop = pos + size
            if stop > end:
                raise _Malformed(f"{who}: function body {index} runs past the code section")
            groups, at = _u32(data, pos, stop)
            declared = 0
            for _ in range(groups):
                n, at = _u32(data, at, stop)
                declared += n
                if declared > max_locals:
                    raise CodeObjectError(
                        f"{who}: function {index} declares more than limits.code_locals = {max_locals} locals",
                        FaultReason.TOO_MANY_LOCALS,
                    )
                at += 1  # the locals' type
            _nesting(data, at, stop, max_depth, index, who)
            pos = stop
    except _Malformed:
        return  # Wasmtime names it


def _nesting(data: bytes, pos: int, end: int, max_depth: int, index: int, who: str) -> None:
    ops = _OPS
    depth = 1  # the function body is a block
    while pos < end:
        op = data[pos]
        kind = ops[op]
        pos += 1
        if kind == _NONE or kind == _ELSE:
            continue
        if kind == _LEB:
            pos = _skip_leb(data, pos, end)
        elif kind == _END:
            depth -= 1
            if depth == 0:
                return  # anything after the body's end is Wasmtime's to refuse
        elif kind == _BLOCK:
            depth += 1
            if depth > max_depth:
                raise CodeObjectError(
                    f"{who}: function {index} nests blocks deeper than limits.code_nesting = {max_depth}",
                    FaultReason.TOO_DEEP,
                )
            pos = _skip_leb(data, pos, end, 5)  # block type: empty, a value type or a type index
        elif kind == _MEMARG:
            pos = _memarg(data, pos, end)
        elif kind is None:
            _unknown(op, None, pos - 1, index, who)
        elif kind == _LEB2:
            pos = _skip_leb(data, _skip_leb(data, pos, end), end)
        elif kind == _BYTES4:
            pos += 4
        elif kind == _BYTES8:
            pos += 8
        elif kind == _TABLE_BR:
            n, pos = _u32(data, pos, end)
            if n > end - pos:
                raise _Malformed(f"{who}: br_table longer than its function")
            for _ in range(n + 1):
                pos = _skip_leb(data, pos, end)
        elif kind == _SELECT_T:
            n, pos = _u32(data, pos, end)
            pos += n
        elif kind == _FC:
            sub, pos = _u32(data, pos, end)
            immediates = _FC_IMMEDIATES.get(sub)
            if immediates is None:
                _unknown(0xFC, sub, pos, index, who)
            for _ in range(immediates):
                pos = _skip_leb(data, pos, end)
        else:  # _FD
            sub, pos = _u32(data, pos, end)
            imm = _fd_immediates(sub)
            if imm is None:
                _unknown(0xFD, sub, pos, index, who)
            if imm[0]:
                pos = _memarg(data, pos, end)
            pos += imm[1]
    # ran off the body: Wasmtime refuses it


def _memarg(data: bytes, pos: int, end: int) -> int:
    align, pos = _u32(data, pos, end)
    if align & 0x40:  # a memory index follows (multi-memory encoding)
        pos = _skip_leb(data, pos, end)
    return _skip_leb(data, pos, end)


def _unknown(op: int, sub: int | None, pos: int, index: int, who: str) -> NoReturn:
    name = f"0x{op:02X}" if sub is None else f"0x{op:02X} {sub}"
    raise CodeObjectError(
        f"{who}: function {index} uses instruction {name} at offset {pos}, which this node's "
        "wasm engine does not accept (see pan_wasm.compile.FEATURES)"
    )
