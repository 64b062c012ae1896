"""``pan build --runtime wasm`` from WAT and from C."""

from __future__ import annotations

import pytest
from wasm_helpers import FORWARD_WAT

from pan_runtime.errors import BuildError
from pan_runtime.plugin.builders import BuilderRegistry, BuildRequest
from pan_wasm.builder import WasmBuilder


def _build(*paths, **kw):
    return WasmBuilder().build(BuildRequest(list(paths), "wasm", **kw))


def test_registry_finds_the_builder_for_both_suffixes():
    reg = BuilderRegistry()
    reg.add(WasmBuilder())
    assert WasmBuilder.available() is None
    assert isinstance(reg.find("wasm", ".c"), WasmBuilder) and isinstance(
        reg.find("wasm", ".wat"), WasmBuilder
    )


def test_wat_build_records_exported_entries(tmp_path, runtime, host, run):
    src = tmp_path / "stateful.wat"
    src.write_text(
        FORWARD_WAT.replace("(func (export", '(func (export "init") (result i32) i32.const 0) (func (export')
    )
    code = _build(src, label="fw")
    assert code.runtime == "wasm"
    assert code.manifest.entry == {"accept": "accept", "init": "init"}
    assert code.manifest.meta == {"sources": ["stateful.wat"], "label": "fw", "tool": "wat2wasm"}
    loaded = runtime.load(code, [], host)
    assert loaded.init() == 0 and run(loaded) == 2


def test_c_build_with_exports_and_dependencies(tmp_path, runtime, host):
    dep = _build(_write(tmp_path, "dep.wat", FORWARD_WAT))
    src = _write(
        tmp_path,
        "lib.c",
        '#include "pni.h"\n'
        "PNI_EXPORT(accept) int32_t accept(pni_handle_t c, uint32_t n) { (void)c; return (int32_t)n; }\n"
        "PNI_EXPORT(twice) int64_t twice(int64_t a0, int64_t a1) { (void)a1; return 2 * a0; }\n",
    )
    code = _build(src, exports=["twice"], dependencies=[dep])
    assert code.manifest.exports == ("twice",) and code.manifest.dependencies == (dep.name,)
    assert runtime.load(code, [], host).call_export("twice", 21, 0) == 42


def test_compiler_errors_are_reported(tmp_path):
    src = _write(tmp_path, "bad.c", "int32_t accept(void) { return nope; }\n")
    with pytest.raises(BuildError, match="(?s)wasm build failed.*nope"):
        _build(src)


def test_undefined_functions_are_a_link_error_not_an_import(tmp_path):
    src = _write(
        tmp_path,
        "libc.c",
        '#include "pni.h"\nvoid *memmove(void *, const void *, unsigned long);\n'
        "static char b[8];\n"
        "PNI_EXPORT(accept) int32_t accept(pni_handle_t c, uint32_t n) { memmove(b, b + c, n); return 0; }\n",
    )
    with pytest.raises(BuildError, match="memmove"):
        _build(src)


def test_source_mix_and_missing_accept_are_refused(tmp_path):
    with pytest.raises(BuildError, match="all .c or one .wat"):
        _build(_write(tmp_path, "a.c", ""), _write(tmp_path, "b.wat", FORWARD_WAT))
    with pytest.raises(BuildError, match="does not export 'accept'"):
        _build(_write(tmp_path, "empty.wat", '(module (memory (export "memory") 1))'))
    with pytest.raises(BuildError, match="not valid WebAssembly text"):
        _build(_write(tmp_path, "broken.wat", "(module (func"))
    with pytest.raises(BuildError, match="not defined"):
        _build(_write(tmp_path, "fw.wat", FORWARD_WAT), exports=["missing"])


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path
