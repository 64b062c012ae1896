"""The shared-memory ring of a worker's channel (``pan_runtime.isolation.ring``): records in
order across the wrap, back-pressure when full, and counters from the other side that make no
sense are refused, never followed."""

from __future__ import annotations

import struct

import pytest

from pan_runtime.errors import WorkerError
from pan_runtime.isolation.ring import HEADER, Ring

SIZE = 4096


def _pair() -> tuple[Ring, Ring, memoryview]:
    buf = memoryview(bytearray(HEADER + SIZE))
    return Ring(buf, 0, SIZE), Ring(buf, 0, SIZE), buf


def test_records_arrive_in_order_across_the_wrap_and_a_full_ring_pushes_back():
    prod, cons, _ = _pair()
    sent = received = 0
    for round_ in range(50):
        while prod.put(3, bytes([sent % 256]) * (100 + sent % 300)):
            sent += 1
        assert sent > received  # it took some before it filled
        while (rec := cons.get()) is not None:
            kind, payload, _ = rec
            assert kind == 3 and payload == bytes([received % 256]) * (100 + received % 300)
            received += 1
        cons.release()
        assert received == sent, round_
    assert sent > 2 * SIZE // 400  # wrapped many times


def test_a_record_larger_than_half_the_ring_is_refused():
    prod, _, _ = _pair()
    with pytest.raises(WorkerError, match="does not fit"):
        prod.put(1, bytes(SIZE))


@pytest.mark.parametrize(
    ("head", "tail", "words"),
    [
        (10 * SIZE, 0, "more than a ring ahead"),
        (64, 0, "runs past what was written"),
    ],
)
def test_a_consumer_refuses_a_head_that_makes_no_sense(head, tail, words):
    prod, cons, buf = _pair()
    prod.put(1, b"x" * 100)  # a 112-byte record: a head of 64 cuts it
    struct.pack_into("<Q", buf, 0, head)
    with pytest.raises(WorkerError, match=words):
        while cons.get() is not None:
            pass


def test_a_producer_refuses_a_tail_ahead_of_its_head():
    prod, _, buf = _pair()
    prod.put(1, b"x")
    struct.pack_into("<Q", buf, 64, 1 << 40)
    with pytest.raises(WorkerError, match="tail"):
        prod.put(1, b"y")
