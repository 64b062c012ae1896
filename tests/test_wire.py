"""The record codec of a worker's channel (``pan_runtime.isolation.wire``): what it encodes it
decodes, and truncated or forged records are a ``WorkerError``, whatever their bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pan_runtime.errors import WorkerError
from pan_runtime.isolation import wire

VALUES = st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=64)), max_size=20)


@given(VALUES)
def test_values_survive_the_trip(values):
    assert wire.decode(wire.encode(values)) == values


@given(VALUES, st.data())
def test_a_truncated_record_is_refused(values, data):
    raw = wire.encode(values)
    if not raw:
        return
    cut = data.draw(st.integers(1, len(raw)))
    try:
        wire.decode(raw[: len(raw) - cut])
    except WorkerError:
        return
    # a cut between two values is a shorter, valid record
    assert wire.decode(raw[: len(raw) - cut]) == values[: len(wire.decode(raw[: len(raw) - cut]))]


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused(raw):
    try:
        out = wire.decode(raw)
    except WorkerError:
        return
    assert wire.encode(out) == raw


def test_a_forged_length_and_too_many_values_are_refused():
    with pytest.raises(WorkerError, match="run past"):
        wire.decode(b"\x01\xff\xff\xff\x7f" + b"x")
    with pytest.raises(WorkerError, match="more than 3 values"):
        wire.decode(wire.encode([1, 2, 3, 4]), limit=3)
    with pytest.raises(WorkerError, match="bad tag"):
        wire.decode(b"\x07")
