"""Fuzzing the ELF reader and the linker: mutated compiler output is loaded or refused with a
CodeObjectError, never anything else (no other exception, no crash of the process)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_helpers import SOURCES, compile_c

from pan_native.elfobject import parse_object
from pan_native.image import Resolved, link
from pan_runtime.errors import CodeObjectError

pytestmark = pytest.mark.fuzz


class Objects(list):
    """Real objects to mutate (printed short when hypothesis reports a failing case)."""

    def __repr__(self) -> str:
        return f"<{len(self)} compiled objects>"


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> Objects:
    """PIC and non-PIC objects, with data, relocations and calls out."""
    tmp = tmp_path_factory.mktemp("elf")
    return Objects([
        compile_c(SOURCES / "dep.c", tmp, ["-O2", "-fPIC"], "dep"),
        compile_c(SOURCES / "dep.c", tmp, ["-O0", "-fno-pic"], "dep0"),
    ])


def _load(data: bytes) -> None:
    """Parse and link ``data`` the way the runtime does; unmap what was linked."""
    obj = parse_object(data)
    image = link(obj, lambda name: Resolved(0x1000, False) if name.startswith("pni_") else None)
    image.close()


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    return bytes(buf[:cut] if cut is not None else buf)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 1),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8),
    header_edits=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=3),
    cut=st.none() | st.integers(0, 4096),
)
def test_mutated_objects_load_or_raise_code_object_error(objects, which, edits, header_edits, cut):
    data = _mutate(objects[which], edits + header_edits, cut)
    try:
        _load(data)
    except CodeObjectError:
        pass


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_code_object_error(objects, data):
    with pytest.raises(CodeObjectError):
        _load(b"\x7fELF" + data)
