"""Compiled modules are cached per code object name, in memory and across restarts on disk."""

from __future__ import annotations

import pytest
from wasm_helpers import FORWARD_WAT, wat_code

from pan_wasm.runtime import WasmRuntime


def test_second_runtime_loads_the_artifact_instead_of_compiling(tmp_path, host, run):
    code = wat_code(FORWARD_WAT)
    first = WasmRuntime({"cache_dir": str(tmp_path)})
    try:
        assert run(first.load(code, [], host)) == 2
        assert first.cache.stats.compiled == 1
        path = first.cache.path_for(code)
        assert path is not None and path.exists() and path.name.startswith(code.hex_name)
        first.load(code, [], host)
        assert first.cache.stats.memory_hits == 1 and first.cache.stats.compiled == 1
    finally:
        first.close()

    restarted = WasmRuntime({"cache_dir": str(tmp_path)})
    try:
        loaded = restarted.load(code, [], host)
        assert restarted.cache.stats.compiled == 0
        assert restarted.cache.stats.disk_hits == 1
        assert run(loaded) == 2
    finally:
        restarted.close()


def test_other_engine_settings_use_another_artifact(tmp_path, host):
    code = wat_code(FORWARD_WAT)
    epoch = WasmRuntime({"cache_dir": str(tmp_path)})
    fuel = WasmRuntime({"cache_dir": str(tmp_path), "budget": "fuel"})
    try:
        epoch.load(code, [], host)
        fuel.load(code, [], host)
        assert fuel.cache.stats.compiled == 1  # fuel metering changes generated code
        assert epoch.cache.path_for(code) != fuel.cache.path_for(code)
        assert len(list(tmp_path.glob("*.cwasm"))) == 2
    finally:
        epoch.close()
        fuel.close()


def test_a_corrupt_artifact_is_replaced(tmp_path, host, run):
    code = wat_code(FORWARD_WAT)
    rt = WasmRuntime({"cache_dir": str(tmp_path)})
    path = rt.cache.path_for(code)
    assert path is not None
    path.write_bytes(b"\x7fELF garbage")
    try:
        assert run(rt.load(code, [], host)) == 2
        assert rt.cache.stats.disk_errors == 1 and rt.cache.stats.compiled == 1
        assert path.read_bytes()[:4] == b"\x7fELF" and len(path.read_bytes()) > 100
    finally:
        rt.close()


def _tamper_in_the_middle(path, _tmp):  # type: ignore[no-untyped-def]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def _copy_from_another_node(path, tmp_path):  # type: ignore[no-untyped-def]
    other = WasmRuntime({"cache_dir": str(tmp_path / "other")})
    try:
        code = wat_code(FORWARD_WAT)
        other.load(code, [], None)
        theirs = other.cache.path_for(code)
        path.write_bytes(theirs.read_bytes())  # a valid artifact, and its record, under their key
        path.with_name(path.name + ".auth").write_bytes(theirs.with_name(theirs.name + ".auth").read_bytes())
    finally:
        other.close()


@pytest.mark.parametrize(
    "spoil",
    [
        _tamper_in_the_middle,
        lambda path, _tmp: path.with_name(path.name + ".auth").unlink(),
        _copy_from_another_node,
    ],
    ids=["altered", "no_record", "from_another_node"],
)
def test_an_artifact_not_verified_as_this_nodes_is_compiled_again_never_deserialized(tmp_path, host, run, spoil):
    code = wat_code(FORWARD_WAT)
    first = WasmRuntime({"cache_dir": str(tmp_path / "codes")})
    try:
        first.load(code, [], host)
    finally:
        first.close()
    path = first.cache.path_for(code)
    spoil(path, tmp_path)
    again = WasmRuntime({"cache_dir": str(tmp_path / "codes")})
    try:
        assert run(again.load(code, [], host)) == 2
        assert again.cache.stats.disk_errors == 1 and again.cache.stats.disk_hits == 0
        assert again.cache.stats.compiled == 1
    finally:
        again.close()
    restarted = WasmRuntime({"cache_dir": str(tmp_path / "codes")})  # the replacement is good
    try:
        restarted.load(code, [], host)
        assert restarted.cache.stats.disk_hits == 1 and restarted.cache.stats.compiled == 0
    finally:
        restarted.close()
