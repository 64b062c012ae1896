"""A small, strict reader of JVM class files (JVMS chapter 4), enough to check them.

It reads the magic, versions, every constant-pool tag, access flags, fields, methods with
their ``Code`` attribute (bytecode and exception table) and the class attributes the
checker needs (``BootstrapMethods``, ``InnerClasses``). Anything malformed raises
``CodeObjectError`` naming the class, the byte offset and the field being read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pan_runtime.errors import CodeObjectError

__all__ = [
    "MAGIC",
    "MAX_MAJOR",
    "ACC_NATIVE",
    "ACC_INTERFACE",
    "Const",
    "Method",
    "ClassFile",
    "parse_class",
    "descriptor_classes",
]

MAGIC = 0xCAFEBABE
MIN_MAJOR = 45
MAX_MAJOR = 61  # Java 17
ACC_NATIVE = 0x0100
ACC_INTERFACE = 0x0200

# constant pool tags
UTF8, INTEGER, FLOAT, LONG, DOUBLE, CLASS, STRING = 1, 3, 4, 5, 6, 7, 8
FIELDREF, METHODREF, IMETHODREF, NAME_AND_TYPE = 9, 10, 11, 12
METHOD_HANDLE, METHOD_TYPE, DYNAMIC, INVOKE_DYNAMIC, MODULE, PACKAGE = 15, 16, 17, 18, 19, 20
TAG_NAMES = {
    UTF8: "Utf8", INTEGER: "Integer", FLOAT: "Float", LONG: "Long", DOUBLE: "Double",
    CLASS: "Class", STRING: "String", FIELDREF: "Fieldref", METHODREF: "Methodref",
    IMETHODREF: "InterfaceMethodref", NAME_AND_TYPE: "NameAndType",
    METHOD_HANDLE: "MethodHandle", METHOD_TYPE: "MethodType", DYNAMIC: "Dynamic",
    INVOKE_DYNAMIC: "InvokeDynamic", MODULE: "Module", PACKAGE: "Package",
}  # fmt: skip
# operand bytes after the opcode; -1 = variable (tableswitch, lookupswitch, wide)
_OPERANDS = bytearray(256)
for _op in (0x10, 0x12, 0x15, 0x16, 0x17, 0x18, 0x19, 0x36, 0x37, 0x38, 0x39, 0x3A, 0xA9, 0xBC):
    _OPERANDS[_op] = 1
for _op in (
    0x11,
    0x13,
    0x14,
    0x84,
    *range(0x99, 0xA9),
    *range(0xB2, 0xB9),
    0xBB,
    0xBD,
    0xC0,
    0xC1,
    0xC6,
    0xC7,
):
    _OPERANDS[_op] = 2
for _op in (0xC5,):
    _OPERANDS[_op] = 3
for _op in (0xB9, 0xBA, 0xC8, 0xC9):
    _OPERANDS[_op] = 4
#: opcodes whose u2 operand (u1 for ldc) is a constant-pool index
_CP_OPS = {0x12, 0x13, 0x14, *range(0xB2, 0xBC), 0xBD, 0xC0, 0xC1, 0xC5}


@dataclass(frozen=True)
class Const:
    """One constant-pool entry: ``tag`` and its raw fields (indices or a value)."""

    tag: int
    a: int | str | float = 0
    b: int = 0
    offset: int = 0


@dataclass
class Method:
    name: str
    descriptor: str
    access: int
    code: bytes | None = None
    code_offset: int = 0
    #: constant-pool indices of catch types (0 = any, i.e. ``finally``)
    catch_types: list[int] = field(default_factory=list)
    #: (handler bytecode index, catch type index) per exception table entry
    handlers: list[tuple[int, int]] = field(default_factory=list)
    #: constant-pool indices the bytecode refers to, with the byte offset of the instruction
    code_refs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class ClassFile:
    name: str
    major: int
    minor: int
    access: int
    super_name: str | None
    interfaces: list[str]
    pool: list[Const | None]
    fields: list[tuple[str, str, int]]
    methods: list[Method]
    #: (bootstrap method handle index, argument indices)
    bootstraps: list[tuple[int, list[int]]]
    #: constant-pool indices named only by the InnerClasses attribute
    inner_class_refs: set[int]

    def utf8(self, index: int) -> str:
        c = self.pool[index]
        assert c is not None and c.tag == UTF8
        return str(c.a)

    def class_name(self, index: int) -> str:
        c = self.pool[index]
        assert c is not None and c.tag == CLASS
        return self.utf8(int(c.a))

    def member(self, index: int) -> tuple[str, str, str]:
        """(owner class, name, descriptor) of a Fieldref/Methodref/InterfaceMethodref."""
        c = self.pool[index]
        assert c is not None and c.tag in (FIELDREF, METHODREF, IMETHODREF)
        nat = self.pool[c.b]
        assert nat is not None
        return self.class_name(int(c.a)), self.utf8(int(nat.a)), self.utf8(nat.b)


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data = data
        self.pos = 0
        self.where = where

    def fail(self, what: str, offset: int | None = None) -> CodeObjectError:
        at = self.pos if offset is None else offset
        return CodeObjectError(f"{self.where}: {what} at offset {at}")

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.fail(f"truncated class file: {what} needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u1(self, what: str) -> int:
        return self.take(1, what)[0]

    def u2(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u4(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")


def _decode_mutf8(raw: bytes, r: _Reader, offset: int) -> str:
    """Decode the JVM's modified UTF-8 (NUL as C0 80, supplementary chars as surrogate pairs)."""
    try:
        return raw.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise r.fail(f"constant pool Utf8 is not modified UTF-8 (byte {exc.start})", offset) from None


def _read_pool(r: _Reader) -> list[Const | None]:
    count = r.u2("constant_pool_count")
    pool: list[Const | None] = [None] * max(count, 1)
    i = 1
    while i < count:
        at = r.pos
        tag = r.u1(f"constant pool entry {i} tag")
        what = f"constant pool entry {i} ({TAG_NAMES.get(tag, 'bad tag')})"
        if tag == UTF8:
            n = r.u2(what)
            pool[i] = Const(tag, _decode_mutf8(r.take(n, what), r, at), offset=at)
        elif tag in (INTEGER, FLOAT):
            raw = r.take(4, what)
            val = struct.unpack(">i" if tag == INTEGER else ">f", raw)[0]
            pool[i] = Const(tag, val, offset=at)
        elif tag in (LONG, DOUBLE):
            raw = r.take(8, what)
            val = struct.unpack(">q" if tag == LONG else ">d", raw)[0]
            pool[i] = Const(tag, val, offset=at)
            i += 1  # takes two slots
        elif tag in (CLASS, STRING, METHOD_TYPE, MODULE, PACKAGE):
            pool[i] = Const(tag, r.u2(what), offset=at)
        elif tag in (FIELDREF, METHODREF, IMETHODREF, NAME_AND_TYPE, DYNAMIC, INVOKE_DYNAMIC):
            pool[i] = Const(tag, r.u2(what), r.u2(what), offset=at)
        elif tag == METHOD_HANDLE:
            pool[i] = Const(tag, r.u1(what), r.u2(what), offset=at)
        else:
            raise r.fail(f"constant pool entry {i} has unknown tag {tag}", at)
        i += 1
    if i != count and count:
        raise r.fail(f"constant pool: a Long/Double occupies the slot after the last entry {count - 1}")
    return pool


def _check_pool(pool: list[Const | None], r: _Reader) -> None:
    """Every index inside the pool points at an entry of the right kind."""

    def want(idx: int, tags: tuple[int, ...], owner: int, c: Const) -> None:
        e = pool[idx] if 0 < idx < len(pool) else None
        if e is None or e.tag not in tags:
            names = "/".join(TAG_NAMES[t] for t in tags)
            raise r.fail(
                f"constant pool entry {owner} refers to entry {idx}, which is not a {names}", c.offset
            )

    for i, c in enumerate(pool):
        if c is None:
            continue
        t = c.tag
        if t in (CLASS, STRING, METHOD_TYPE, MODULE, PACKAGE):
            want(int(c.a), (UTF8,), i, c)
        elif t in (FIELDREF, METHODREF, IMETHODREF):
            want(int(c.a), (CLASS,), i, c)
            want(c.b, (NAME_AND_TYPE,), i, c)
        elif t == NAME_AND_TYPE:
            want(int(c.a), (UTF8,), i, c)
            want(c.b, (UTF8,), i, c)
        elif t in (DYNAMIC, INVOKE_DYNAMIC):
            want(c.b, (NAME_AND_TYPE,), i, c)
        elif t == METHOD_HANDLE:
            if not 1 <= int(c.a) <= 9:
                raise r.fail(f"constant pool entry {i}: bad MethodHandle kind {c.a}", c.offset)
            want(c.b, (FIELDREF,) if int(c.a) <= 4 else (METHODREF, IMETHODREF), i, c)


def _scan_code(code: bytes, base: int, r: _Reader, method: str) -> list[tuple[int, int]]:
    """Constant-pool indices named by the bytecode, with each instruction's offset."""
    refs: list[tuple[int, int]] = []
    pc = 0
    n = len(code)
    while pc < n:
        op = code[pc]
        if op > 0xC9:
            raise r.fail(f"{method}: unknown opcode 0x{op:02x} at bytecode index {pc}", base + pc)
        if op == 0xAA or op == 0xAB:  # tableswitch / lookupswitch
            p = pc + 1 + ((4 - (pc + 1) % 4) % 4)
            if p + 12 > n:
                raise r.fail(f"{method}: truncated switch at bytecode index {pc}", base + pc)
            if op == 0xAA:
                lo, hi = struct.unpack_from(">ii", code, p + 4)
                if hi < lo:
                    raise r.fail(f"{method}: tableswitch high < low at bytecode index {pc}", base + pc)
                nxt = p + 12 + 4 * (hi - lo + 1)
            else:
                (npairs,) = struct.unpack_from(">i", code, p + 4)
                if npairs < 0:
                    raise r.fail(f"{method}: negative lookupswitch size at bytecode index {pc}", base + pc)
                nxt = p + 8 + 8 * npairs
        elif op == 0xC4:  # wide
            if pc + 1 >= n:
                raise r.fail(f"{method}: truncated wide at bytecode index {pc}", base + pc)
            nxt = pc + (6 if code[pc + 1] == 0x84 else 4)
        else:
            nxt = pc + 1 + _OPERANDS[op]
            if op in _CP_OPS and nxt <= n:
                idx = code[pc + 1] if op == 0x12 else (code[pc + 1] << 8) | code[pc + 2]
                refs.append((idx, pc))
        if nxt > n:
            raise r.fail(f"{method}: instruction at bytecode index {pc} runs past the code", base + pc)
        pc = nxt
    return refs


def _read_code(r: _Reader, m: Method, length: int) -> None:
    start = r.pos
    r.u2("max_stack")
    r.u2("max_locals")
    clen = r.u4("code_length")
    code_at = r.pos
    m.code = r.take(clen, "code")
    m.code_offset = code_at
    m.code_refs = _scan_code(m.code, code_at, r, f"method {m.name}{m.descriptor}")
    for _ in range(r.u2("exception_table_length")):
        r.take(4, "exception table range")
        handler = r.u2("handler_pc")
        catch = r.u2("catch_type")
        if handler >= clen:
            raise r.fail(f"method {m.name}: exception handler at {handler} is outside the code", r.pos - 4)
        m.catch_types.append(catch)
        m.handlers.append((handler, catch))
    for _ in range(r.u2("code attributes_count")):
        r.u2("attribute_name_index")
        r.take(r.u4("attribute_length"), "code attribute")
    if r.pos - start != length:
        raise r.fail(f"method {m.name}: Code attribute length {length} does not match its contents", start)


def parse_class(data: bytes, where: str = "class") -> ClassFile:
    """Parse one class file; ``where`` (e.g. ``jar entry a/B.class``) prefixes errors."""
    r = _Reader(bytes(data), where)
    magic = r.u4("magic")
    if magic != MAGIC:
        raise r.fail(f"bad magic 0x{magic:08X} (a class file starts with 0xCAFEBABE)", 0)
    minor = r.u2("minor_version")
    major = r.u2("major_version")
    if not MIN_MAJOR <= major <= MAX_MAJOR:
        raise r.fail(
            f"class file version {major}.{minor} is not supported (this node runs Java 17, "
            f"major {MIN_MAJOR}..{MAX_MAJOR}; build with --release 17)",
            6,
        )
    pool = _read_pool(r)
    _check_pool(pool, r)

    def idx(what: str, tags: tuple[int, ...], allow_zero: bool = False) -> int:
        at = r.pos
        i = r.u2(what)
        if allow_zero and i == 0:
            return 0
        e = pool[i] if 0 < i < len(pool) else None
        if e is None or e.tag not in tags:
            raise r.fail(f"{what} refers to constant pool entry {i}, which is not a {TAG_NAMES[tags[0]]}", at)
        return i

    access = r.u2("access_flags")
    this_i = idx("this_class", (CLASS,))
    super_i = idx("super_class", (CLASS,), allow_zero=True)
    cls = ClassFile(
        name="",
        major=major,
        minor=minor,
        access=access,
        super_name=None,
        interfaces=[],
        pool=pool,
        fields=[],
        methods=[],
        bootstraps=[],
        inner_class_refs=set(),
    )
    cls.name = cls.class_name(this_i)
    r.where = f"{where} ({cls.name})"
    cls.super_name = cls.class_name(super_i) if super_i else None
    for _ in range(r.u2("interfaces_count")):
        cls.interfaces.append(cls.class_name(idx("interface", (CLASS,))))
    for _ in range(r.u2("fields_count")):
        f_access = r.u2("field access_flags")
        f_name = cls.utf8(idx("field name_index", (UTF8,)))
        f_desc = cls.utf8(idx("field descriptor_index", (UTF8,)))
        cls.fields.append((f_name, f_desc, f_access))
        for _ in range(r.u2("field attributes_count")):
            idx("field attribute_name_index", (UTF8,))
            r.take(r.u4("field attribute_length"), "field attribute")
    for _ in range(r.u2("methods_count")):
        m_access = r.u2("method access_flags")
        m = Method(
            cls.utf8(idx("method name_index", (UTF8,))),
            cls.utf8(idx("method descriptor_index", (UTF8,))),
            m_access,
        )
        for _ in range(r.u2("method attributes_count")):
            aname = cls.utf8(idx("method attribute_name_index", (UTF8,)))
            alen = r.u4("method attribute_length")
            if aname == "Code":
                _read_code(r, m, alen)
            else:
                r.take(alen, f"method attribute {aname}")
        cls.methods.append(m)
    for _ in range(r.u2("class attributes_count")):
        aname = cls.utf8(idx("class attribute_name_index", (UTF8,)))
        alen = r.u4("class attribute_length")
        end = r.pos + alen
        if aname == "BootstrapMethods":
            for _ in range(r.u2("num_bootstrap_methods")):
                bsm = idx("bootstrap_method_ref", (METHOD_HANDLE,))
                args = [r.u2("bootstrap argument") for _ in range(r.u2("num_bootstrap_arguments"))]
                cls.bootstraps.append((bsm, args))
        elif aname == "InnerClasses":
            for _ in range(r.u2("number_of_classes")):
                cls.inner_class_refs.add(r.u2("inner_class_info_index"))
                cls.inner_class_refs.add(r.u2("outer_class_info_index"))
                r.take(4, "inner class name and flags")
        else:
            r.take(alen, f"class attribute {aname}")
        if r.pos != end:
            raise r.fail(f"class attribute {aname} length {alen} does not match its contents", end - alen)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes of trailing data after the class file")
    return cls


def descriptor_classes(desc: str) -> list[str]:
    """Internal class names named by a field or method descriptor (``Ljava/lang/String;``)."""
    out: list[str] = []
    i = desc.find("L")
    while i >= 0:
        j = desc.find(";", i)
        if j < 0:
            break
        out.append(desc[i + 1 : j])
        i = desc.find("L", j)
    return out
