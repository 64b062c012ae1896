"""restricted_py's C entry for the node's UDP fast path (``pan_restricted_py._fast``), driven
as the fast path drives it (``pan_fast_run_fn`` with a real capsule body and context):

* a run made in C (``Entry.bind``) gives what ``fast_accept``, the Python form of the same
  run, gives: the verdict, the body, the steps, and for hostile code the same typed fault;
* the hot reads the code calls (``direct_calls``, C methods generated from the spec) answer
  as the Python forms of ``pni_hot.BodyHost.direct_calls`` and as the node's ``PniServer``
  do, hostile arguments included (other handles, wrong types, out of range, short bodies,
  keywords, missing arguments);
* and between the fast path and the code's own functions no Python frame runs.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
from conftest import BUDGET, py_code

from pan_restricted_py import _fast
from pan_restricted_py.code import RestrictedPyCode
from pan_restricted_py.codecs import CODECS
from pan_restricted_py.runtime import RestrictedPyRuntime
from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import PanError
from pan_runtime.node.config import NodeConfig
from pan_runtime.node.pni import PniServer
from pan_runtime.pni_api import BAD_ARGUMENT, HostPNI
from pan_runtime.pni_hot import BodyHost
from pan_runtime.protocol_headers import PingHdr
from pan_runtime.resources import protocols_dir
from pan_runtime.testing.stubnode import HERE, PREV, StubNode, make_env

#: pan_fast_run_fn, called with the GIL held as the fast path does
RUN = ctypes.PYFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
CTX_SIZE = 40  # sizeof(pan_fast_ctx): origin_kind, has_prev_hop, node_address, prev_hop


class FastNode(StubNode):
    """A stub node with the configuration a fast entry is bound to (its budget)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = NodeConfig(budget=BUDGET)


def _ctx(prev: bool = True) -> Any:
    ctx = (ctypes.c_uint8 * CTX_SIZE)()
    ctx[4] = 1 if prev else 0
    ctx[8:24] = list(HERE.raw)
    ctx[24:40] = list(PREV.raw)
    return ctx


class Fast:
    """One loaded code object and the two forms of its fast run."""

    def __init__(self, source: str) -> None:
        self.rt = RestrictedPyRuntime()
        self.host = PniServer(FastNode())
        self.loaded: RestrictedPyCode = self.rt.load(py_code(source), [], self.host)
        entry = self.loaded.fast_entry()
        assert entry is not None, "pan_restricted_py._fast is not built"
        self.fn, self.state = entry

    def _env(self, body: bytes, prev: bool) -> Any:
        """The capsule's environment, where a call the body host does not answer goes (the
        fast path builds it when the server takes over)."""
        env = make_env(self.loaded.code, body, BUDGET, prev_hop=PREV if prev else None)
        self.host.current = env
        return env

    def c_run(self, body: bytes, prev: bool = True) -> tuple[str, Any, bytes]:
        """The run the fast path makes: (kind, verdict or (fault type, reason, text), body after)."""
        buf = (ctypes.c_uint8 * len(body)).from_buffer_copy(body)
        ctx = _ctx(prev)
        env = self._env(body, prev)
        try:
            verdict = RUN(self.fn)(self.state, ctypes.addressof(buf), len(body), ctypes.addressof(ctx))
            self.loaded.after_fast_run()
        except PanError as fault:
            assert verdict == BAD_ARGUMENT
            return "fault", (type(fault).__name__, str(getattr(fault, "reason", "")), str(fault)), bytes(buf)
        finally:
            env.clear()
        return "verdict", verdict, bytes(buf)

    def py_run(self, body: bytes, prev: bool = True) -> tuple[str, Any, bytes]:
        """The same run through ``fast_accept`` (the Python form)."""
        buf = bytearray(body)
        env = self._env(body, prev)
        try:
            verdict = self.loaded.fast_accept(memoryview(buf), PREV.raw if prev else None)
        except PanError as fault:
            return "fault", (type(fault).__name__, str(getattr(fault, "reason", "")), str(fault)), bytes(buf)
        finally:
            env.clear()
        return "verdict", verdict, bytes(buf)

    def close(self) -> None:
        self.loaded.unload()
        self.rt.close()


@pytest.fixture
def fast() -> Callable[[str], Fast]:
    made: list[Fast] = []

    def go(source: str) -> Fast:
        made.append(Fast(source))
        return made[-1]

    yield go
    for f in made:
        f.close()


def _ping(phase: int, dest: bytes) -> bytes:
    return PingHdr(dest=dest, port=7, phase=phase, src=PREV.raw, seq=9).pack() + bytes(1500 - 28 - 52 - 56)


PING = (protocols_dir() / "ping.py").read_text()


@pytest.mark.parametrize(
    "body",
    [_ping(0, PREV.raw), _ping(1, PREV.raw), _ping(2, PREV.raw), _ping(0, PREV.raw)[:55], b"", _ping(0, PREV.raw)[:56]],
    ids=["out", "back", "bad-phase", "short", "empty", "header-only"],
)
def test_a_ping_runs_in_c_as_in_python(fast, body: bytes) -> None:
    f = fast(PING)
    assert f.c_run(body) == f.py_run(body)


# the hot reads with what hostile code may pass them; each accept turns the answer into an int
# (a PniError into its status) and an escaping error is the code's fault
HOT_READS = [
    "pni.seg_read(capsule, 0, 8)",
    "pni.seg_read(capsule, length - 4, 8)",
    "pni.seg_read(capsule, length, 0)",
    "pni.seg_read(capsule, -1, 4)",
    "pni.seg_read(capsule, 0, -1)",
    "pni.seg_read(capsule, 2 ** 40, 1)",
    "pni.seg_read(capsule, 2 ** 70, 1)",
    "pni.seg_read(capsule, 1.0, 2)",
    "pni.seg_read(capsule, True, 2)",
    "pni.seg_read(capsule, '0', 2)",
    "pni.seg_read(capsule, None, 2)",
    "pni.seg_read(1.0, 0, 2)",
    "pni.seg_read('1', 0, 2)",
    "pni.seg_read(2, 0, 2)",
    "pni.seg_read(capsule, 0)",
    "pni.seg_read(capsule, 0, 4, 5)",
    "pni.seg_read(seg=capsule, offset=0, length=4)",
    "pni.seg_length(capsule)",
    "pni.seg_length(2)",
    "pni.seg_length(True)",
    "pni.seg_length()",
    "pni.seg_get_u8(capsule, 0)",
    "pni.seg_get_u8(capsule, length - 1)",
    "pni.seg_get_u8(capsule, length)",
    "pni.seg_get_u16(capsule, 3)",
    "pni.seg_get_u16(capsule, length - 1)",
    "pni.seg_get_u32(capsule, 4)",
    "pni.seg_get_u32(capsule, length - 3)",
    "pni.seg_get_u32(capsule, -4)",
    "pni.seg_get_u32(capsule, 2 ** 32)",
    "pni.seg_get_u32(capsule, 4.0)",
    "pni.seg_get_u32(capsule, b'x')",
    "pni.seg_get_u32(7, 0)",
    "pni.seg_get_u32(capsule)",
    "pni.seg_get_u32(capsule, offset=0)",
    "pni.env_origin_kind()",
    "pni.env_origin_kind(1)",
    "pni.env_prev_hop()",
    "pni.env_prev_hop(capsule)",
    "pni.node_address()",
    "pni.node_address(16)",
]

TEMPLATE = """
def accept(pni, capsule, length):
    try:
        r = {expr}
    except PniError as e:
        return -1000 - e.status
    if isinstance(r, bytes):
        return len(r) * 1000 + int.from_bytes(r[:2], "big")
    return r
"""

BODIES = {"body": bytes(range(64)), "short": b"\x01\x02\x03", "empty": b""}


@pytest.mark.parametrize("prev", [True, False], ids=["prev-hop", "no-prev-hop"])
@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
@pytest.mark.parametrize("expr", HOT_READS)
def test_hot_reads_answer_hostile_code_as_before(fast, expr: str, body: str, prev: bool) -> None:
    f = fast(TEMPLATE.format(expr=expr))
    data = BODIES[body]
    c = f.c_run(data, prev)
    assert c == f.py_run(data, prev)
    # and as the node answers the same call with the capsule's environment built
    env = f._env(data, prev)
    try:
        node = ("verdict", f.loaded.accept(env), data)
    except PanError as fault:
        node = ("fault", (type(fault).__name__, str(getattr(fault, "reason", ""))), data)
    finally:
        env.clear()
    assert (c[0], c[1] if c[0] == "verdict" else c[1][:2]) == node[:2]


def test_the_direct_calls_are_c_methods_answering_as_the_python_forms() -> None:
    host = PniServer(FastNode())
    code = py_code(TEMPLATE.format(expr="0"))
    env = make_env(code, bytes(range(32)), BUDGET)
    host.current = env
    lean = BodyHost(host)
    pni = HostPNI(lean)
    ours, theirs = _fast.direct_calls(lean, pni), lean.direct_calls(pni)
    assert set(ours) == set(theirs)
    assert all(isinstance(call, types.BuiltinMethodType) for call in ours.values())
    lean.body, lean.prev_hop = memoryview(bytearray(range(32))), PREV.raw
    for args in [(1, 0, 4), (1, 30, 4), (1, 32, 0), (2, 0, 4)]:
        assert _outcome(ours["seg_read"], *args) == _outcome(theirs["seg_read"], *args)
    assert ours["node_address"]() == theirs["node_address"]() == HERE.raw
    assert ours["env_prev_hop"]() == theirs["env_prev_hop"]() == PREV.raw
    lean.body = None  # the server took over: both go to the node's environment
    assert _outcome(ours["seg_get_u32"], 1, 0) == _outcome(theirs["seg_get_u32"], 1, 0)
    env.clear()


def _outcome(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except PanError as e:
        return type(e).__name__, getattr(e, "status", None)


FAULTS = {
    "code_error": "def accept(pni, capsule, length):\n    return {}['x']\n",
    "bad_verdict": "def accept(pni, capsule, length):\n    return pni.seg_read(capsule, 0, 2)\n",
    "budget": "def accept(pni, capsule, length):\n    while True:\n        pass\n",
    "guard": "def accept(pni, capsule, length):\n    return 'x' * (10 ** 8)\n",
    "memory_budget": "def accept(pni, capsule, length):\n    a = []\n    for i in range(10 ** 7):\n        a.append([i])\n    return 0\n",
    "caught_budget": (
        "def accept(pni, capsule, length):\n    try:\n        while True:\n            pass\n"
        "    except BaseException:\n        return 0\n"
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_in_c_is_the_fault_in_python(fast, name: str) -> None:
    f = fast(FAULTS[name])
    c = f.c_run(bytes(64))
    assert c[0] == "fault", c
    assert c == f.py_run(bytes(64))
    # the runtime is whole afterwards: the next run of good code on it goes through
    ok = fast("def accept(pni, capsule, length):\n    return FORWARD\n")
    assert ok.c_run(bytes(8))[0] == "verdict"


def test_steps_of_runs_in_c_are_counted(fast) -> None:
    f = fast("def accept(pni, capsule, length):\n    n = 0\n    for i in range(10):\n        n += i\n    return FORWARD\n")
    f.loaded.take_fast_usage()
    f.py_run(bytes(8))
    py_steps, _ = f.loaded.take_fast_usage()
    for _ in range(3):
        f.c_run(bytes(8))
    c_steps, _ = f.loaded.take_fast_usage()
    assert py_steps > 10 and c_steps == 3 * py_steps


def test_a_budget_changed_between_runs_is_the_nodes_again(fast) -> None:
    f = fast("def accept(pni, capsule, length):\n    n = 0\n    for i in range(10):\n        n += i\n    return FORWARD\n")
    assert f.c_run(bytes(8))[0] == "verdict"
    # a run through the node's own path under a tiny budget reconfigures the meter ...
    env = make_env(f.loaded.code, bytes(8), BUDGET.__class__(steps=3, time_ms=BUDGET.time_ms))
    f.host.current = env
    with pytest.raises(PanError):
        f.loaded.accept(env)
    env.clear()
    # ... and the next fast run has the node's budget back
    assert f.c_run(bytes(8))[0] == "verdict"


def test_no_python_frame_between_the_fast_path_and_the_code(fast) -> None:
    f = fast(PING)
    body = _ping(0, PREV.raw)
    assert f.c_run(body)[0] == "verdict"
    buf = (ctypes.c_uint8 * len(body)).from_buffer_copy(body)
    ctx = _ctx()
    run = RUN(f.fn)
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        verdict = run(f.state, ctypes.addressof(buf), len(body), ctypes.addressof(ctx))
    finally:
        sys.setprofile(None)
    f.loaded.after_fast_run()
    assert verdict == f.py_run(body)[1]
    # the code's accept only: not fast_accept, not the hot reads, not the header codec's read
    assert calls == ["accept"]


# the body's length, its first and last byte and the previous hop's last byte (15: none), as one int
SHAPE = """
def accept(pni, capsule, length):
    n = pni.seg_length(capsule)
    first = pni.seg_get_u8(capsule, 0) if n else 0
    last = pni.seg_get_u8(capsule, n - 1) if n else 0
    try:
        prev = pni.env_prev_hop()[-1] & 15
    except PniError:
        prev = 15
    return ((n * 256 + first) * 256 + last) * 16 + prev
"""


def _shape(body: bytes, prev: bytes | None) -> int:
    n = len(body)
    first, last = (body[0], body[-1]) if n else (0, 0)
    return ((n * 256 + first) * 256 + last) * 16 + (prev[-1] & 15 if prev else 15)


def _ctx_from(prev: bytes) -> Any:
    ctx = _ctx(True)
    ctx[24:40] = list(prev)
    return ctx


def _view_kept(f: Fast) -> list[memoryview]:
    """The body views the entry holds between runs."""
    return [o for o in gc.get_referents(f.loaded._fast_entry) if isinstance(o, memoryview)]


def test_each_run_sees_its_own_body_and_previous_hop(fast) -> None:
    """The body's view and the previous hop's bytes are kept between runs: each run still
    sees its own capsule and neighbour, and between runs the kept view shows no body."""
    f = fast(SHAPE)
    other = NodeAddress.from_int(0x0A000077).raw
    run = RUN(f.fn)
    for body, prev in [(bytes([5]) * 64, PREV.raw), (bytes([9, 1, 2]), PREV.raw), (bytes(range(200)), other),
                       (b"", other), (bytes([7]) * 1500, PREV.raw), (bytes([3, 4]), None)]:
        buf = (ctypes.c_uint8 * max(len(body), 1)).from_buffer_copy(body or b"\0")
        ctx = _ctx_from(prev) if prev else _ctx(False)
        env = f._env(body, prev is not None)
        try:
            verdict = run(f.state, ctypes.addressof(buf), len(body), ctypes.addressof(ctx))
            f.loaded.after_fast_run()
        finally:
            env.clear()
        assert verdict == _shape(body, prev)
        assert all(len(v) == 0 for v in _view_kept(f))


def test_a_view_the_entry_does_not_hold_alone_is_not_pointed_at_a_body(fast) -> None:
    """A kept view something else took hold of between runs is left to its holder, showing no
    body; the next run gets a view of its own."""
    f = fast(SHAPE)
    assert f.c_run(bytes(64))[0] == "verdict"
    kept = _view_kept(f)
    assert len(kept) == 1
    held = kept[0]
    sub = held[0:0]  # a view made from it holds its buffer: it is not the entry's alone any more
    assert f.c_run(bytes([1]) * 32)[1] == _shape(bytes([1]) * 32, PREV.raw)
    assert len(held) == 0 and len(sub) == 0  # no body: not the one the run had
    assert all(v is not held for v in _view_kept(f))
    assert len(sub) == 0
    del sub, held, kept
    assert f.c_run(bytes([2]) * 16)[1] == _shape(bytes([2]) * 16, PREV.raw)


def test_the_fast_pni_offers_the_calls_read_only(fast) -> None:
    """The pni of the fast path's runs has every PNI call the node path's has, each the same
    callable by name, nothing else public, and no attribute can be set or added."""
    f = fast(PING)
    pni, slow = f.loaded._lean_pni, f.loaded._pni
    assert isinstance(pni, _fast.Pni)
    names = [n for n in dir(slow) if not n.startswith("_")]
    assert names and all(callable(getattr(pni, n)) for n in names)
    assert [n for n in dir(pni) if not n.startswith("_")] == []  # the calls are not type attributes
    hot = _fast.direct_calls(f.loaded._lean, HostPNI(f.loaded._lean))
    assert all(isinstance(getattr(pni, n), types.BuiltinMethodType) for n in hot)
    with pytest.raises(AttributeError):
        pni.no_such_call  # noqa: B018
    for name in ("seg_read", "anything"):
        with pytest.raises(AttributeError):
            setattr(pni, name, len)
    assert pni.seg_read is pni.seg_read  # the same callable each read, as a namespace's
    # code cannot write it either: the write guard refuses before the object is asked
    g = fast("def accept(pni, capsule, length):\n    pni.seg_read = 1\n    return FORWARD\n")
    kind, outcome, _ = g.c_run(bytes(64))
    assert kind == "fault" and (kind, outcome) == g.py_run(bytes(64))[:2]


@pytest.mark.parametrize("pni_of", ["fast", "namespace"])
def test_a_header_read_with_either_pni_decodes_the_same(fast, pni_of: str) -> None:
    """PingHdr.read takes the fast pni's seg_read directly; any other object is asked for its
    seg_read as before: the same header either way."""
    f = fast(PING)
    body = _ping(0, PREV.raw)
    lean = f.loaded._lean
    pni = f.loaded._lean_pni if pni_of == "fast" else types.SimpleNamespace(seg_read=f.loaded._lean_pni.seg_read)
    lean.body, lean.prev_hop = memoryview(bytearray(body)), PREV.raw
    try:
        h = CODECS[PingHdr].read(pni, 1, 0)
    finally:
        lean.body = None
    assert h.pack() == PingHdr.unpack(body[: PingHdr.SIZE]).pack()


class _PyAccount:
    """An account whose enter and leave are Python methods: the C entry calls them as callables."""

    def __init__(self, acct: Any) -> None:
        self._acct = acct

    def enter(self) -> None:
        self._acct.enter()

    def leave(self) -> int:
        return self._acct.leave()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._acct, name)


@pytest.mark.parametrize("account", ["c", "python"])
@pytest.mark.parametrize("source", ["ping", "memory_budget", "budget"])
def test_the_account_is_entered_and_left_in_c_or_through_its_methods(fast, monkeypatch, account: str, source: str) -> None:
    """An Account's enter and leave are called in C; any other account's as callables: the
    same verdicts and the same faults."""
    from pan_restricted_py import code as code_module

    if account == "python":
        real = code_module.accounts.new_account
        monkeypatch.setattr(code_module.accounts, "new_account", lambda *a: _PyAccount(real(*a)))
    f = fast(PING if source == "ping" else FAULTS[source])
    body = _ping(0, PREV.raw) if source == "ping" else bytes(64)
    assert f.c_run(body) == f.py_run(body)
    assert f.c_run(body)[0] == ("verdict" if source == "ping" else "fault")


def test_the_python_forms_see_each_runs_body_too(fast) -> None:
    """The body host's Python calls (a write here) see each run's body at its length, the
    view being the same object pointed at each body in turn."""
    f = fast("def accept(pni, capsule, length):\n    pni.seg_set_u8(capsule, length - 1, 7)\n"
             "    return pni.seg_get_u8(capsule, length - 1) + length * 256\n")
    for n in (64, 3, 1500, 1, 200):
        kind, verdict, after = f.c_run(bytes(n))
        assert (kind, verdict, after) == ("verdict", 7 + n * 256, bytes(n - 1) + b"\x07")
