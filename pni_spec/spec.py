"""Load and validate ``pni.toml`` into typed objects; malformed specs raise ``SpecError``."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pni_spec.errors import SpecError

SPEC_PATH = Path(__file__).with_name("pni.toml")

#: parameter types of calls and entry points
PARAM_TYPES = {"i32", "u32", "i64", "u64", "handle", "link", "bytes_in", "bytes_out", "addr_in", "addr_out", "name_out"}
RESULT_TYPES = {"i32", "i64"}
#: parameter types that point at a fixed-size area; ``[sizes]`` gives each one's size
FIXED_TYPES = ("addr_in", "addr_out", "name_out")
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"^(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str


@dataclass(frozen=True)
class Call:
    name: str
    group: str
    params: tuple[Param, ...]
    result: str
    errors: tuple[str, ...]
    doc: str
    #: how the node answers the call without an environment ("" when it does not); see HOT_KINDS
    hot: str = ""


#: what a ``hot`` call does when answered from the capsule body or the fast path's context:
#: length/read/write/getN/setN on the body (handle 1), or one field of the context
HOT_KINDS = frozenset(
    {"length", "read", "write", "get8", "get16", "get32", "set8", "set16", "set32",
     "origin_kind", "prev_hop", "node_address"}
)


@dataclass(frozen=True)
class Entry:
    name: str
    required: bool
    params: tuple[Param, ...]
    result: str
    doc: str


@dataclass(frozen=True)
class Status:
    name: str
    value: int
    doc: str


@dataclass(frozen=True)
class Verdict:
    name: str
    value: int
    arg: str | None
    doc: str


@dataclass(frozen=True)
class Spec:
    version: str
    wasm_module: str
    c_prefix: str
    java_package: str
    #: (type, bytes) of each fixed-size pointer type, in FIXED_TYPES order
    sizes: tuple[tuple[str, int], ...]
    statuses: tuple[Status, ...]
    verdicts: tuple[Verdict, ...]
    entries: tuple[Entry, ...]
    calls: tuple[Call, ...]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])

    def size(self, param_type: str) -> int:
        """Bytes at a pointer of the fixed-size ``param_type`` (``addr_in``, ``name_out``, ...)."""
        return dict(self.sizes)[param_type]

    def call(self, name: str) -> Call:
        for c in self.calls:
            if c.name == name:
                return c
        raise KeyError(name)

    def status_value(self, name: str) -> int:
        for s in self.statuses:
            if s.name == name:
                return s.value
        raise KeyError(name)


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise SpecError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _ident(name: str, where: str) -> str:
    if not _IDENT.match(name):
        raise SpecError(f"{where}: {name!r} is not a lower_snake identifier")
    return name


def _params(raw: Any, where: str) -> tuple[Param, ...]:
    if not isinstance(raw, list):
        raise SpecError(f"{where}: 'params' must be a list")
    out = []
    seen = set()
    for i, p in enumerate(raw):
        if not isinstance(p, dict):
            raise SpecError(f"{where}: param {i} must be a table")
        name = _ident(_get(p, "name", str, f"{where} param {i}"), f"{where} param {i}")
        ptype = _get(p, "type", str, f"{where} param {name}")
        if ptype not in PARAM_TYPES:
            raise SpecError(f"{where} param {name}: unknown type {ptype!r}")
        if name in seen:
            raise SpecError(f"{where}: duplicate param {name!r}")
        seen.add(name)
        out.append(Param(name, ptype))
    return tuple(out)


def parse_spec(data: dict[str, Any]) -> Spec:
    """Validate a decoded spec table; every problem names where it is."""
    head = _get(data, "pni", dict, "spec")
    version = _get(head, "version", str, "[pni]")
    if not _VERSION.match(version):
        raise SpecError(f"[pni]: version {version!r} is not MAJOR.MINOR")
    raw_sizes = _get(data, "sizes", dict, "spec")
    if set(raw_sizes) != set(FIXED_TYPES):
        raise SpecError(f"[sizes]: must give exactly {', '.join(FIXED_TYPES)}")
    sizes = tuple((t, _get(raw_sizes, t, int, "[sizes]")) for t in FIXED_TYPES)
    for t, n in sizes:
        if n <= 0:
            raise SpecError(f"[sizes]: {t} must be positive")
    statuses = []
    for i, s in enumerate(_get(data, "status", list, "spec")):
        where = f"[[status]] {i}"
        statuses.append(Status(_get(s, "name", str, where), _get(s, "value", int, where), _get(s, "doc", str, where)))
    if [s.value for s in statuses if s.value > 0]:
        raise SpecError("[[status]]: values must be 0 or negative")
    if len({s.value for s in statuses}) != len(statuses) or len({s.name for s in statuses}) != len(statuses):
        raise SpecError("[[status]]: names and values must be unique")
    verdicts = []
    for i, v in enumerate(_get(data, "verdict", list, "spec")):
        where = f"[[verdict]] {i}"
        value = _get(v, "value", int, where)
        if not 0 <= value <= 255:
            raise SpecError(f"{where}: value must fit the low byte")
        verdicts.append(Verdict(_get(v, "name", str, where), value, v.get("arg"), _get(v, "doc", str, where)))
    entries = []
    for i, e in enumerate(_get(data, "entry", list, "spec")):
        where = f"[[entry]] {i}"
        result = _get(e, "result", str, where)
        if result not in RESULT_TYPES:
            raise SpecError(f"{where}: unknown result type {result!r}")
        entries.append(
            Entry(
                _ident(_get(e, "name", str, where), where),
                bool(e.get("required", False)),
                _params(e.get("params", []), where),
                result,
                _get(e, "doc", str, where),
            )
        )
    status_names = {s.name for s in statuses}
    calls = []
    for i, c in enumerate(_get(data, "call", list, "spec")):
        name = _ident(_get(c, "name", str, f"[[call]] {i}"), f"[[call]] {i}")
        where = f"[[call]] {name}"
        result = _get(c, "result", str, where)
        if result not in RESULT_TYPES:
            raise SpecError(f"{where}: unknown result type {result!r}")
        errors = tuple(_get(c, "errors", list, where))
        for err in errors:
            if err not in status_names:
                raise SpecError(f"{where}: unknown status {err!r} in errors")
        hot = c.get("hot", "")
        if hot and hot not in HOT_KINDS:
            raise SpecError(f"{where}: unknown hot kind {hot!r} (one of {', '.join(sorted(HOT_KINDS))})")
        calls.append(
            Call(name, _ident(_get(c, "group", str, where), where), _params(c.get("params", []), where),
                 result, errors, _get(c, "doc", str, where), hot)
        )
    if len({c.name for c in calls}) != len(calls):
        raise SpecError("[[call]]: duplicate call names")
    if "struct" in data:
        raise SpecError("[[struct]]: capsule-body structures belong to their protocols' header spec "
                        "(pni_spec.codecs), not to the node interface")
    return Spec(
        version=version,
        wasm_module=_get(head, "wasm_module", str, "[pni]"),
        c_prefix=_get(head, "c_prefix", str, "[pni]"),
        java_package=_get(head, "java_package", str, "[pni]"),
        sizes=sizes,
        statuses=tuple(statuses),
        verdicts=tuple(verdicts),
        entries=tuple(entries),
        calls=tuple(calls),
    )


def load_spec_file(path: str | Path) -> Spec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: {exc}") from None
    try:
        return parse_spec(data)
    except SpecError as exc:
        raise SpecError(f"{p}: {exc}") from None


@functools.cache
def load_spec() -> Spec:
    """The spec shipped with this package (cached)."""
    return load_spec_file(SPEC_PATH)
