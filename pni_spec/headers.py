"""Load and validate a header spec: the capsule-body structures of some protocols, in TOML.

A header spec has a ``[codecs]`` table (``c_prefix``, ``java_package``) and ``[[struct]]``
entries (``name``, ``doc``, ``fields = [{name, type}, ...]``); fields are laid out in order,
network byte order, no padding. ``pni_spec.codecs`` turns one into C, Java and Python codecs.
"""

from __future__ import annotations

import keyword
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pni_spec.errors import SpecError
from pni_spec.gen_common import camel
from pni_spec.gen_java import JAVA_KEYWORDS
from pni_spec.toml_lines import KeyPath, dotted, key_lines, line_of

__all__ = ["FIELD_SIZES", "StructField", "Struct", "HeaderSpec", "parse_headers", "load_headers"]

#: field types of capsule-body structures, with their sizes in bytes
FIELD_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "i32": 4, "i64": 8, "addr": 16}
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_C_PREFIX = re.compile(r"^[a-z][a-z0-9]*_$")
_JAVA_PACKAGE = re.compile(r"^[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)*$")


@dataclass(frozen=True)
class StructField:
    name: str
    type: str
    offset: int

    @property
    def size(self) -> int:
        return FIELD_SIZES[self.type]


@dataclass(frozen=True)
class Struct:
    name: str
    doc: str
    fields: tuple[StructField, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fields)


@dataclass(frozen=True)
class HeaderSpec:
    """A header spec: where its codecs go by language, and its structures in order."""

    c_prefix: str
    java_package: str
    structs: tuple[Struct, ...]


#: the keys each table of a header spec may have
_KEYS = {"": {"codecs", "struct"}, "codecs": {"c_prefix", "java_package"}, "struct": {"name", "doc", "fields"},
         "field": {"name", "type"}}
#: C keywords (C23 included): a field is a struct member in C
_C_KEYWORDS = frozenset(
    "alignas alignof auto bool break case char const constexpr continue default do double else enum extern "
    "false float for goto if inline int long nullptr register restrict return short signed sizeof static "
    "static_assert struct switch thread_local true typedef typeof typeof_unqual union unsigned void volatile "
    "while".split()
)
#: names a field cannot have in the Python codec: keywords, ``self`` and the class's methods
_PY_TAKEN = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"self", "unpack", "pack_into", "pack", "read", "write"}
#: class names a structure cannot take: the names the generated Python and Java import
_CLASS_TAKEN = frozenset({"PniError", "PNI", "PniBytes", "PniStatus", "ByteBuffer"})


def _get(table: Any, key: str, kind: type, where: str, path: KeyPath) -> Any:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table", path)
    if key not in table:
        raise SpecError(f"{where}: missing key {key!r}", path)
    value = table[key]
    if not isinstance(value, kind):
        raise SpecError(f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}", path + (key,))
    return value


def _known_keys(table: dict[str, Any], kind: str, where: str, path: KeyPath) -> None:
    unknown = sorted(set(table) - _KEYS[kind])
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_KEYS[kind]))}",
                        path + (unknown[0],))


def _ident(name: str, where: str, path: KeyPath) -> str:
    if not _IDENT.match(name):
        raise SpecError(f"{where}: {name!r} is not a lower_snake identifier", path)
    return name


def _field_name(name: str, where: str, path: KeyPath) -> str:
    _ident(name, where, path)
    for taken, language in ((_C_KEYWORDS, "a C keyword"), (_PY_TAKEN, "taken in the Python codec")):
        if name in taken:
            raise SpecError(f"{where}: field name {name!r} is {language}; choose another", path)
    return name


def parse_headers(data: dict[str, Any]) -> HeaderSpec:
    """Validate a decoded header spec; every problem names where it is (``SpecError.key``)."""
    _known_keys(data, "", "spec", ())
    head = _get(data, "codecs", dict, "spec", ())
    _known_keys(head, "codecs", "[codecs]", ("codecs",))
    c_prefix = _get(head, "c_prefix", str, "[codecs]", ("codecs",))
    if not _C_PREFIX.match(c_prefix):
        raise SpecError(f"[codecs]: c_prefix {c_prefix!r} must be lower-case letters and digits ending in '_'",
                        ("codecs", "c_prefix"))
    if c_prefix == "pni_":
        raise SpecError("[codecs]: c_prefix 'pni_' is pni.h's own; choose another", ("codecs", "c_prefix"))
    java_package = _get(head, "java_package", str, "[codecs]", ("codecs",))
    if not _JAVA_PACKAGE.match(java_package) or set(java_package.split(".")) & JAVA_KEYWORDS:
        raise SpecError(f"[codecs]: java_package {java_package!r} is not a lower-case dotted package "
                        "(of names that are not Java keywords)", ("codecs", "java_package"))
    structs = []
    classes: dict[str, str] = {}
    for i, s in enumerate(_get(data, "struct", list, "spec", ())):
        at: KeyPath = ("struct", i)
        name = _ident(_get(s, "name", str, f"[[struct]] {i}", at), f"[[struct]] {i}", at + ("name",))
        where = f"[[struct]] {name}"
        _known_keys(s, "struct", where, at)
        cls = camel(name, upper=True)
        if cls in _CLASS_TAKEN:
            raise SpecError(f"{where}: its class {cls} would hide the {cls} the codecs import; choose another name",
                            at + ("name",))
        if classes.get(cls) == name:
            raise SpecError(f"{where}: duplicate struct name", at + ("name",))
        if cls in classes:
            raise SpecError(f"{where}: its class {cls} is also the class of struct {classes[cls]}", at + ("name",))
        classes[cls] = name
        fields = []
        offset = 0
        for j, f in enumerate(_get(s, "fields", list, where, at)):
            fat = at + ("fields", j)
            fname = _field_name(_get(f, "name", str, f"{where} field {j}", fat), f"{where} field {j}", fat + ("name",))
            _known_keys(f, "field", f"{where} field {fname}", fat)
            ftype = _get(f, "type", str, f"{where} field {fname}", fat)
            if ftype not in FIELD_SIZES:
                raise SpecError(f"{where} field {fname}: unknown type {ftype!r}; one of {' '.join(FIELD_SIZES)}",
                                fat + ("type",))
            if any(other.name == fname for other in fields):
                raise SpecError(f"{where}: duplicate field names ({fname!r})", fat + ("name",))
            fields.append(StructField(fname, ftype, offset))
            offset += FIELD_SIZES[ftype]
        if not fields:
            raise SpecError(f"{where}: no fields", at + ("fields",))
        structs.append(Struct(name, _get(s, "doc", str, where, at), tuple(fields)))
    return HeaderSpec(c_prefix, java_package, tuple(structs))


def load_headers(path: str | Path) -> HeaderSpec:
    """The header spec in the TOML file ``path``; ``SpecError`` says ``file:line: key: problem``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise SpecError(f"{p}:{m.group(1)}: not valid TOML: {exc}" if m else f"{p}: not valid TOML: {exc}") from None
    try:
        return parse_headers(data)
    except SpecError as exc:
        line = line_of(key_lines(text), exc.key)
        where = f"{p}:{line}" if line else str(p)
        key = f" {dotted(exc.key)}:" if exc.key else ""
        raise SpecError(f"{where}:{key} {exc}", exc.key) from None
