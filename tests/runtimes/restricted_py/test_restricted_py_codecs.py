"""The header codec classes restricted_py code sees (``pan_restricted_py.codecs``): each
generated codec with ``read`` made in C answers as the generated ``read`` does, for every
structure and for what hostile code may pass it, and code sees them in place of the
generated classes (globals and ``STRUCTS``) with field writes still allowed and what the
reads allocate still charged to the call."""

from __future__ import annotations

import random
import types
from typing import Any

import pytest
from conftest import BUDGET, py_code
from test_restricted_py_fast import FastNode

from pan_restricted_py import _fast, codecs
from pan_runtime import protocol_headers
from pan_runtime.errors import FaultReason, PniError, RuntimeFault
from pan_runtime.node.env import Budget
from pan_runtime.node.pni import PniServer
from pan_runtime.pni_api import OUT_OF_RANGE, HostPNI
from pan_runtime.pni_hot import BodyHost
from pan_runtime.testing.stubnode import make_env

BASES = list(protocol_headers.STRUCTS.values())


class BufPni:
    """A pni whose ``seg_read`` answers from a buffer as the node does: bytes, short at the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def seg_read(self, seg: Any, off: Any, length: Any) -> Any:
        if seg != 1:
            raise PniError("bad handle", 2)
        if off < 0 or length < 0 or off > len(self.data):
            raise PniError("out of range", OUT_OF_RANGE)
        return self.data[off : off + length]


class Answer:
    """A pni whose ``seg_read`` answers ANSWER (or raises it), whatever is asked."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    def seg_read(self, *args: Any, **kw: Any) -> Any:
        self.calls += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class BytesSub(bytes):
    pass


def outcome(call: Any, *args: Any, **kw: Any) -> tuple[Any, ...]:
    """What a read gave, comparable across the two forms: fields, or the error's type, text and status."""
    try:
        h = call(*args, **kw)
    except Exception as e:  # the forms must fail alike, whatever the error
        return ("error", type(e).__name__, str(e), getattr(e, "status", None))
    return ("ok", type(h).__name__, tuple(getattr(h, f) for f in h.FIELDS), repr(h))


@pytest.fixture(params=BASES, ids=[b.__name__ for b in BASES])
def pair(request: Any) -> tuple[type, type]:
    base = request.param
    return base, codecs.CODECS[base]


def test_every_generated_codec_has_its_c_read(pair) -> None:
    base, fast = pair
    assert codecs.wire_fields(base) is not None
    assert fast is not base and issubclass(fast, base)
    assert fast.__name__ == base.__name__ and fast.FIELDS == base.FIELDS and fast.SIZE == base.SIZE
    assert not hasattr(fast(), "__dict__")  # no state of its own: the base's slots only
    assert type(fast.read).__name__ == "Reader" and fast().read is fast.read  # C, and no bound method per call


@pytest.mark.parametrize("seed", range(8))
def test_c_read_decodes_as_the_generated_read(pair, seed: int) -> None:
    base, fast = pair
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(base.SIZE * 2 + 7))
    pni = BufPni(data)
    for off in (0, 1, 7, base.SIZE, len(data) - base.SIZE, len(data) - base.SIZE + 1, len(data), len(data) + 1, -1):
        ours, theirs = outcome(fast.read, pni, 1, off), outcome(base.read, pni, 1, off)
        assert ours[0] == theirs[0] and ours[2:] == theirs[2:], off
    h = fast.read(pni, 1, 3)
    assert h == base.unpack(data, 3) and type(h) is fast
    assert h.pack() == data[3 : 3 + base.SIZE]


HOSTILE_ANSWERS = {
    "short-bytes": b"\x01\x02",
    "empty": b"",
    "long-bytes": bytes(range(200)) * 2,
    "bytearray": bytearray(range(100)),
    "bytes-subclass": BytesSub(bytes(range(100))),
    "memoryview": memoryview(bytes(range(100))),
    "str": "x" * 100,
    "int": 7,
    "none": None,
    "list": list(range(100)),
    "pni-error": PniError("no", OUT_OF_RANGE),
    "type-error": TypeError("bad"),
}


@pytest.mark.parametrize("answer", list(HOSTILE_ANSWERS))
def test_hostile_answers_of_seg_read_give_what_the_generated_read_gives(pair, answer: str) -> None:
    base, fast = pair
    a, b = Answer(HOSTILE_ANSWERS[answer]), Answer(HOSTILE_ANSWERS[answer])
    ours, theirs = outcome(fast.read, a, 1, 0), outcome(base.read, b, 1, 0)
    assert ours[0] == theirs[0] and ours[2:] == theirs[2:]
    assert a.calls == b.calls == 1  # the pni is asked once, as the generated read asks it


HOSTILE_CALLS = {
    "no-offset": lambda c, p: c.read(p, 1),
    "offset-keyword": lambda c, p: c.read(p, 1, off=2),
    "all-keywords": lambda c, p: c.read(pni=p, seg=1, off=0),
    "too-few": lambda c, p: c.read(p),
    "too-many": lambda c, p: c.read(p, 1, 0, 0),
    "unknown-keyword": lambda c, p: c.read(p, 1, offset=0),
    "float-offset": lambda c, p: c.read(p, 1, 1.5),
    "no-seg-read": lambda c, p: c.read(object(), 1, 0),
    "on-instance": lambda c, p: c().read(p, 1, 0),
}


@pytest.mark.parametrize("call", list(HOSTILE_CALLS))
def test_hostile_calls_of_read_give_what_the_generated_read_gives(pair, call: str) -> None:
    base, fast = pair
    pni = BufPni(bytes(range(120)))
    ours, theirs = outcome(HOSTILE_CALLS[call], fast, pni), outcome(HOSTILE_CALLS[call], base, pni)
    assert ours[0] == theirs[0] and ours[2:] == theirs[2:]


def test_a_reader_refuses_what_it_cannot_fill() -> None:
    base = protocol_headers.PingHdr
    fine = codecs.wire_fields(base)
    with pytest.raises(TypeError):  # a class with a __dict__ has no slots to fill
        _fast.codec_reader(type("D", (), {}), base.SIZE, fine, codecs._finish, base.read.__func__)
    with pytest.raises(TypeError):  # a name that is not a slot of the class
        _fast.codec_reader(base, base.SIZE, [("nope", 0, 1, False)], codecs._finish, base.read.__func__)
    with pytest.raises(ValueError):  # a field past the end
        _fast.codec_reader(base, base.SIZE, [("port", base.SIZE - 1, 2, False)], codecs._finish, base.read.__func__)
    with pytest.raises(ValueError):  # an integer width the decoder has no form for
        _fast.codec_reader(base, base.SIZE, [("port", 0, 3, False)], codecs._finish, base.read.__func__)
    other = type("Other", (), {"__slots__": ("a",)})
    evil = type("Evil", (base,), {"__slots__": (), "dest": other.__dict__["a"]})
    with pytest.raises(TypeError):  # a slot of another class's layout
        _fast.codec_reader(evil, base.SIZE, [("dest", 0, 16, True)], codecs._finish, base.read.__func__)
    with pytest.raises(TypeError):  # a class with items
        _fast.codec_reader(type("T", (tuple,), {"__slots__": ()}), 0, [], codecs._finish, base.read.__func__)


def test_a_format_the_c_read_cannot_decode_keeps_the_generated_class() -> None:
    class Signed(protocol_headers.ForwardHdr):
        __slots__ = ()
        STRUCT = protocol_headers.ForwardHdr.STRUCT.__class__("!16shBB")

    assert codecs.wire_fields(Signed) is None
    assert codecs.fast_codec(Signed) is Signed


def test_code_sees_the_c_codecs_and_may_write_their_fields(load, run) -> None:
    loaded = load(
        "def accept(pni, capsule, length):\n"
        "    h = PingHdr.read(pni, capsule, 0)\n"
        "    if STRUCTS['ping_hdr'] is not PingHdr or not isinstance(h, PingHdr):\n"
        "        return 11\n"
        "    h.seq = h.seq + 1\n"
        "    h.write(pni, capsule, 0)\n"
        "    return PingHdr.read(pni, capsule, 0).seq\n"
    )
    assert loaded._g["PingHdr"] is codecs.CODECS[protocol_headers.PingHdr]
    body = protocol_headers.PingHdr(seq=41).pack() + bytes(8)
    assert run(loaded, body) == 42


def test_what_c_reads_allocate_is_charged_to_the_call(load, run) -> None:
    loaded = load(
        "def accept(pni, capsule, length):\n"
        "    kept = []\n"
        "    for i in range(200_000):\n"
        "        kept.append(PingHdr.read(pni, capsule, 0))\n"
        "    return len(kept)\n"
    )
    # steps enough for the loop: the 1 MiB the call may allocate is what stops it
    budget = Budget(time_ms=60_000.0, steps=10**8, memory_bytes=1 << 20)
    with pytest.raises(RuntimeFault) as e:
        run(loaded, protocol_headers.PingHdr().pack(), budget)
    assert e.value.reason is FaultReason.MEMORY_BUDGET


BODY_READS = [(1, 0), (1, 5), (1, -1), (1, 2**32), (1, 2**70), (1, 1.0), (1, True), (True, 0), (2, 0), ("1", 0), (1, None)]


@pytest.mark.parametrize("length", [0, 10, "size-1", "size", "size+9"])
def test_reads_over_the_fast_paths_body_answer_as_the_generated_read(pair, length: Any) -> None:
    """Over the body host's direct seg_read (the node's fast path) the reader decodes from the
    body itself; every answer, and every error, is still the generated read's."""
    base, fast = pair
    n = {"size-1": base.SIZE - 1, "size": base.SIZE, "size+9": base.SIZE + 9}.get(length, length)
    data = bytes((7 * i + 3) & 0xFF for i in range(n))
    host = PniServer(FastNode())
    env = make_env(py_code("def accept(pni, capsule, length):\n    return 0\n"), data, BUDGET)
    host.current = env
    lean = BodyHost(host)
    direct = types.SimpleNamespace(**_fast.direct_calls(lean, HostPNI(lean)))
    try:
        for body in (memoryview(bytearray(data)), None):  # a run on, then the server took over
            for seg, off in BODY_READS:
                lean.body = body
                ours = outcome(fast.read, direct, seg, off)
                lean.body = body
                theirs = outcome(base.read, direct, seg, off)
                assert ours[0] == theirs[0] and ours[2:] == theirs[2:], (body is None, seg, off)
        released = memoryview(bytearray(data))
        released.release()
        lean.body = released
        assert outcome(fast.read, direct, 1, 0)[2:] == outcome(base.read, direct, 1, 0)[2:]
    finally:
        lean.body = None
        env.clear()
