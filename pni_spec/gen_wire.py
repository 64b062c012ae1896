"""Generate the capsule wire constants from ``[wire]`` in ``pni.toml``.

Two files read them: ``pan_runtime/include/pan_wire.h`` (the compiled UDP fast path checks
headers and verdicts without Python) and ``pan_runtime/data/wire.py`` (the capsule codec).
One table, so the C and Python paths cannot disagree on an offset.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from pni_spec.gen_common import BANNER
from pni_spec.spec import SPEC_PATH, Spec, SpecError

__all__ = ["WIRE_KEYS", "load_wire", "render_wire"]

#: every key of ``[wire]``, in the order the generated files list them
WIRE_KEYS = (
    "version",
    "header_size",
    "version_offset",
    "flags_offset",
    "hop_limit_offset",
    "reserved_offset",
    "name_offset",
    "home_offset",
    "flag_system",
    "known_flags",
    "default_hop_limit",
    "verdict_kind_mask",
    "sys_header_size",
    "sys_request",
    "sys_chunk",
    "sys_not_found",
    "sys_error_report",
    "error_report_fields",
    "error_reason_max",
    "error_detail_max",
    "error_quote_max",
)


@functools.cache
def load_wire(path: Path = SPEC_PATH) -> dict[str, int]:
    """The ``[wire]`` table, checked: every key an int, the header's fields where the sizes say."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("wire")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: cannot read [wire]: {exc}") from None
    if not isinstance(table, dict):
        raise SpecError(f"{path}: no [wire] table")
    unknown = sorted(set(table) - set(WIRE_KEYS))
    missing = [k for k in WIRE_KEYS if k not in table]
    if unknown or missing:
        raise SpecError(f"[wire]: unknown keys {unknown}, missing keys {missing}")
    for key in WIRE_KEYS:
        if not isinstance(table[key], int) or isinstance(table[key], bool) or table[key] < 0:
            raise SpecError(f"[wire] {key}: must be a non-negative integer")
    w = {k: int(table[k]) for k in WIRE_KEYS}
    if [w["version_offset"], w["flags_offset"], w["hop_limit_offset"], w["reserved_offset"]] != [0, 1, 2, 3]:
        raise SpecError("[wire]: version, flags, hop limit and reserved are the bytes 0..3")
    if w["name_offset"] != 4 or w["home_offset"] != 4 + 32 or w["header_size"] != w["home_offset"] + 16:
        raise SpecError("[wire]: the name (32 bytes) follows byte 3, the home address (16 bytes) the name")
    if w["default_hop_limit"] > 255 or w["version"] > 255 or w["known_flags"] > 255:
        raise SpecError("[wire]: version, flags and hop limit are single bytes")
    if w["sys_header_size"] != 4 + 16:
        raise SpecError("[wire]: a system body starts with kind, two reserved fields (u8, u16) and a 16-byte address")
    kinds = [w["sys_request"], w["sys_chunk"], w["sys_not_found"], w["sys_error_report"]]
    if len(set(kinds)) != len(kinds) or not all(0 < k <= 255 for k in kinds):
        raise SpecError("[wire]: the system capsule kinds are distinct bytes above 0")
    if w["error_report_fields"] != 4 or not 0 < w["error_reason_max"] <= 255 or not 0 < w["error_quote_max"] <= 255:
        raise SpecError("[wire]: an error report's reason and quote lengths are bytes, its detail length a u16")
    if not 0 < w["error_detail_max"] <= 0xFFFF:
        raise SpecError("[wire]: error_detail_max must fit the u16 detail length")
    return w


def _forward_kind(spec: Spec) -> int:
    for v in spec.verdicts:
        if v.name == "FORWARD":
            return v.value
    raise SpecError("[[verdict]]: the wire constants need FORWARD")


def render_wire(spec: Spec) -> dict[str, str]:
    """``{path: text}`` of the C header and the Python module."""
    w = load_wire()
    forward = _forward_kind(spec)
    c = [
        f"/* {BANNER}",
        " *",
        " * The capsule wire format's constants for the compiled fast path (pan_runtime/net/_fastpath.c);",
        " * pan_runtime/data/wire.py holds the same values for Python. See pni_spec/wire-format.md.",
        " */",
        "#ifndef PAN_WIRE_H",
        "#define PAN_WIRE_H",
        "",
    ]
    c += [f"#define PAN_WIRE_{k.upper()} {w[k]}" for k in WIRE_KEYS]
    c += ["#define PAN_WIRE_NAME_SIZE 32", "#define PAN_WIRE_ADDRESS_SIZE 16", f"#define PAN_WIRE_VERDICT_FORWARD {forward}"]
    c += ["", "#endif", ""]
    py = [
        f'"""{BANNER}',
        "",
        "The capsule wire format's constants (pni_spec/wire-format.md); pan_runtime/include/pan_wire.h",
        "holds the same values for the compiled fast path.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    py += [f"{k.upper()} = {w[k]}" for k in WIRE_KEYS]
    py += ["NAME_SIZE = 32", "ADDRESS_SIZE = 16", f"VERDICT_FORWARD = {forward}", ""]
    return {"pan_runtime/include/pan_wire.h": "\n".join(c), "pan_runtime/data/wire.py": "\n".join(py)}
