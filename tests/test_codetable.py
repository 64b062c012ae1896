"""The code table (``pan_runtime.node.codetable``): runtimes made on demand, installation
checks, dependencies, unloading and the portmapper."""

import pyfunc_runtime as pf
import pytest

from pan_runtime import hookimpl, pni_api
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject, Manifest
from pan_runtime.errors import (
    CodeObjectError,
    FaultReason,
    PniVersionError,
    RuntimeFault,
    RuntimeUnavailable,
    TrustError,
)
from pan_runtime.net.application import Application
from pan_runtime.node import pni
from pan_runtime.node.config import NodeConfig
from pan_runtime.node.events import CodeLoaded, CodeUnloaded
from pan_runtime.node.node import Node
from pan_runtime.node.trust import CodeOrigin
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.loadlimits import LoadLimits
from pan_runtime.plugin.plugins import load_plugins
from pan_runtime.plugin.runtime import Isolation, Runtime

PLUGINS = load_plugins(extra=[nullrt, pf])
FWD = nullrt.null_code("forward")
pf.FUNCS["plain"] = lambda host, env: pni.VERDICT_DONE
PLAIN = pf.code("plain", exports=["lookup"])
pf.FUNCS["plain.lookup"] = lambda host, a0, a1: -1


class Absent(Runtime):
    name = "absent"
    isolation = Isolation.SANDBOXED

    @classmethod
    def available(cls):
        return "engine not installed"

    def load(self, code, deps, host):  # pragma: no cover - never made
        raise AssertionError


class _Provides:
    @hookimpl
    def pan_register_runtimes(self, registry):
        registry.add(Absent)


def test_runtimes_are_made_once_and_unavailable_ones_raise_runtime_unavailable():
    plugins = load_plugins(extra=[nullrt, pf, _Provides()], entry_points=False)
    with Node(1, plugins=plugins, config=NodeConfig(runtimes=["null", "absent"])) as n:
        assert n.runtime("null") is n.runtime("null")
        with pytest.raises(RuntimeUnavailable, match="engine not installed"):
            n.runtime("absent")
        with pytest.raises(RuntimeUnavailable, match="not enabled on node"):
            n.runtime("pyfunc")
    with Node(1, plugins=plugins) as n, pytest.raises(RuntimeUnavailable, match="no plugin registers it"):
        n.install(CodeObject.create("nosuch", b""))


def test_trust_and_version_checks_at_install():
    with Node(1, plugins=PLUGINS) as n:
        n.trust.set_rule("network.sandboxed", "signed")
        with pytest.raises(TrustError):
            n.install(FWD, origin=CodeOrigin.NETWORK)
        old = CodeObject(Manifest("null", "9.0", payload_size=7), b"forward")
        with pytest.raises(PniVersionError, match="PNI 9.0"):
            n.install(old)
        assert len(n.cache) == 0


def test_installing_twice_returns_the_entry_and_pins_it_and_events_report_both_ends():
    with Node(1, plugins=PLUGINS) as n:
        first = n.install(PLAIN)
        assert n.install(PLAIN, pin=True) is first and first.pinned
        n.uninstall(PLAIN)
        assert [type(e) for e in n.events] == [CodeLoaded, CodeUnloaded]
        assert n.events[1].reason == "uninstall"
        with pytest.raises(CodeObjectError, match="not installed"):
            n.uninstall(PLAIN)


def test_init_failure_refuses_installation():
    pf.FUNCS["badinit"] = lambda host, env: 0
    pf.FUNCS["badinit.init"] = lambda host: -5
    with Node(1, plugins=PLUGINS) as n:
        with pytest.raises(CodeObjectError, match="refused installation: init returned"):
            n.install(pf.code("badinit"))
        assert len(n.cache) == 0


RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_code_object_over_the_size_limit_is_refused_before_its_runtime_loads_it(runtime):
    code = reference_code(runtime, "forward")
    limits = LoadLimits(code_bytes=code.size - 1)
    with Node(1, config=NodeConfig(load_limits=limits)) as n:
        with pytest.raises(CodeObjectError) as refused:
            n.install(code)
        assert refused.value.reason is FaultReason.CODE_TOO_BIG and "limits.code_bytes" in str(refused.value)
        assert code.name not in n.cache and n.runtime(runtime).load_limits is limits
        with pytest.raises(CodeObjectError):
            n.prepare(code)
    with Node(1, config=NodeConfig(load_limits=LoadLimits(code_bytes=code.size))) as n:
        n.install(code)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_prepare_hands_out_only_the_costly_part_of_loading(runtime):
    """wasm: the compile (unless cached); jvm: the check of a jar whose classes inflate over
    64 KiB; restricted_py: the compile of a source over 8 KiB (the reference forwards are
    smaller); native (linked in the node's process): nothing."""
    code = reference_code(runtime, "forward")
    with Node(1) as n:
        job = n.prepare(code, origin=CodeOrigin.LOCAL)
        if runtime == "wasm":
            assert job is not None and job.target == "pan_wasm.compile:compile_module" and job.payload == code.payload
            n.install(code)
            assert n.prepare(code) is None  # installed
        else:
            assert job is None


def test_dependencies_exports_and_guardians():
    pf.FUNCS["lib"] = lambda host, env: pni.VERDICT_DROP
    pf.FUNCS["lib.double"] = lambda host, a0, a1: 2 * a0
    pf.FUNCS["lib.secret"] = lambda host, a0, a1: 42
    LIB = pf.code("lib", exports=["double"])

    def user(host, env):
        a = host.dep_call(0, b"double", 21, 0)
        b = host.dep_call(0, b"secret", 0, 0)  # not exported: unreachable
        return pni.VERDICT_DONE if (a, b) == (42, pni.NOT_FOUND) else pni.VERDICT_DROP

    pf.FUNCS["user"] = user
    USER = pf.code("user", deps=[LIB])
    with Node(1, plugins=PLUGINS) as n:
        with pytest.raises(CodeObjectError, match="not installed"):
            n.install(USER)
        n.install(LIB)
        n.install(USER)
        assert n.cache.peek(LIB.name).dependants == {USER.name}
        with pytest.raises(CodeObjectError, match="dependency of"):
            n.uninstall(LIB)
        Application(n).send(USER, b"")
        n.process()
        assert n.cache.peek(USER.name).stats.done == 1
        n.uninstall(USER)
        assert n.cache.peek(LIB.name).dependants == set()
        n.uninstall(LIB)


def test_the_portmapper_must_export_lookup_and_leaves_with_its_code():
    with Node(1, plugins=PLUGINS) as n:
        n.install(FWD)
        with pytest.raises(CodeObjectError, match="export 'lookup'"):
            n.use_portmapper(FWD)
        n.install(PLAIN)
        n.use_portmapper(PLAIN)
        assert n.portmapper == PLAIN.name and n.cache.peek(PLAIN.name).pinned
        assert n.codes.portmap(7) == -1
        n.uninstall(PLAIN)
        assert n.portmapper is None and n.codes.portmap(7) is None


def test_call_export_runs_in_an_application_environment_of_its_own():
    seen = []

    def probe(host, a0, a1):
        seen.append((host.env_origin_kind(), a0 + a1))
        return 5

    pf.FUNCS["probe.probe"] = probe
    pf.FUNCS["probe"] = lambda host, env: pni.VERDICT_DONE
    PROBE = pf.code("probe", exports=["probe"])
    with Node(1, plugins=PLUGINS) as n:
        entry = n.install(PROBE)
        current = n.host.current
        assert n.call_export(entry, "probe", 2, 3) == 5 and seen == [(1, 5)]
        assert n.call_export(entry, "missing", 0, 0) == pni.NOT_FOUND
        assert n.host.current is current


class _RuntimeBug(Exception):
    """An exception of a runtime's own (a raw engine exception, not a PanError)."""


def _raise_bug(*args):
    raise _RuntimeBug("the engine's own exception")


def test_a_runtime_exception_from_an_export_or_init_is_a_runtime_error_fault():
    """A lookup, a dependency call and init map whatever a runtime raises to a typed fault:
    the node's dispatch never sees a raw exception (the portmapper's lookup once let one out)."""
    pf.FUNCS.update({"buggy": lambda host, env: pni.VERDICT_DONE, "buggy.lookup": _raise_bug})
    pf.FUNCS.update({"badinit": lambda host, env: pni.VERDICT_DONE, "badinit.init": _raise_bug})
    buggy = pf.code("buggy", exports=["lookup"])
    deliver = pf.code("deliver7")
    pf.FUNCS["deliver7"] = lambda host, env: pni_api.deliver(7)
    with Node(1, plugins=PLUGINS) as n:
        n.install(buggy)
        n.use_portmapper(buggy)
        assert n.codes.portmap(7) is None  # no port; the fault is counted on the portmapper
        stats = n.cache.peek(buggy.name).stats
        assert stats.errors == 1 and stats.drops == {"runtime_error": 1}
        with pytest.raises(RuntimeFault) as err:
            n.call_export(n.cache.peek(buggy.name), "lookup", 7, 0)
        assert err.value.reason == "runtime_error" and "the engine's own exception" in str(err.value)
        n.install(deliver)
        Application(n).send(deliver, b"x")
        n.process()  # the lookup inside dispatch raised: a counted drop, not an escape
        assert n.cache.peek(deliver.name).stats.drops["no_port"] == 1
        with pytest.raises(CodeObjectError, match="refused installation: .*the engine's own exception"):
            n.install(pf.code("badinit"))
