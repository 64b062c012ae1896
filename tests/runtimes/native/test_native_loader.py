"""The native loader on real gcc objects: every relocation kind, every optimisation and PIC mode."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest
from native_helpers import SOURCES

from pan_native.elfobject import RELOC_NAMES, SHN_COMMON, parse_object
from pan_native.image import Resolved, link
from pan_native.runtime import NativeRuntime
from pan_runtime.data.codeobj import CodeObject

FLAGS = {
    "O0-pie": ["-O0"],
    "O2-pic": ["-O2", "-fPIC"],
    "O3-pic": ["-O3", "-fPIC"],
    "O2-pie": ["-O2", "-fPIE"],
    "O2-nopic": ["-O2", "-fno-pic"],
    "O3-nopic": ["-O3", "-fno-pic"],
    "O1-pic-noplt": ["-O1", "-fPIC", "-fno-plt"],
    "O2-pic-norelax": ["-O2", "-fPIC", "-Wa,-mrelax-relocations=no"],
    "O0-nopic-medium": ["-O0", "-fno-pic", "-mcmodel=medium"],
    "O2-common": ["-O2", "-fcommon"],
}


def _load_pair(cc, host, flags):
    rt = NativeRuntime()
    dep_code = CodeObject.create(
        "native", cc(SOURCES / "dep.c", flags, "dep"), exports=["shared_counter", "dep_add"]
    )
    dep = rt.load(dep_code, [], host)
    code = CodeObject.create(
        "native", cc(SOURCES / "relocs.c", flags, "relocs"), dependencies=[dep_code.name], exports=["probe"]
    )
    return dep, rt.load(code, [dep], host)


@pytest.mark.parametrize("flags", list(FLAGS.values()), ids=list(FLAGS))
def test_relocations_link_and_run(cc, host, flags):
    dep, code = _load_pair(cc, host, flags)
    try:
        probe = code.call_export
        assert probe("probe", 0, 0) == 8  # static data, read and written
        assert probe("probe", 0, 0) == 9
        assert [probe("probe", 1, i) for i in range(4)] == [10, 20, 30, 40]
        assert probe("probe", 2, 7) == ord("p")  # .rodata
        assert probe("probe", 3, 0) == ord("m")  # pointer to a string literal (R_X86_64_64)
        assert probe("probe", 4, 5) == 25  # function pointers in .data and .data.rel.ro
        assert probe("probe", 5, 3) == 3 and probe("probe", 5, 4) == 7  # .bss or COMMON
        assert probe("probe", 6, 1) == 1001  # extern data of a dependency
        assert probe("probe", 7, 41) == 42  # function of a dependency
        assert probe("probe", 8, 0) == ord("o")  # memset/memcpy from libc
        assert probe("probe", 9, 0) == 0  # PNI host call through a trampoline
        assert probe("probe", 10, 0) == 1  # 32-bit absolute address agrees with the 64-bit one
        assert probe("probe", 11, 5) == 1005
        assert probe("probe", 6, 0) == 1005  # the dependency's data really is shared
    finally:
        code.unload()
        dep.unload()


def test_every_required_relocation_kind_is_exercised(cc):
    seen: set[str] = set()
    for flags in FLAGS.values():
        obj = parse_object(cc(SOURCES / "relocs.c", flags, "relocs"))
        seen |= {RELOC_NAMES[r.type] for r in obj.relocations}
    required = {"R_X86_64_64", "R_X86_64_PC32", "R_X86_64_PLT32", "R_X86_64_32", "R_X86_64_32S",
                "R_X86_64_GOTPCREL", "R_X86_64_GOTPCRELX", "R_X86_64_REX_GOTPCRELX"}
    assert required <= seen


def test_common_symbols_are_allocated(cc):
    obj = parse_object(cc(SOURCES / "relocs.c", ["-O2", "-fcommon"], "relocs"))
    assert any(s.shndx == SHN_COMMON and s.name == "zeroed" for s in obj.symbols)


def _maps_for(base: int, size: int) -> list[str]:
    perms = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo < base + size and hi > base:
            perms.append(line.split()[1])
    return perms


def test_write_xor_execute(cc, host):
    dep, code = _load_pair(cc, host, ["-O2", "-fPIC"])
    try:
        for image in (code.image, code._support, dep.image):
            perms = _maps_for(image.base, image.size)
            assert perms, "image not found in /proc/self/maps"
            assert all(not ("w" in p and "x" in p) for p in perms)
            assert any("x" in p for p in perms) and any("w" in p for p in perms)
    finally:
        code.unload()
        dep.unload()


def test_got_is_read_only_after_relocation(cc):
    obj = parse_object(cc(SOURCES / "dep.c", ["-O2", "-fPIC", "-fno-plt"], "dep"))
    calls = []
    with link(obj, lambda name: None) as image:
        assert image.address("dep_add") is not None
    del calls
    src = "extern long f(long); long g(long x) { return f(x) + 1; }"
    obj = parse_object(cc(src, ["-O2", "-fPIC", "-fno-plt"], "g"))
    cb = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)(lambda x: x * 10)
    with link(obj, lambda name: Resolved(ctypes.cast(cb, ctypes.c_void_p).value, True, cb)) as image:
        g = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)(image.address("g"))
        assert g(4) == 41
        perms = _maps_for(image.base, image.size)
        assert perms.count("r--p") >= 1  # rodata + GOT group


def test_unmapped_after_close(cc):
    obj = parse_object(cc(SOURCES / "dep.c", ["-O2"], "dep"))
    image = link(obj, lambda name: None)
    base, size = image.base, image.size
    image.close()
    assert _maps_for(base, size) == [] or all(not re.match("r.x", p) for p in _maps_for(base, size))
    image.close()  # idempotent
