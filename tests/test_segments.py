import random
import socket

import pytest

from pan_runtime.data.segments import Segment, SegmentPool, SegmentRing, SegType, chain, gather
from pan_runtime.errors import SegmentError


def test_pooled_segment_has_stable_address_and_returns_to_pool(pool):
    a = pool.allocate(100)
    b = pool.allocate(100)
    assert a.type is SegType.POOLED
    assert a.address is not None and b.address is not None
    assert abs(a.address - b.address) % pool.buffer_size == 0
    assert pool.available == pool.count - 2
    a.release()
    b.release()
    assert pool.whole


def test_overlay_shares_bytes_and_keeps_base_alive(pool):
    base = pool.allocate(32)
    base.view()[:] = bytes(range(32))
    ov = base.overlay(8, 4)
    assert ov.tobytes() == bytes([8, 9, 10, 11])
    assert ov.address == base.address + 8
    ov.view()[0] = 200
    assert base.view()[8] == 200
    base.release()  # the overlay still holds the base
    assert not pool.whole
    assert ov.tobytes()[0] == 200
    ov.release()
    assert pool.whole


def test_overlay_out_of_range_raises(pool):
    s = pool.allocate(10)
    with pytest.raises(SegmentError, match="outside segment"):
        s.overlay(8, 4)
    s.release()


def test_release_twice_and_use_after_release_raise():
    s = Segment.owned(b"abc")
    s.release()
    with pytest.raises(SegmentError, match="released more often"):
        s.release()
    with pytest.raises(SegmentError):
        s.retain()


def test_finalizer_runs_once_at_zero():
    calls = []
    s = Segment(memoryview(bytearray(4)), SegType.OWNED, finalizer=calls.append)
    s.retain()
    s.release()
    assert calls == []
    s.release()
    assert calls == [s]


def test_container_reads_across_parts_and_overlays_of_it(pool):
    a, b = pool.allocate(3), pool.allocate(4)
    a.view()[:] = b"abc"
    b.view()[:] = b"defg"
    c = Segment.container([a, b])
    a.release()
    b.release()
    assert c.length == 7
    assert gather(c.buffers()) == b"abcdefg"
    dst = bytearray(4)
    c.read_into(2, memoryview(dst))
    assert bytes(dst) == b"cdef"
    c.write_from(1, b"XYZ")
    assert c.tobytes() == b"aXYZefg"
    ov = c.overlay(2, 3)
    assert ov.tobytes() == b"YZe"
    ov.release()
    c.release()


def test_chain_yields_sendmsg_buffers_without_copy():
    head = Segment.owned(b"head-")
    tail = Segment.owned(b"tail")
    h = chain([head, tail])
    bufs = h.chain_buffers()
    assert [bytes(b) for b in bufs] == [b"head-", b"tail"]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.sendmsg(bufs)
        assert b.recv(100) == b"head-tail"
    finally:
        a.close()
        b.close()
    h.release_chain()
    assert not head.live and not tail.live


def test_ring_releases_everything_at_once(pool):
    ring = SegmentRing()
    segs = [ring.add(pool.allocate(10)) for _ in range(5)]
    kept = ring.keep(segs[0])
    assert kept is segs[0]
    ring.release_all()
    assert pool.whole
    assert not any(s.live for s in segs)


def test_pool_exhaustion_is_a_segment_error():
    with SegmentPool(16, 2) as p:
        a, b = p.allocate(), p.allocate()
        with pytest.raises(SegmentError, match="exhausted"):
            p.allocate()
        a.release()
        b.release()


def test_closing_pool_in_use_refuses():
    p = SegmentPool(16, 2)
    s = p.allocate()
    with pytest.raises(SegmentError, match="in use"):
        p.close()
    s.release()
    p.close()


def test_thousands_of_capsules_worth_of_churn_balance():
    """Allocate, chain, overlay, contain and release in random orders; the pool comes back whole."""
    rng = random.Random(7)
    with SegmentPool(512, 128) as p:
        for _ in range(5000):
            ring = SegmentRing()
            hdr = ring.add(p.allocate(rng.randint(1, 64)))
            body = ring.add(p.allocate(rng.randint(1, 512)))
            ov = ring.add(body.overlay(0, rng.randint(0, body.length)))
            cont = ring.add(Segment.container([hdr, ov]))
            sub = ring.add(cont.overlay(0, rng.randint(0, cont.length)))
            head = chain([hdr, body])
            assert head.chain_length() == hdr.length + body.length
            assert sub.length <= cont.length
            hdr.next = None
            if rng.random() < 0.5:
                extra = body.retain()
                extra.release()
            ring.release_all()
        assert p.whole
