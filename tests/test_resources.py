"""pan_runtime.resources: the files pan ships are found as package data, wherever pan is
installed, and the reference protocols can be pointed elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from pan_runtime import resources
from pan_runtime.cli.protocols import has_reference_sources, reference_code, source_of
from pan_runtime.errors import CodeObjectError, ResourceError


def test_the_shipped_files_are_where_the_package_says():
    assert (resources.include_dir() / "pni.h").is_file()
    assert (resources.pni_java_dir() / "org/pan/pni/PNI.java").is_file()
    protocols = resources.protocols_dir()
    assert {p.name for p in protocols.glob("*.c")} >= {"forward.c", "ping.c", "flood.c", "portmapper.c"}
    assert (protocols / "headers.h").is_file() and (protocols / "java/pan/protocols/PingHdr.java").is_file()
    # pan_protocols is a package of its own, not a folder found beside pan_runtime
    import pan_protocols

    assert Path(pan_protocols.__file__).parent == protocols


def test_pan_protocols_points_the_reference_protocols_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(resources.PROTOCOLS_ENV, str(tmp_path))
    assert source_of("native", "ping") == tmp_path / "ping.c"
    assert not has_reference_sources("native")
    with pytest.raises(CodeObjectError, match=r"reference source .*ping\.c is missing \(reinstall pan-runtime"):
        reference_code("native", "ping")


def test_a_package_that_is_not_installed_is_a_resource_error():
    with pytest.raises(ResourceError, match="package pan_nothing_here is not installed"):
        resources._package_dir("pan_nothing_here")
