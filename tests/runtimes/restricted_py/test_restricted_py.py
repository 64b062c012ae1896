"""The restricted_py runtime: compile once, guards, the step budget, faults, protocols."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pan_restricted_py.builder import RestrictedPyBuilder
from pan_restricted_py.compiler import compile_source
from pan_restricted_py.runtime import INLINE_COMPILE_BYTES, RestrictedPyRuntime
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BudgetExceeded, BuildError, CodeObjectError, FaultReason, RuntimeFault
from pan_runtime.node.env import Budget, Origin
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.pni_api import FORWARD
from pan_runtime.protocol_headers import PingHdr, PortmapReq

PROTOCOLS = Path(__file__).resolve().parents[3] / "protocols"


def accept_body(body: str) -> str:
    """Source of an accept whose body is BODY (indented four spaces per line)."""
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"def accept(pni, capsule, length):\n{lines}\n"


# ---- compile once -------------------------------------------------------------------------

def test_compiles_once_per_code_object(runtime, load, run):
    src = "def accept(pni, capsule, length):\n    return FORWARD\n"
    first = load(src)
    second = load(src)
    assert runtime.compilations == 1
    assert first._compiled is second._compiled
    for _ in range(10):
        assert run(first) == FORWARD
    assert runtime.compilations == 1
    load(src + "\n# another code object\n")
    assert runtime.compilations == 2


def _compile_elsewhere(job) -> object:  # type: ignore[no-untyped-def]
    from pan_runtime.net.compiler import Compiler
    from pan_runtime.plugin.loadlimits import LoadLimits

    compiler, got = Compiler(LoadLimits()), []
    try:
        compiler.submit(b"k", job, got.append)
        end = time.monotonic() + 120
        while not got and time.monotonic() < end:
            compiler.poll()
            time.sleep(0.005)
    finally:
        compiler.close()
    assert got
    return got[0]


def test_a_large_source_is_compiled_in_the_compiler_process_and_not_again(runtime, host, run):
    big = "# " + "padding " * INLINE_COMPILE_BYTES + "\n" + accept_body("return FORWARD")
    code = CodeObject.create("restricted_py", big.encode())
    assert runtime.prepare(CodeObject.create("restricted_py", accept_body("return FORWARD").encode()), []) is None
    job = runtime.prepare(code, [])
    assert job is not None and job.target == "pan_restricted_py.runtime:compile_job"
    compiled = _compile_elsewhere(job)
    assert isinstance(compiled, bytes), compiled
    runtime.adopt(code, compiled)
    assert run(runtime.load(code, [], host)) == FORWARD
    assert runtime.compilations == 0  # not compiled in this process
    refused = _compile_elsewhere(runtime.prepare(CodeObject.create("restricted_py", (big + "import os\n").encode()), []))
    assert isinstance(refused, CodeObjectError) and "import" in str(refused)
    with pytest.raises(CodeObjectError) as bad:
        runtime.adopt(code, b"not marshalled code")
    assert bad.value.reason is FaultReason.COMPILE_FAILED


def test_module_body_runs_once_per_load_and_state_persists(load, run):
    loaded = load(accept_body("global n\nn = n + 1\nreturn n") + "n = 40\n")
    assert run(loaded) == 41
    assert run(loaded) == 42
    loaded.reset()
    assert run(loaded) == 41


# ---- refusals at compile time ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("import os\n", "imports are not available"),
        ("from os import path\n", "imports are not available"),
        ("class C:\n    pass\n", "class definitions"),
        ("f = lambda: 1\n", "lambda"),
        ("def g():\n    yield 1\n", "generators"),
        ("print(1)\n", "'print'"),
        ("x = [*range(3), *range(3)]\n", "starred"),
        ("x = 1\ny = x.__class__\n", "__class__"),
        ("def f(x):\n    return f'{x:>{x}}'\n", "computed format specs"),
        ("x = f'{1:>100000}'\n", "format width"),
        ("x = eval('1')\n", "Eval calls"),
    ],
)
def test_refused_constructs_name_line_and_column(source, fragment):
    with pytest.raises(CodeObjectError) as info:
        compile_source(source)
    assert fragment in str(info.value)
    assert "line " in str(info.value) and "column " in str(info.value)


def test_syntax_error_names_line_and_column():
    with pytest.raises(CodeObjectError, match=r"line 2, column \d+: syntax error"):
        compile_source("x = 1\ndef f(:\n")


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("1+" * 100_000 + "1", id="long-sum"),
        pytest.param("-" * 100_000 + "1", id="unary-chain"),
        pytest.param("a." * 100_000 + "b", id="attribute-chain"),
        pytest.param("1+" * 950 + "1", id="deeper-than-the-visitors"),
    ],
)
def test_a_source_nested_too_deeply_is_refused_not_raised_out_of_install(expression):
    """RecursionError (and the parser's MemoryError) never leave Node.install."""
    from pan_runtime.node.node import Node
    from pan_runtime.plugin.plugins import default_plugins

    code = CodeObject.create("restricted_py", f"x = {expression}\ndef accept(pni, c, n):\n    return 0\n".encode())
    with Node(1, plugins=default_plugins()) as node:
        with pytest.raises(CodeObjectError, match="nests too deeply to compile") as info:
            node.install(code)
        assert info.value.reason == "too_deep"
        ok = CodeObject.create("restricted_py", b"x = 1 + 2\ndef accept(pni, c, n):\n    return 0\n")
        node.install(ok)  # the node goes on installing


def test_load_refuses_missing_entry_and_failing_module_body(load):
    with pytest.raises(CodeObjectError, match="'accept'"):
        load("def other(pni, c, n):\n    return 0\n")
    with pytest.raises(CodeObjectError, match="module body failed: .*ZeroDivisionError"):
        load("x = 1 // 0\ndef accept(pni, c, n):\n    return 0\n")
    with pytest.raises(CodeObjectError, match="step budget"):
        load("while True:\n    pass\ndef accept(pni, c, n):\n    return 0\n")


# ---- faults are contained and classified -----------------------------------------------------

def fault_of(load, run, body: str, **kw) -> RuntimeFault:
    loaded = load(accept_body(body), **kw)
    with pytest.raises(RuntimeFault) as info:
        run(loaded)
    return info.value


def test_code_error_names_type_message_and_line(load, run):
    fault = fault_of(load, run, "x = 1\nreturn {}['missing']")
    assert fault.reason == "code_error"
    assert "KeyError" in str(fault) and "'missing'" in str(fault) and "line 3" in str(fault)
    assert "Traceback" not in str(fault) and fault.__cause__ is None


def test_pni_error_is_catchable_by_code(load, run):
    loaded = load(accept_body(
        "try:\n    pni.seg_length(77)\nexcept PniError as e:\n    return 100 - e.status\nreturn 0"
    ))
    assert run(loaded) == 101  # BAD_HANDLE is -1
    fault = fault_of(load, run, "pni.seg_length(77)\nreturn 0")
    assert fault.reason == "code_error" and "PniError" in str(fault) and "BAD_HANDLE" in str(fault)


def test_non_int_verdict_is_a_fault(load, run):
    fault = fault_of(load, run, "return 'x'")
    assert fault.reason == "bad_verdict" and "not an int" in str(fault)


GUARD_CASES = {
    "attribute underscore via format": "return len('{0.__class__}'.format(1))",
    "attribute host of pni": "return pni.host",
    "write to a tuple": "t = (1, 2)\nt[0] = 5\nreturn 0",
    "write to a host codec class": "PingHdr.SIZE = 1\nreturn 0",
    "write to the pni object": "pni.seg_length = 1\nreturn 0",
    "write to deps": "deps[0] = 1\nreturn 0",
    "object behind an AttributeError": "try:\n    pni.nothing\nexcept AttributeError as e:\n    return len(e.obj)",
    "pow": "x = 10\nreturn x ** 100000",
    "pow builtin": "return pow(10, 100000) & 1",
    "mul sequence": "n = 10 ** 8\nreturn len('x' * n)",
    "mul ints": "x = 3\nfor i in range(40):\n    x = x * x\nreturn 0",
    "concat doubling": "s = 'ab'\nfor i in range(40):\n    s = s + s\nreturn 0",
    "inplace doubling": "s = [1]\nfor i in range(40):\n    s += s\nreturn 0",
    "lshift": "n = 10 ** 7\nreturn (1 << n) & 1",
    "range": "return len(range(10 ** 9))",
    "bytes(n)": "return len(bytes(10 ** 9))",
    "bytearray(n)": "return len(bytearray(10 ** 9))",
    "ljust": "return len('x'.ljust(10 ** 9))",
    "join": "s = 'x' * 1000\nreturn len(s.join([s] * 1000))",
    "replace": "s = 'x' * 1000\nreturn len(s.replace('', s))",
    "percent width": "return len('%*d' % (10 ** 9, 1))",
    "nested render": "a = [0] * 1000\nb = [a] * 1000\nreturn len(str(b))",
    "recursion": "return rec(1)",
}


@pytest.mark.parametrize("case", sorted(GUARD_CASES))
def test_guards_give_contained_guard_fault(load, run, case):
    src = accept_body(GUARD_CASES[case]) + "\ndef rec(n):\n    return rec(n + 1)\n"
    loaded = load(src)
    with pytest.raises(RuntimeFault) as info:
        run(loaded)
    assert info.value.reason == "guard", str(info.value)
    assert not isinstance(info.value, BudgetExceeded)
    if case == "recursion":
        assert "recursion deeper than 64 calls" in str(info.value)


def test_code_sees_only_pni_calls_on_pni(load, run):
    loaded = load(accept_body("return len([n for n in ('seg_length_impl', 'host') if n])"))
    assert run(loaded) == 2
    for attr in ("host", "seg_length_impl", "current"):
        fault = fault_of(load, run, f"return pni.{attr}")
        assert fault.reason in ("guard", "code_error")
        assert "PniServer" not in str(fault)


def test_a_guard_halt_does_not_outlive_its_call(load, run):
    loaded = load(accept_body("if length > 100:\n    return len('x' * 10 ** 9)\nreturn DONE"))
    with pytest.raises(RuntimeFault, match="guard"):
        run(loaded, bytes(200))
    assert run(loaded, bytes(10)) == 1
    metered = load(accept_body("for i in range(length):\n    pass\nif length > 100:\n    return len('x' * 10 ** 9)\nreturn DONE"))
    with pytest.raises(RuntimeFault, match="guard"):
        run(metered, bytes(200))
    assert run(metered, bytes(10)) == 1


def test_guard_violation_cannot_be_caught(load, run):
    fault = fault_of(load, run, "try:\n    return 'x' * 10 ** 9\nexcept BaseException:\n    return 7")
    assert fault.reason == "guard"


def test_allowed_writes_and_bounded_operations_work(load, run):
    loaded = load(accept_body(
        "b = bytearray(4)\nb[0] = 9\nd = {}\nd['k'] = 1\nl = [0] * 3\nl[1] = b[0]\n"
        "h = PingHdr()\nh.seq = 5\n"
        "s = 'ab' * 3 + str(12) + f'{l}'\n"
        "return l[1] + h.seq + len(s) + sum(range(4)) + (1 << 3) + 2 ** 10 + (7 % 4)"
    ))
    assert run(loaded) == 9 + 5 + len("ababab12[0, 9, 0]") + 6 + 8 + 1024 + 3


# ---- the step budget ------------------------------------------------------------------------

HALTING = {
    "while": "while True:\n    pass",
    "bare except": "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass",
    "except BaseException": (
        "while True:\n    try:\n        while True:\n            pass\n"
        "    except BaseException:\n        continue"
    ),
    "except Exception": "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass",
    "finally that loops": "try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass",
    "finally that returns": "try:\n    while True:\n        pass\nfinally:\n    return 5",
    "SystemExit": "while True:\n    try:\n        while True:\n            pass\n    except SystemExit:\n        pass",
    "bare except returns": "try:\n    while True:\n        pass\nexcept:\n    return 7",
    "except BaseException returns": "try:\n    while True:\n        pass\nexcept BaseException as e:\n    return 7",
    "except SystemExit returns": (
        "try:\n    while True:\n        pass\nexcept SystemExit:\n    return 7\nexcept BaseException:\n    return 8"
    ),
    "comprehension": "return len([i for i in range(100000) for j in range(100000)])",
    "recursion via except": "return spin(0)",
}


@pytest.mark.parametrize("case", sorted(HALTING))
def test_budget_stop_cannot_be_swallowed(load, run, case):
    src = accept_body(HALTING[case]) + (
        "\ndef spin(n):\n    while True:\n        try:\n            return spin(n + 1)\n"
        "        except BaseException:\n            pass\n"
    )
    loaded = load(src)
    with pytest.raises(RuntimeFault) as info:
        # the steps stop it: a time budget a loaded machine could reach first is out of reach
        run(loaded, budget=Budget(steps=5_000, time_ms=60_000.0))
    assert info.value.reason in ("budget", "guard")
    if case != "recursion via except":
        assert isinstance(info.value, BudgetExceeded)
        assert "5000 steps" in str(info.value)


def test_time_budget_is_checked_per_chunk(load, run):
    loaded = load(accept_body("s = 'ab' * 100000\nwhile True:\n    s.count('b')"))
    with pytest.raises(BudgetExceeded, match="time budget of 30 ms"):  # an endless loop: only the check ends it
        run(loaded, budget=Budget(steps=10**9, time_ms=30.0))


def test_bulk_builtins_are_charged_by_size(load, run):
    loaded = load(accept_body("x = list(range(200000))\nwhile True:\n    y = sorted(x)"))
    with pytest.raises(BudgetExceeded, match="20000 steps"):  # 200000 ints and two lists: over 16 MiB
        run(loaded, budget=Budget(steps=20_000, time_ms=10_000.0, memory_bytes=32 << 20))
    small = load(accept_body("x = list(range(1000))\nreturn len(sorted(x)) + max(x)"))
    assert run(small, budget=Budget(steps=10, time_ms=10_000.0)) == 1999


def test_steps_used_are_reported_and_budget_resets_per_call(load, run, host, make_env):
    loaded = load(accept_body("for i in range(length):\n    pass\nreturn 0"))
    for n in (10, 300, 10):
        env = make_env(loaded.code, bytes(n))
        host.current = env
        assert loaded.accept(env) == 0
        assert env.usage.steps == n + 1 == loaded.steps_used
    budget = Budget(steps=400)
    for _ in range(5):  # 300 steps each: fits every time
        assert run(loaded, bytes(300), budget=budget) == 0
    with pytest.raises(BudgetExceeded):
        run(loaded, bytes(500), budget=budget)
    assert run(loaded, bytes(300), budget=budget) == 0  # a halt does not outlive its call


def test_forward_uses_no_steps(load, host, make_env):
    loaded = load((PROTOCOLS / "forward.py").read_text())
    env = make_env(loaded.code, bytes(20))
    host.current = env
    assert loaded.accept(env) == FORWARD
    assert env.usage.steps == 0


# ---- dependencies, exports, init ----------------------------------------------------------

def test_dependencies_exports_and_init(load, run, node, host):
    dep = load(accept_body("return DROP") + "def double(pni, a0, a1):\n    return a0 * 2 + a1\n",
               exports=["double"])
    user = load(
        "def init(pni):\n    global ready\n    ready = 1\n    return 0\n"
        + accept_body("return deps[0].double(20, ready) + pni.dep_call(0, b'double', 1, 0)"),
        deps=(dep,), dependencies=[dep.code.name], entry={"accept": "accept", "init": "init"},
    )
    node.deps[(user.code.name, 0)] = dep
    assert user.init() == 0
    assert run(user) == 41 + 2
    assert dep.call_export("double", 3, 1) == 7
    with pytest.raises(RuntimeFault, match="no export"):
        dep.call_export("triple", 1, 1)


# ---- reference protocols ------------------------------------------------------------------

def proto(load, name: str, **kw):
    return load((PROTOCOLS / f"{name}.py").read_text(), **kw)


def test_forward_protocol(load, run):
    assert run(proto(load, "forward")) == FORWARD


def test_ping_protocol_bounces_at_destination(load, run, host, node, make_env, addr):
    HERE, PREV = addr["here"], addr["prev"]
    ping = proto(load, "ping")
    assert run(ping, bytes(10)) == 0  # shorter than the header: DROP
    h = PingHdr(dest=HERE.raw, port=7, phase=0, src=PREV.raw, seq=3, sent_ns=11)
    env = make_env(ping.code, h.pack() + bytes(8))
    host.current = env
    assert ping.accept(env) == FORWARD
    out = PingHdr.unpack(env.body.tobytes())
    assert out.phase == 1 and out.dest == PREV.raw and out.src == HERE.raw and out.bounced_ns > 0
    state = node.soft_state(ping.code)
    assert state is node.soft_state(ping.code)  # one store per code object, kept across calls
    other = PingHdr(dest=PREV.raw, phase=0)
    assert run(ping, other.pack()) == FORWARD


def test_flood_and_portmapper_protocols(load, run, node, host, make_env, addr):
    HERE, PREV = addr["here"], addr["prev"]
    flood = proto(load, "flood")
    from pan_runtime.pni_api import DONE
    from pan_runtime.protocol_headers import FloodHdr

    start = FloodHdr(dest=HERE.raw, port=9, kind=0, src=PREV.raw, flow=1, report_every=2)
    assert run(flood, start.pack()) == DONE
    data = FloodHdr(dest=HERE.raw, port=9, kind=1, src=PREV.raw, flow=1, seq=1, report_every=2)
    assert run(flood, data.pack()) == DONE
    assert run(flood, data.pack()) == DONE
    assert len(node.sent) == 1 and node.sent[0][0] == "toward"
    report = FloodHdr.unpack(node.sent[0][2])
    assert report.kind == 2 and report.count == 2 and report.bytes == 2 * FloodHdr.SIZE

    pm = proto(load, "portmapper", exports=["lookup"])
    req = PortmapReq(port=80, op=0)
    assert run(pm, req.pack()) == 0  # from the network: DROP
    assert run(pm, req.pack(), origin=Origin.APPLICATION, link=object()) == DONE
    host.current = make_env(pm.code, b"")  # the node serves an export inside the code's environment
    assert pm.call_export("lookup", 80, 0) == 0x1234
    assert pm.call_export("lookup", 81, 0) == -4


# ---- builder and plugin ---------------------------------------------------------------------

def test_builder_wraps_source_and_detects_entries(tmp_path):
    src = tmp_path / "svc.py"
    src.write_text(
        "def init(pni):\n    return 0\n\ndef accept(pni, c, n):\n    return DROP\n\n"
        "def lookup(pni, a0, a1):\n    return a0\n"
    )
    code = RestrictedPyBuilder().build(BuildRequest([src], "restricted_py", exports=["lookup"], label="svc"))
    assert code.runtime == "restricted_py" and code.payload == src.read_bytes()
    assert dict(code.manifest.entry) == {"accept": "accept", "init": "init"}
    assert code.manifest.exports == ("lookup",)
    with pytest.raises(BuildError, match="'nope'"):
        RestrictedPyBuilder().build(BuildRequest([src], "restricted_py", exports=["nope"]))
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef accept(pni, c, n):\n    return 0\n")
    with pytest.raises(BuildError, match="imports are not available"):
        RestrictedPyBuilder().build(BuildRequest([bad], "restricted_py"))


def test_plugin_registers_runtime_and_builder():
    from pan_restricted_py import plugin
    from pan_runtime.plugin.builders import BuilderRegistry
    from pan_runtime.plugin.plugins import RuntimeRegistry

    runtimes, builders = RuntimeRegistry(), BuilderRegistry()
    plugin.pan_register_runtimes(runtimes)
    plugin.pan_register_builders(builders)
    assert runtimes.get("restricted_py") is RestrictedPyRuntime
    assert isinstance(builders.find("restricted_py", ".py"), RestrictedPyBuilder)
    assert RestrictedPyRuntime.available() is None


def test_runtime_refuses_other_runtimes_code(runtime, host):
    with pytest.raises(CodeObjectError, match="runtime 'wasm'"):
        runtime.load(CodeObject.create("wasm", b"\0asm"), [], host)
