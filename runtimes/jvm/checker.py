"""The load-time check of a jvm code object: every class against ``pan_jvm.allowlist``.

``check_jar`` reads the jar, parses each class file (``pan_jvm.classfile``) and refuses the
code object with a ``CodeObjectError`` naming the class and the offending reference
before any byte reaches the JVM. It is a guard, not a proof: the gate class loader
enforces the same class list again when the JVM links the code.

The node's load limits bound the work before the checker runs: ``scan_jar`` reads the
entry count from the zip's end record (on the node's thread, before anything else);
``read_jar`` refuses more classes (``code_entries``) or a larger class (``code_bytes``)
than allowed before inflating anything; ``check_classes`` counts the methods of the parsed
classes against ``code_functions`` before checking them. ``check_job`` is the whole check
as a job for the node's compiler process (code from the network).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pan_jvm import allowlist
from pan_jvm.classfile import (
    ACC_NATIVE,
    CLASS,
    DYNAMIC,
    FIELDREF,
    IMETHODREF,
    INVOKE_DYNAMIC,
    METHOD_HANDLE,
    METHOD_TYPE,
    METHODREF,
    ClassFile,
    Method,
    descriptor_classes,
    parse_class,
)
from pan_jvm.handlers import absorbs_stop
from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = [
    "MAX_CLASSES",
    "MAX_JAR_BYTES",
    "CheckedJar",
    "scan_jar",
    "class_bytes",
    "read_jar",
    "check_classes",
    "check_jar",
    "check_job",
    "verdict",
]

MAX_CLASSES = 4096
MAX_JAR_BYTES = 16 << 20


@dataclass(frozen=True)
class CheckedJar:
    """The classes of one code object that passed the check, by internal name (``a/B``)."""

    classes: Mapping[str, bytes]
    parsed: Mapping[str, ClassFile]

    def binary_names(self) -> dict[str, bytes]:
        """Classes keyed by the binary name the JVM asks a class loader for (``a.B``)."""
        return {name.replace("/", "."): data for name, data in self.classes.items()}


#: the zip end-of-central-directory record: signature, disk numbers, entry counts, sizes
_EOCD = struct.Struct("<IHHHHIIH")
_EOCD_SIG = 0x06054B50


def scan_jar(payload: bytes, limits: LoadLimits, who: str = "jar") -> None:
    """Refuse a jar whose zip directory lists more entries than ``code_entries``, reading only
    its end record (the directory itself is not parsed)."""
    data = bytes(payload)
    at = data.rfind(struct.pack("<I", _EOCD_SIG), max(0, len(data) - _EOCD.size - 0xFFFF))
    if at < 0 or at + _EOCD.size > len(data):
        return  # not a zip: read_jar says so
    entries = _EOCD.unpack_from(data, at)[4]
    if entries == 0xFFFF:
        raise CodeObjectError(
            f"{who}: a zip64 directory (65535 entries or more); code object jars must be smaller",
            FaultReason.TOO_MANY_ENTRIES,
        )
    limits.require(f"{who} entries", entries, "code_entries", FaultReason.TOO_MANY_ENTRIES)


def class_bytes(payload: bytes, max_entries: int) -> int | None:
    """The inflated size the jar's directory declares for its classes (what checking them
    costs), or None when it lists more than ``max_entries`` entries or is not a zip."""
    data = bytes(payload)
    at = data.rfind(struct.pack("<I", _EOCD_SIG), max(0, len(data) - _EOCD.size - 0xFFFF))
    if at < 0 or at + _EOCD.size > len(data) or _EOCD.unpack_from(data, at)[4] > max_entries:
        return None
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None
    return sum(i.file_size for i in infos if i.filename.endswith(".class"))


def read_jar(payload: bytes, limits: LoadLimits | None = None) -> dict[str, bytes]:
    """The ``.class`` entries of a jar, by internal class name; other entries are ignored.
    With ``limits``: at most ``code_entries`` classes, each at most ``code_bytes`` inflated."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(payload))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CodeObjectError(f"jvm payload is not a jar (zip): {exc}") from None
    out: dict[str, bytes] = {}
    total = 0
    for info in infos:
        if not info.filename.endswith(".class") or info.is_dir():
            continue
        if len(out) >= MAX_CLASSES:
            raise CodeObjectError(f"jar holds more than {MAX_CLASSES} classes")
        if limits is not None:
            limits.require("jar classes", len(out) + 1, "code_entries", FaultReason.TOO_MANY_ENTRIES)
            limits.require(f"jar entry {info.filename} bytes", info.file_size, "code_bytes", FaultReason.CODE_TOO_BIG)
        total += info.file_size
        if total > MAX_JAR_BYTES:
            raise CodeObjectError(
                f"jar classes exceed {MAX_JAR_BYTES} bytes uncompressed (at {info.filename})"
            )
        if info.flag_bits & 0x1:
            raise CodeObjectError(f"jar entry {info.filename} is encrypted; a code object's jar must not be")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CodeObjectError(
                f"jar entry {info.filename} uses compression method {info.compress_type}; "
                "a code object's jar is stored or deflated"
            )
        try:
            data = zf.read(info)
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise CodeObjectError(
                f"jar entry {info.filename} at offset {info.header_offset} is corrupt: {exc}"
            ) from None
        out[info.filename[: -len(".class")]] = data
    if not out:
        raise CodeObjectError("jar holds no .class entries")
    return out


class _Refusal(CodeObjectError):
    pass


class _Checker:
    def __init__(self, own: Collection[str], visible: Collection[str], contained: bool = False):
        self.own = set(own)
        self.visible = set(visible)
        #: the code runs in a worker process the node kills past its budget: a handler that
        #: swallows the watchdog's stop then costs that worker, not the node (not refused)
        self.contained = contained

    def free(self, name: str) -> bool:
        """Classes code may use without member restrictions: its own, deps', the PNI's."""
        return name in self.own or name in self.visible or name.startswith(allowlist.PNI_PACKAGE)

    def klass(self, cls: ClassFile, name: str, context: str) -> None:
        if name.startswith("["):
            for n in descriptor_classes(name):
                self.klass(cls, n, context)
            return
        if self.free(name) or name in allowlist.ALLOWED:
            return
        raise _Refusal(
            f"class {cls.name} refers to {name.replace('/', '.')} ({context}): "
            f"{allowlist.why_refused(name)}; refused by the jvm allowlist"
        )

    def descriptor(self, cls: ClassFile, desc: str, context: str) -> None:
        for n in descriptor_classes(desc):
            self.klass(cls, n, context)

    def member(self, cls: ClassFile, owner: str, name: str, desc: str, context: str) -> None:
        pretty = f"{owner.replace('/', '.')}.{name}"
        if name in allowlist.FORBIDDEN_MEMBERS or (name == "finalize" and desc == "()V"):
            raise _Refusal(f"class {cls.name} calls {pretty} ({context}): refused by the jvm allowlist")
        if owner.startswith("["):  # array methods: clone, length, Object's members
            return
        self.klass(cls, owner, f"{context} {name}")
        if not self.free(owner):
            members = allowlist.ALLOWED[owner]
            if members is not allowlist.ALL and name not in members:
                raise _Refusal(
                    f"class {cls.name} uses {pretty} ({context}): only "
                    f"{', '.join(sorted(members))} of {owner.replace('/', '.')} are allowed"
                )
        self.descriptor(cls, desc, f"{context} {pretty}")

    def handlers(self, cls: ClassFile, m: Method, where: str) -> None:
        """Refuse a handler that catches the watchdog's stop (or an error the lane contains)
        and could swallow it (``pan_jvm.handlers``)."""
        seen: set[int] = set()
        for handler, ct in m.handlers:
            caught = cls.class_name(ct) if ct else None
            if handler in seen or (caught is not None and caught not in allowlist.FORBIDDEN_CATCH):
                continue
            seen.add(handler)
            why = absorbs_stop(cls, m, handler)
            if why is None:
                continue
            what = (
                f"has a finally block (a catch-any handler at bytecode index {handler})"
                if caught is None
                else f"catches {caught.replace('/', '.')} (a handler at bytecode index {handler})"
            )
            raise _Refusal(
                f"class {cls.name} {where} {what} that could swallow the watchdog's stop: {why}; "
                "a handler that catches it must rethrow it, changing nothing but locals first",
                FaultReason.ABSORBS_STOP,
            )

    def bootstrap(self, cls: ClassFile, handle_index: int) -> tuple[str, str, str]:
        mh = cls.pool[handle_index]
        assert mh is not None
        owner, name, desc = cls.member(mh.b)
        if (owner, name) not in allowlist.BOOTSTRAPS:
            raise _Refusal(
                f"class {cls.name} uses bootstrap method {owner.replace('/', '.')}.{name}: "
                "only string concatenation, lambda and record bootstraps are allowed"
            )
        return owner, name, desc

    def check(self, cls: ClassFile) -> None:
        if any(cls.name.startswith(p) for p in allowlist.RESERVED_PACKAGES):
            raise _Refusal(f"class {cls.name} is in a reserved package; code objects may not define it")
        if cls.super_name is not None:
            self.klass(cls, cls.super_name, "superclass")
        for i in cls.interfaces:
            self.klass(cls, i, "interface")
        for fname, fdesc, _ in cls.fields:
            self.descriptor(cls, fdesc, f"field {fname}")
        for m in cls.methods:
            where = f"method {m.name}{m.descriptor}"
            if m.access & ACC_NATIVE:
                raise _Refusal(f"class {cls.name} declares native {where}: native methods are refused")
            if m.name == "finalize" and m.descriptor == "()V":
                raise _Refusal(f"class {cls.name} declares finalize(): it would run outside every budget")
            self.descriptor(cls, m.descriptor, where)
        # bootstrap methods are vouched for by the allowlist; their own descriptors are not checked
        vouched: set[int] = set()
        for bsm, args in cls.bootstraps:
            self.bootstrap(cls, bsm)
            vouched.add(cls.pool[bsm].b)  # type: ignore[union-attr]
            for a in args:
                c = cls.pool[a] if 0 < a < len(cls.pool) else None
                if c is None:
                    raise _Refusal(f"class {cls.name}: bootstrap argument {a} is not a constant")
        used_classes: set[int] = set()
        vouched_classes: set[int] = set()
        for i, c in enumerate(cls.pool):
            if c is None:
                continue
            if c.tag in (FIELDREF, METHODREF, IMETHODREF):
                if i in vouched:
                    vouched_classes.add(int(c.a))
                    continue
                used_classes.add(int(c.a))
                owner, name, desc = cls.member(i)
                self.member(cls, owner, name, desc, "constant pool")
            elif c.tag == METHOD_HANDLE and c.b not in vouched:
                owner, name, desc = cls.member(c.b)
                self.member(cls, owner, name, desc, "method handle")
            elif c.tag == METHOD_TYPE:
                self.descriptor(cls, cls.utf8(int(c.a)), "method type")
            elif c.tag == INVOKE_DYNAMIC:
                nat = cls.pool[c.b]
                assert nat is not None
                self.descriptor(cls, cls.utf8(nat.b), "invokedynamic")
            elif c.tag == DYNAMIC:
                raise _Refusal(f"class {cls.name}: dynamic constants (condy) are refused")
        for m in cls.methods:
            for idx, _pc in m.code_refs:
                c = cls.pool[idx] if 0 < idx < len(cls.pool) else None
                if c is None:
                    raise CodeObjectError(
                        f"class {cls.name} method {m.name}: bytecode refers to missing constant {idx}"
                    )
                if c.tag == CLASS:
                    used_classes.add(idx)
        used_classes.update(ct for m in cls.methods for ct in m.catch_types if ct)
        for i, c in enumerate(cls.pool):
            if c is not None and c.tag == CLASS:
                # named only by InnerClasses (MethodHandles$Lookup) or a vouched bootstrap: not used
                if (i in cls.inner_class_refs or i in vouched_classes) and i not in used_classes:
                    continue
                self.klass(cls, cls.class_name(i), "class constant")
        if self.contained:
            return
        for m in cls.methods:  # after the references: a class naming a refused one is refused for that
            self.handlers(cls, m, f"method {m.name}{m.descriptor}")


def check_classes(
    classes: Mapping[str, bytes], visible: Collection[str] = (), limits: LoadLimits | None = None, *, contained: bool = False
) -> dict[str, ClassFile]:
    """Parse and check ``classes`` (internal name -> bytes); ``visible`` are dependency classes.
    With ``limits``: at most ``code_functions`` methods in all, counted before the check.
    ``contained``: the runtime runs in a worker process (``Runtime.contained``), where exception
    handlers that could swallow the watchdog's stop are not refused (the node kills the worker)."""
    parsed: dict[str, ClassFile] = {}
    methods = 0
    for name, data in classes.items():
        cf = parse_class(data, f"jar entry {name}.class")
        if cf.name != name:
            raise CodeObjectError(f"jar entry {name}.class defines class {cf.name}; the names must match")
        parsed[name] = cf
        methods += len(cf.methods)
        if limits is not None:
            limits.require(f"jar methods (at {name})", methods, "code_functions", FaultReason.TOO_MANY_FUNCTIONS)
    checker = _Checker(parsed, visible, contained)
    for cf in parsed.values():
        checker.check(cf)
    return parsed


def check_jar(payload: bytes, visible: Collection[str] = (), limits: LoadLimits | None = None) -> CheckedJar:
    """Read, parse and check a code object's jar; raise ``CodeObjectError`` on the first problem."""
    if limits is not None:
        scan_jar(payload, limits)
    classes = read_jar(payload, limits)
    return CheckedJar(classes, check_classes(classes, visible, limits))


def verdict(payload: bytes, visible: Collection[str]) -> bytes:
    """What ``check_job`` answers for a jar that passed with ``visible`` dependency classes."""
    h = hashlib.sha256(b"pan-jvm-checked\0")
    h.update(hashlib.sha256(payload).digest())
    h.update("\0".join(sorted(visible)).encode())
    return h.digest()


def check_job(payload: bytes, settings: Mapping[str, Any]) -> bytes:
    """The compiler process's job: the whole check under the node's limits; the verdict."""
    visible = list(settings["visible"])
    check_jar(payload, visible, LoadLimits(**settings["limits"]))
    return verdict(payload, visible)
