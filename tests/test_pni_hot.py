"""The generated hot-call shortcuts (``pan_runtime.pni_hot``, ``pni_spec.gen_hot``): the Python
body host answers every hot call exactly as the node's ``PniServer`` does on the same body,
and the spec refuses a hot mark that does not fit its call."""

from __future__ import annotations

import dataclasses

import pytest

from pan_runtime import pni_hot
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.node.pni import PniServer
from pan_runtime.testing.stubnode import PREV, StubNode, make_env
from pni_spec import load_spec
from pni_spec.gen_hot import hot_calls
from pni_spec.spec import Call, Param, SpecError

SPEC = load_spec()
HOT = hot_calls(SPEC)
BODY = bytes(range(1, 11))


def _args(call: Call, offset: int, value: int, size: int) -> list[list[object]]:
    """Arguments for CALL in the server's form (output buffers fresh per side)."""
    out: list[object] = []
    for p in call.params:
        if p.type == "handle":
            out.append(1)
        elif p.type == "u32" and p.name == "offset":
            out.append(offset)
        elif p.type == "u32":
            out.append(value)
        elif p.type in ("bytes_out", "addr_out"):
            out.append(size if p.type == "bytes_out" else 16)
        elif p.type == "bytes_in":
            out.append(b"\xee" * size)
    return [out]


def _materialize(args: list[object], call: Call) -> list[object]:
    real: list[object] = []
    for a, p in zip(args, call.params, strict=True):
        real.append(memoryview(bytearray(a)) if p.type in ("bytes_out", "addr_out") else a)  # type: ignore[arg-type]
    return real


@pytest.fixture
def code() -> CodeObject:
    return CodeObject.create("restricted_py", b"def accept(pni, capsule, length):\n    return 0\n")


@pytest.mark.parametrize("call", HOT, ids=[c.name for c in HOT])
@pytest.mark.parametrize("offset", [0, 7, 9, 10, 2**31])
@pytest.mark.parametrize("value", [0, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF])
def test_body_host_answers_as_the_server(call: Call, offset: int, value: int, code: CodeObject) -> None:
    server = PniServer(StubNode())
    server.current = make_env(code, BODY)
    lean = pni_hot.BodyHost(server)
    body = bytearray(BODY)
    lean.body, lean.prev_hop = memoryview(body), PREV.raw
    [args] = _args(call, offset, value, 3)
    ours, theirs = _materialize(args, call), _materialize(args, call)
    got = getattr(lean, call.name)(*ours)
    want = getattr(server, call.name)(*theirs)
    assert got == want
    assert lean.body is not None, "a hot call on the body must not fall back to the server"
    assert bytes(body) == server.current.body.tobytes()
    for a, b in zip(ours, theirs, strict=True):
        if isinstance(a, memoryview):
            assert a.tobytes() == b.tobytes()  # type: ignore[union-attr]


def test_other_handles_and_calls_go_to_the_server(code: CodeObject) -> None:
    server = PniServer(StubNode())
    server.current = make_env(code, BODY)
    lean = pni_hot.BodyHost(server)
    lean.body = memoryview(bytearray(BODY))
    assert lean.seg_length(2) < 0  # no handle 2: the server's BAD_HANDLE
    assert lean.body is None  # and from then on every call goes to the server
    lean.body = memoryview(bytearray(BODY))
    assert lean.capsule_hop_limit() == server.capsule_hop_limit()
    assert lean.body is None


def test_hot_calls_are_the_spec_marks() -> None:
    assert pni_hot.HOT_CALLS == frozenset(c.name for c in SPEC.calls if c.hot)


def test_a_hot_mark_must_fit_the_call() -> None:
    bad = Call("seg_alloc", "segments", (Param("length", "u32"),), "i64", (), "doc", "read")
    spec = dataclasses.replace(SPEC, calls=(*SPEC.calls, bad))
    with pytest.raises(SpecError, match="hot"):
        hot_calls(spec)
