"""Load and validate a header spec: the capsule-body structures of some protocols, in TOML.

A header spec has a ``[codecs]`` table (``c_prefix``, ``java_package``) and ``[[struct]]``
entries (``name``, ``doc``, ``fields = [{name, type}, ...]``); fields are laid out in order,
network byte order, no padding. ``pni_spec.codecs`` turns one into C, Java and Python codecs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pni_spec.errors import SpecError

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


def _get(table: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table")
    if key not in table:
        raise SpecError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise SpecError(f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _ident(name: str, where: str) -> str:
    if not _IDENT.match(name):
        raise SpecError(f"{where}: {name!r} is not a lower_snake identifier")
    return name


def parse_headers(data: dict[str, Any]) -> HeaderSpec:
    """Validate a decoded header spec; every problem names where it is."""
    head = _get(data, "codecs", dict, "spec")
    c_prefix = _get(head, "c_prefix", str, "[codecs]")
    if not _C_PREFIX.match(c_prefix):
        raise SpecError(f"[codecs]: c_prefix {c_prefix!r} must be lower-case letters and digits ending in '_'")
    java_package = _get(head, "java_package", str, "[codecs]")
    if not _JAVA_PACKAGE.match(java_package):
        raise SpecError(f"[codecs]: java_package {java_package!r} is not a lower-case dotted package")
    structs = []
    for i, s in enumerate(_get(data, "struct", list, "spec")):
        name = _ident(_get(s, "name", str, f"[[struct]] {i}"), f"[[struct]] {i}")
        where = f"[[struct]] {name}"
        fields = []
        offset = 0
        for j, f in enumerate(_get(s, "fields", list, where)):
            fname = _ident(_get(f, "name", str, f"{where} field {j}"), f"{where} field {j}")
            ftype = _get(f, "type", str, f"{where} field {fname}")
            if ftype not in FIELD_SIZES:
                raise SpecError(f"{where} field {fname}: unknown type {ftype!r}")
            fields.append(StructField(fname, ftype, offset))
            offset += FIELD_SIZES[ftype]
        if not fields:
            raise SpecError(f"{where}: no fields")
        if len({f.name for f in fields}) != len(fields):
            raise SpecError(f"{where}: duplicate field names")
        structs.append(Struct(name, _get(s, "doc", str, where), tuple(fields)))
    if len({s.name for s in structs}) != len(structs):
        raise SpecError("[[struct]]: duplicate struct names")
    return HeaderSpec(c_prefix, java_package, tuple(structs))


def load_headers(path: str | Path) -> HeaderSpec:
    """The header spec in the TOML file ``path``; ``SpecError`` names the file and the place."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: {exc}") from None
    try:
        return parse_headers(data)
    except SpecError as exc:
        raise SpecError(f"{p}: {exc}") from None
