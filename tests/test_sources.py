"""The sources plugins register for their runtimes (``pan_runtime.plugin.sources``, hook
``pan_register_sources``): reference protocols and conformance-case folders, checked when
registered, found by ``reference_code`` and the conformance kit for any runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from pan_runtime import hookimpl
from pan_runtime.cli.protocols import has_reference_sources, reference_code, source_of
from pan_runtime.errors import BuildError, CodeObjectError, PanError
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins
from pan_runtime.plugin.sources import PROTOCOLS, SourceRegistry, shipped_protocols
from pan_runtime.resources import cases_dir, protocols_dir
from pan_runtime.testing import build_case, source_for


def test_the_builtin_runtimes_register_pans_sources_through_the_hook():
    plugins = load_plugins()
    assert {"native", "wasm", "jvm", "restricted_py"} <= set(plugins.sources.with_protocols())
    assert "verdict" not in plugins.sources.with_protocols()
    assert plugins.sources.protocols("native").source == "native"  # registered by the native plugin
    assert source_of("jvm", "ping", plugins) == protocols_dir() / "java" / "Ping.java"
    jvm = plugins.sources.protocols("jvm").sources("ping")
    assert jvm[0].name == "Ping.java" and any(p.name == "PingHdr.java" for p in jvm[1:])
    assert plugins.sources.protocols("wasm").input_files() == [protocols_dir() / "headers.h"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"forward": "f.py"}, "missing: ping, flood, portmapper"),
        ({**{p: f"{p}.py" for p in PROTOCOLS}, "echo": "echo.py"}, "unknown: echo"),
        ("py", "starts with '.'"),
        ({**{p: f"{p}.py" for p in PROTOCOLS}, "ping": ()}, "names at least one file"),
    ],
)
def test_bad_registrations_are_refused_with_the_reason(files, message):
    with pytest.raises(PanError, match=message):
        SourceRegistry().add_protocols("mine", Path("/nowhere"), files)


def test_registering_a_runtimes_protocols_twice_names_both_plugins():
    reg = SourceRegistry()
    reg.current_source = "first"
    reg.add_protocols("mine", Path("/a"), ".py")
    reg.current_source = "second"
    with pytest.raises(PanError, match="registered twice: by first and second"):
        reg.add_protocols("mine", Path("/b"), ".py")


class Mine:
    """A plugin that gives runtime restricted_py-alike sources under the name ``mine``."""

    def __init__(self, folder: Path, cases: Path | None = None):
        self.folder = folder
        self.cases = cases

    @hookimpl
    def pan_register_runtimes(self, registry):
        from pan_restricted_py.runtime import RestrictedPyRuntime

        class MyRuntime(RestrictedPyRuntime):
            name = "mine"

        registry.add(MyRuntime)

    @hookimpl
    def pan_register_builders(self, registry):
        from pan_restricted_py.builder import RestrictedPyBuilder

        class MyBuilder(RestrictedPyBuilder):
            runtime = "mine"
            suffixes = (".mine",)

        registry.add(MyBuilder())

    @hookimpl
    def pan_register_sources(self, registry):
        registry.add_protocols("mine", lambda: self.folder, ".mine")
        if self.cases:
            registry.add_cases("mine", self.cases)


def test_a_plugins_protocols_and_cases_are_built_with_its_builder(tmp_path: Path):
    protocols, cases = tmp_path / "protocols", tmp_path / "cases"
    protocols.mkdir()
    for p in PROTOCOLS:
        (protocols / f"{p}.mine").write_text((protocols_dir() / f"{p}.py").read_text())
    (cases / "dep").mkdir(parents=True)
    (cases / "dep" / "lib.mine").write_text((cases_dir() / "dep" / "lib.py").read_text())
    plugins = load_plugins(extra=[Mine(protocols, cases), nullrt], entry_points=True)
    assert has_reference_sources("mine", plugins)
    code = reference_code("mine", "ping", plugins)
    assert code.manifest.runtime == "mine" and code.manifest.meta["label"] == "ping-mine"
    assert source_for("dep", "lib", "mine", plugins).path == cases / "dep" / "lib.mine"
    # pan's folder has no .mine source: the kit names every place it looked and the hook
    with pytest.raises(BuildError, match=r"case dep has no source for runtime mine \(its builders take \.mine\).*registry\.add_cases"):
        source_for("dep", "capsule", "mine", plugins)
    assert build_case("dep", "mine", plugins, stem="lib", exports=("triple",)).manifest.runtime == "mine"
    # a source that went missing is named, with who registered it
    (protocols / "flood.mine").unlink()
    assert not has_reference_sources("mine", plugins)
    with pytest.raises(CodeObjectError, match=r"flood\.mine is missing \(reinstall the plugin"):
        reference_code("mine", "flood", plugins)


def test_a_runtime_without_sources_is_named_with_the_hook_to_use():
    plugins = load_plugins(extra=[nullrt])
    assert not has_reference_sources("verdict", plugins)
    with pytest.raises(CodeObjectError, match="no reference protocols for runtime 'verdict'.*pan_register_sources"):
        reference_code("verdict", "forward", plugins)


def test_shipped_protocols_cover_three_languages():
    for lang, suffix in (("c", ".c"), ("java", ".java"), ("python", ".py")):
        directory, files, _ = shipped_protocols(lang)
        assert all((directory() / names[0]).is_file() and names[0].endswith(suffix) for names in files.values())
    with pytest.raises(PanError, match="not 'rust'"):
        shipped_protocols("rust")
