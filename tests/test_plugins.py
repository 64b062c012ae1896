"""Runtime discovery through pluggy and the ``pan.runtimes`` entry points."""

import importlib.metadata

import pytest

from pan_runtime import hookimpl
from pan_runtime.errors import PanError
from pan_runtime.net.application import Application
from pan_runtime.node.node import Node
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins
from pan_runtime.plugin.runtime import Isolation, Runtime

BUILTIN = {"native", "wasm", "jvm", "restricted_py"}


def test_entry_points_declare_the_four_builtin_runtimes():
    names = {ep.name for ep in importlib.metadata.entry_points(group="pan.runtimes")}
    assert BUILTIN <= names


def test_every_builtin_runtime_is_available_here():
    """On this machine kind every runtime must run; a missing one is a failure, not a skip."""
    infos = {i.name: i for i in load_plugins().runtime_infos()}
    for name in sorted(BUILTIN):
        assert name in infos, f"{name} not registered"
        assert infos[name].available, f"{name}: {infos[name].reason}"
    assert infos["wasm"].isolation == "sandboxed"
    assert infos["native"].isolation == "none"
    assert infos["jvm"].isolation == "guarded"
    assert infos["restricted_py"].isolation == "guarded"


def test_third_party_example_is_discovered_and_runs_a_capsule():
    plugins = load_plugins(extra=[nullrt])
    infos = {i.name: i for i in plugins.runtime_infos()}
    assert "verdict" in infos, "install examples/verdict-runtime (the README's test command does)"
    assert infos["verdict"].available
    from pan_runtime.data.codeobj import CodeObject
    from pan_verdict.plugin import VerdictRuntime

    code = CodeObject.create("verdict", b"deliver 9")
    with Node(1, plugins=plugins) as n:
        n.install(code)
        assert isinstance(n.runtime("verdict"), VerdictRuntime)
        app = Application(n)
        app.send(code, b"hello")
        n.process()
        assert n.cache.peek(code.name).stats.drops["no_port"] == 1  # DELIVER(9) reached the node


def test_broken_and_unavailable_plugins_are_reported_not_fatal():
    class Broken:
        @hookimpl
        def pan_register_runtimes(self, registry):
            raise RuntimeError("cannot register")

    class Missing(Runtime):
        name = "missing"
        isolation = Isolation.SANDBOXED

        @classmethod
        def available(cls):
            return "engine not installed"

        def load(self, code, deps, host):  # pragma: no cover
            raise AssertionError

    class Provides:
        @hookimpl
        def pan_register_runtimes(self, registry):
            registry.add(Missing)

    plugins = load_plugins(extra=[Broken(), Provides(), nullrt], entry_points=False)
    infos = {i.name: i for i in plugins.runtime_infos()}
    assert not infos["missing"].available and infos["missing"].reason == "engine not installed"
    assert infos["null"].available
    assert any("cannot register" in why for why in plugins.failures.values())
    from pan_runtime.data.codeobj import CodeObject

    with Node(1, plugins=plugins) as n, pytest.raises(PanError, match="engine not installed"):
        n.install(CodeObject.create("missing", b""))


def test_duplicate_runtime_names_are_refused():
    from pan_runtime.plugin.plugins import RuntimeRegistry

    class A(Runtime):
        name = "dup"
        isolation = Isolation.NONE

        def load(self, code, deps, host):  # pragma: no cover
            raise AssertionError

    class B(A):
        pass

    reg = RuntimeRegistry()
    reg.add(A)
    with pytest.raises(PanError, match="registered twice"):
        reg.add(B)


class Recorder:
    """A plugin that implements every hook pan declares and records the calls."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def pan_register_runtimes(self, registry):
        self.calls.append(("runtimes", type(registry).__name__))

    @hookimpl
    def pan_register_builders(self, registry):
        self.calls.append(("builders", type(registry).__name__))

    @hookimpl
    def pan_register_sources(self, registry):
        self.calls.append(("sources", type(registry).__name__))

    @hookimpl
    def pan_node_started(self, node):
        self.calls.append(("started", node.name, len(node.cache)))

    @hookimpl
    def pan_node_stopping(self, node):
        self.calls.append(("stopping", node.name, len(node.cache)))


def test_every_declared_hook_fires_through_the_manager():
    from pan_runtime.plugin import hookspecs

    rec = Recorder()
    plugins = load_plugins(extra=[rec, nullrt], entry_points=False)
    assert plugins.manager.is_registered(rec)
    declared = {name for name in dir(hookspecs) if name.startswith("pan_")}
    assert declared == {n for n in dir(rec) if n.startswith("pan_")}
    assert rec.calls == [("runtimes", "RuntimeRegistry"), ("builders", "BuilderRegistry"), ("sources", "SourceRegistry")]
    with Node(1, plugins=plugins, name="n1") as n:
        assert rec.calls[-1] == ("started", "n1", 0)
        n.install(nullrt.null_code("forward"))
    assert rec.calls[-1] == ("stopping", "n1", 1)  # before the code is unloaded
    assert [c[0] for c in rec.calls] == ["runtimes", "builders", "sources", "started", "stopping"]


def test_a_plugin_that_does_not_match_the_hooks_is_refused_and_reported():
    class Unknown:
        @hookimpl
        def pan_no_such_hook(self):
            pass

    class WrongArgs:
        @hookimpl
        def pan_register_runtimes(self, registry, extra):
            pass

    unknown, wrong = Unknown(), WrongArgs()
    plugins = load_plugins(extra=[unknown, wrong, nullrt], entry_points=False)
    assert not plugins.manager.is_registered(unknown) and not plugins.manager.is_registered(wrong)
    assert "pan_no_such_hook" in plugins.failures["Unknown"]
    assert "does not match pan's hooks" in plugins.failures["WrongArgs"]
    assert "null" in plugins.runtimes


def test_registration_records_which_plugin_added_each_runtime():
    plugins = load_plugins(extra=[nullrt], entry_points=False)
    assert plugins.runtimes.source("null") == plugins.manager.get_name(nullrt)
