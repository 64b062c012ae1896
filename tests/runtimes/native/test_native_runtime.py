"""The native runtime's accept path, batches, host calls, faults, exports, builder and plugin."""

from __future__ import annotations

import struct
import types
from pathlib import Path

import pytest
from native_helpers import SOURCES, make_env

from pan_native import plugin
from pan_native.builder import NativeBuilder
from pan_native.runtime import NativeRuntime
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment
from pan_runtime.errors import BuildError, ClosedError, RuntimeFault
from pan_runtime.node.env import Origin
from pan_runtime.plugin.builders import BuilderRegistry, BuildRequest
from pan_runtime.plugin.runtime import Isolation, LoadedCode

PROTOCOLS = Path(__file__).resolve().parents[3] / "protocols"
FORWARD_0 = 2
DONE = 1


def build(*sources: Path, exports: tuple[str, ...] = (), deps: tuple[CodeObject, ...] = ()) -> CodeObject:
    return NativeBuilder().build(
        BuildRequest(list(sources), "native", dependencies=list(deps), exports=list(exports))
    )


@pytest.fixture(scope="module")
def body_code() -> CodeObject:
    return build(SOURCES / "body.c", exports=("counter",))


@pytest.fixture
def loaded(body_code, host):
    code = NativeRuntime().load(body_code, [], host)
    yield code
    code.unload()


def body(op: int, *rest: int, size: int = 16) -> bytes:
    data = bytearray(size)
    data[0] = op
    for i, b in enumerate(rest):
        data[1 + i] = b
    return bytes(data)


def test_runtime_identity():
    assert NativeRuntime.name == "native"
    assert NativeRuntime.isolation is Isolation.NONE
    assert NativeRuntime.available() is None
    assert "pyelftools" in NativeRuntime().versions()


def test_forward_needs_no_host_call(pool):
    code = build(PROTOCOLS / "forward.c")
    host = types.SimpleNamespace(current=None)  # no PNI methods at all: any callback would fail
    loaded = NativeRuntime().load(code, [], host)  # type: ignore[arg-type]
    try:
        env = make_env(pool, bytes(40))
        assert loaded.accept(env) == FORWARD_0
        assert host.current is env
        assert loaded.accept_batch([make_env(pool, bytes(20)) for _ in range(5)]) == [FORWARD_0] * 5
    finally:
        loaded.unload()


def test_body_is_changed_in_place(loaded, pool):
    env = make_env(pool, bytes(4) + struct.pack(">I", 41) + bytes(8), loaded.code)
    before = env.body.view()
    assert loaded.accept(env) == 3 | (16 << 8)  # DELIVER(length) from seg_length in C
    assert struct.unpack_from(">I", before, 4)[0] == 42  # the pooled buffer itself was written


def test_host_segments_fall_back(loaded, pool):
    env = make_env(pool, b"\x01\x00\x00\x00ABCD" + bytes(8), loaded.code)
    assert loaded.accept(env) == DONE
    assert env.body.view()[8:12].tobytes() == b"ABCD"
    assert len(env.handles) == 3 and env.handles[2] is None  # allocated, then released via the host


def test_statuses_match_the_host(loaded, pool):
    env = make_env(pool, body(2), loaded.code)
    verdict = loaded.accept(env)
    assert verdict & 0xFF == 3
    arg = verdict >> 8
    assert (arg & 0xF, (arg >> 4) & 0xF, arg >> 8) == (2, 5, 1)  # OUT_OF_RANGE, BAD_ARGUMENT, BAD_HANDLE


def test_chained_body_goes_through_the_host(loaded, host, pool):
    a, b = Segment.owned(bytes(4) + struct.pack(">I", 7)), Segment.owned(bytes(6))
    env = make_env(pool, bytes(1), loaded.code)
    env.body = env.handles[1] = Segment.container([a, b])
    env.length = env.body.length
    assert env.body.address is None
    assert loaded.accept(env) == 3 | (14 << 8)
    assert struct.unpack_from(">I", a.view(), 4)[0] == 8


def test_batch_sets_current_environment(loaded, host, pool):
    envs = []
    for i in range(70):  # more than the preallocated 64
        env = make_env(pool, body(3, i), loaded.code)
        env.origin_kind = Origin(i % 2)
        envs.append(env)
    verdicts = loaded.accept_batch(envs)
    assert verdicts == [3 | (((i % 2) * 1000 + i) << 8) for i in range(70)]
    assert host.current is envs[-1]


def test_batch_fault_is_isolated(loaded, host, node, pool):
    calls = 0

    def now_ns() -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("clock broke")
        return calls

    node.now_ns = now_ns
    envs = [make_env(pool, body(4), loaded.code) for _ in range(3)]
    out = loaded.accept_batch(envs)
    assert out[0] == 3 | (1 << 8) and out[2] == 3 | (3 << 8)
    assert isinstance(out[1], RuntimeFault) and out[1].reason == "host_error"
    assert "pni_node_now_ns" not in str(out[1]) and "node_now_ns raised ValueError('clock broke')" in str(out[1])


def test_single_fault_raises(loaded, node, pool):
    node.now_ns = lambda: 1 / 0
    with pytest.raises(RuntimeFault, match="host call node_now_ns raised ZeroDivisionError") as info:
        loaded.accept(make_env(pool, body(4), loaded.code))
    assert info.value.reason == "host_error"
    node.now_ns = lambda: 5
    assert loaded.accept(make_env(pool, body(4), loaded.code)) == 3 | (5 << 8)  # instance still good


def test_init_finalize_export_reset(loaded):
    assert loaded.init() == 1
    assert loaded.init() == 2
    assert loaded.call_export("counter", 0, 0) == 2
    assert loaded.finalize() == 42
    with pytest.raises(RuntimeFault, match="no export 'missing'"):
        loaded.call_export("missing", 0, 0)
    loaded.reset()
    assert loaded.call_export("counter", 0, 0) == 0  # fresh data after relinking


def test_unload_then_use(body_code, host, pool):
    loaded = NativeRuntime().load(body_code, [], host)
    loaded.unload()
    with pytest.raises(ClosedError):
        loaded.accept(make_env(pool, body(0)))
    loaded.unload()


class PyExporter(LoadedCode):
    """A dependency from another runtime: its exports are reached through call_export."""

    def accept(self, env):
        return 0

    def call_export(self, name, a0, a1):
        if a0 < 0:
            raise RuntimeFault("negative", "code_error")
        return a0 * 100 + a1


def test_dependency_from_another_runtime(cc, host):
    dep_code = CodeObject.create("restricted_py", b"pass", exports=["scale"])
    dep = PyExporter(dep_code, host)
    src = "long scale(long, long); long use(long a, long b) { return scale(a, b) + 1; }\n" \
          "int accept(unsigned c, unsigned n) { return 0; }\n"
    code = CodeObject.create("native", cc(src, name="user"), dependencies=[dep_code.name], exports=["use"])
    loaded = NativeRuntime().load(code, [dep], host)
    try:
        assert loaded.call_export("use", 3, 4) == 305
        with pytest.raises(RuntimeFault, match="negative"):
            loaded.call_export("use", -1, 0)
    finally:
        loaded.unload()


# -- builder and plugin ----------------------------------------------------------------------


def test_builder_manifest(body_code):
    m = body_code.manifest
    assert m.runtime == "native"
    assert dict(m.entry) == {"accept": "accept", "init": "init", "finalize": "finalize"}
    assert m.exports == ("counter",)
    assert "-ffreestanding" in m.meta["cflags"] and m.meta["sources"] == ["body.c"]


def test_builder_dependencies_and_unity_build(tmp_path):
    dep = build(SOURCES / "dep.c", exports=("dep_add", "shared_counter"))
    a = tmp_path / "a.c"
    a.write_text('#include "pni.h"\nextern int64_t dep_add(int64_t, int64_t);\nint64_t helper(void);\n'
                 "int32_t accept(pni_handle_t c, uint32_t n) { return (int32_t)(dep_add(1, 1) + helper()); }\n")
    b = tmp_path / "b.c"
    b.write_text("long helper(void) { return 5; }\n")
    code = build(a, b, deps=(dep,))
    assert code.manifest.dependencies == (dep.name,)


def test_builder_reports_compiler_errors(tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("int accept(unsigned c, unsigned n) { return nope; }\n")
    with pytest.raises(BuildError) as info:
        build(bad)
    assert "bad.c" in str(info.value) and "nope" in str(info.value) and "undeclared" in str(info.value)


def test_builder_requires_accept(tmp_path):
    src = tmp_path / "x.c"
    src.write_text("int other(void) { return 0; }\n")
    with pytest.raises(BuildError, match="no global function 'accept'"):
        build(src)


def test_builder_rejects_unknown_symbols_and_exports(tmp_path):
    src = tmp_path / "x.c"
    src.write_text("int puts(const char *); int accept(unsigned c, unsigned n) { return puts(\"x\"); }\n")
    with pytest.raises(BuildError, match="neither PNI calls nor dependency exports: puts"):
        build(src)
    with pytest.raises(BuildError, match="exports not defined by the sources: ghost"):
        build(PROTOCOLS / "forward.c", exports=("ghost",))


def test_plugin_registers():
    added = []
    plugin.pan_register_runtimes(types.SimpleNamespace(add=added.append))
    assert added == [NativeRuntime]
    builders = BuilderRegistry()
    plugin.pan_register_builders(builders)
    assert isinstance(builders.find("native", ".c"), NativeBuilder)


# -- reference protocols ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forward", "ping", "flood", "portmapper"])
def test_reference_protocols_load(name, host):
    exports = ("lookup",) if name == "portmapper" else ()
    code = build(PROTOCOLS / f"{name}.c", exports=exports)
    loaded = NativeRuntime().load(code, [], host)
    try:
        assert loaded.init() == 0 or "init" in code.manifest.entry
    finally:
        loaded.unload()


def test_ping_at_receiver(host, node, pool):
    code = build(PROTOCOLS / "ping.c")
    loaded = NativeRuntime().load(code, [], host)
    try:
        sender = bytes([7] * 16)
        hdr = node.address.raw + struct.pack(">HBB", 9, 0, 0) + sender + struct.pack(">IQQ", 5, 111, 0)
        env = make_env(pool, hdr + bytes(8), code)
        assert loaded.accept(env) == FORWARD_0
        out = env.body.view().tobytes()
        assert out[:16] == sender and out[20:36] == node.address.raw  # dest and src swapped in place
        assert out[18] == 1  # phase
        assert struct.unpack_from(">Q", out, 48)[0] > 1000  # bounced_ns stamped
        assert node.states[code.name].get(b"pinged") == (1).to_bytes(8, "big")
        env.origin_kind = Origin.APPLICATION
        assert loaded.accept(make_env(pool, bytes(10), code)) == 0  # short body: DROP
    finally:
        loaded.unload()
