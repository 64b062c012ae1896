import hashlib
import hmac as std_hmac
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.segments import Segment, chain
from pan_runtime.data.streams import PanStream
from pan_runtime.errors import StreamError


def split_chain(data: bytes, cuts: list[int]) -> Segment:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    segs = [Segment.owned(data[a:b]) for a, b in zip(points, points[1:], strict=False)] or [Segment.owned(b"")]
    return chain(segs)


def ref_inet(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@given(st.binary(min_size=0, max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_reads_cross_segment_boundaries(data, cuts):
    head = split_chain(data, cuts)
    s = PanStream(head)
    assert s.length == len(data)
    out = bytearray()
    while s.remaining >= 3:
        out += s.read_bytes(3)
    out += s.read_bytes(s.remaining)
    assert bytes(out) == data
    with pytest.raises(StreamError):
        s.read_u8()
    head.release_chain()


@given(
    st.lists(st.tuples(st.sampled_from(["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]), st.integers()), max_size=20),
    st.lists(st.integers(0, 200), max_size=5),
)
def test_typed_round_trip_network_order(items, cuts):
    fmts = {"u8": ">B", "u16": ">H", "u32": ">I", "u64": ">Q", "i8": ">b", "i16": ">h", "i32": ">i", "i64": ">q"}
    fitting = []
    for kind, v in items:
        try:
            struct.pack(fmts[kind], v)
            fitting.append((kind, v))
        except struct.error:
            pass
    size = sum(struct.calcsize(fmts[k]) for k, _ in fitting)
    head = split_chain(bytes(size), cuts)
    w = PanStream(head)
    for kind, v in fitting:
        getattr(w, f"write_{kind}")(v)
    assert w.remaining == 0
    flat = b"".join(bytes(b) for b in head.chain_buffers())
    assert flat == b"".join(struct.pack(fmts[k], v) for k, v in fitting)
    r = PanStream(head)
    for kind, v in fitting:
        assert getattr(r, f"read_{kind}")() == v
    head.release_chain()


def test_value_that_does_not_fit_is_a_stream_error():
    s = PanStream(Segment.owned(8))
    with pytest.raises(StreamError, match="does not fit"):
        s.write_u8(300)
    with pytest.raises(StreamError, match="does not fit"):
        s.write_u32(-1)


def test_seek_skip_bounds():
    s = PanStream(split_chain(bytes(range(10)), [3, 7]))
    s.seek(8)
    assert s.read_u8() == 8
    s.seek(0)
    s.skip(5)
    assert s.read_u16() == 0x0506
    with pytest.raises(StreamError):
        s.seek(11)
    with pytest.raises(StreamError):
        s.skip(10)
    with pytest.raises(StreamError):
        s.skip(-1)
    with pytest.raises(StreamError):
        s.read_bytes(-1)


def test_addresses_and_names():
    head = split_chain(bytes(48), [5, 20, 33])
    w = PanStream(head)
    a = NodeAddress.from_endpoint("192.0.2.1", 4000)
    w.write_address(a)
    w.write_name(b"N" * 32)
    with pytest.raises(StreamError, match="32 bytes"):
        PanStream(Segment.owned(40)).write_name(b"short")
    r = PanStream(head)
    assert r.read_address() == a
    assert r.read_name() == b"N" * 32


@given(st.binary(max_size=200), st.binary(max_size=200), st.lists(st.integers(0, 500), max_size=4))
def test_copy_between_streams(src, prefix, cuts):
    a = PanStream(split_chain(prefix + src, cuts))
    a.skip(len(prefix))
    dst_head = split_chain(bytes(len(src)), cuts[::-1])
    b = PanStream(dst_head)
    a.copy_to(b, len(src))
    assert b"".join(bytes(x) for x in dst_head.chain_buffers()) == src
    with pytest.raises(StreamError):
        a.copy_to(PanStream(Segment.owned(0)), 1)


@given(st.binary(max_size=400), st.lists(st.integers(0, 500), max_size=6), st.integers(0, 400), st.integers(0, 400))
def test_digests_over_ranges_match_references(data, cuts, start, length):
    s = PanStream(split_chain(data, cuts))
    start = min(start, len(data))
    length = min(length, len(data) - start)
    piece = data[start : start + length]
    assert s.inet_checksum(start, length) == ref_inet(piece)
    assert s.crc32(start, length) == zlib.crc32(piece)
    assert s.sha256(start, length) == hashlib.sha256(piece).digest()
    assert s.hmac_sha256(b"key", start, length) == std_hmac.new(b"key", piece, "sha256").digest()
    with pytest.raises(StreamError):
        s.crc32(start, len(data) - start + 1)


def test_inet_checksum_known_vector():
    # RFC 1071 example words 0001 f203 f4f5 f6f7 sum to 0xddf2 -> checksum 0x220d
    s = PanStream(split_chain(bytes.fromhex("0001f203f4f5f6f7"), [3]))
    assert s.inet_checksum() == 0x220D
