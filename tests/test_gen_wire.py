"""The wire constants: one table in pni.toml, the same values in C, Python and the codec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pan_runtime.data import capsule, wire
from pni_spec import generate, load_spec
from pni_spec.errors import SpecError
from pni_spec.gen_wire import WIRE_KEYS, load_wire, render_wire


def test_the_header_and_the_module_carry_the_table():
    table = load_wire()
    header = (generate.REPO_ROOT / "pan_runtime/include/pan_wire.h").read_text(encoding="utf-8")
    defines = {m[1]: int(m[2]) for m in re.finditer(r"#define PAN_WIRE_(\w+) (\d+)", header)}
    for key in WIRE_KEYS:
        assert defines[key.upper()] == table[key] == getattr(wire, key.upper())
    assert defines["VERDICT_FORWARD"] == wire.VERDICT_FORWARD == 2


def test_the_capsule_codec_uses_them():
    assert (capsule.HEADER_SIZE, capsule.VERSION, capsule.FLAG_SYSTEM) == (wire.HEADER_SIZE, wire.VERSION, wire.FLAG_SYSTEM)
    assert capsule.DEFAULT_HOP_LIMIT == wire.DEFAULT_HOP_LIMIT


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("header_size = 52", "header_size = 50"), "home address"),
        (lambda t: t.replace("hop_limit_offset = 2", "hop_limit_offset = 5"), "bytes 0..3"),
        (lambda t: t.replace("known_flags = 1", "known_flags = 1\nextra = 2"), "unknown keys"),
        (lambda t: t.replace("version = 1 ", "version = -1 "), "non-negative"),
    ],
)
def test_a_bad_table_is_refused(tmp_path: Path, edit, message):
    spec = tmp_path / "pni.toml"
    spec.write_text(edit((generate.REPO_ROOT / "pni_spec/pni.toml").read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(SpecError, match=message):
        load_wire(spec)


def test_render_is_stable():
    assert render_wire(load_spec()) == render_wire(load_spec())
