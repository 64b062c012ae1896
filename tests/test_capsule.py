import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE, Capsule, encode_header
from pan_runtime.data.segments import Segment
from pan_runtime.errors import CapsuleError

NAME = bytes(range(32))
HOME = NodeAddress.from_endpoint("127.0.0.1", 7000)


def test_layout_matches_the_documented_offsets():
    wire = encode_header(NAME, HOME, hop_limit=9, flags=1) + b"body"
    assert wire[0] == 1 and wire[1] == 1 and wire[2] == 9 and wire[3] == 0
    assert wire[4:36] == NAME
    assert wire[36:52] == HOME.raw
    assert HEADER_SIZE == 52
    cap = Capsule.parse_bytes(wire)
    assert (cap.name, cap.home, cap.hop_limit, cap.is_system) == (NAME, HOME, 9, True)
    assert cap.body.tobytes() == b"body"
    cap.release()


def test_parse_is_zero_copy_and_forward_patches_hop_limit_in_place():
    seg = Segment.owned(encode_header(NAME, HOME, 5) + b"payload")
    cap = Capsule.parse(seg)
    seg.release()
    cap.body.view()[0] = ord("P")  # code rewrites its body...
    cap.hop_limit -= 1
    (buf,) = cap.buffers()  # ...and forwarding sends the same buffer
    assert bytes(buf) == encode_header(NAME, HOME, 4) + b"Payload"
    cap.release()
    assert not seg.live


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "truncated"),
        (encode_header(NAME, HOME)[:51], "truncated"),
        (b"\x02" + encode_header(NAME, HOME)[1:], "version"),
        (encode_header(NAME, HOME)[:1] + b"\x80" + encode_header(NAME, HOME)[2:], "bad_flags"),
        (encode_header(NAME, HOME)[:3] + b"\x01" + encode_header(NAME, HOME)[4:], "reserved"),
    ],
)
def test_malformed_capsules_name_the_reason(wire, reason):
    with pytest.raises(CapsuleError) as err:
        Capsule.parse_bytes(wire)
    assert err.value.reason == reason


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_capsule_error(data):
    try:
        cap = Capsule.parse_bytes(data)
    except CapsuleError:
        return
    assert cap.size == len(data)
    assert cap.to_bytes() == data
    cap.release()


@given(st.binary(min_size=HEADER_SIZE, max_size=120), st.integers(0, 119), st.integers(0, 255))
def test_mutated_valid_capsules_parse_or_raise_capsule_error(tail, pos, byte):
    good = bytearray(encode_header(NAME, HOME) + tail)
    good[pos % len(good)] = byte
    try:
        Capsule.parse_bytes(bytes(good)).release()
    except CapsuleError as exc:
        assert exc.reason in {"version", "bad_flags", "reserved"}


def test_header_encoding_validates():
    with pytest.raises(CapsuleError):
        encode_header(b"short", HOME)
    with pytest.raises(CapsuleError):
        encode_header(NAME, HOME, hop_limit=256)
    with pytest.raises(CapsuleError):
        encode_header(NAME, HOME, flags=0x10)


def test_new_capsule_sends_header_plus_body_chain():
    body = Segment.owned(struct.pack(">I", 7))
    cap = Capsule(NAME, HOME, body, hop_limit=3)
    bufs = cap.buffers()
    assert len(bufs) == 2
    assert b"".join(bytes(b) for b in bufs) == encode_header(NAME, HOME, 3) + b"\0\0\0\x07"
    cap.release()
