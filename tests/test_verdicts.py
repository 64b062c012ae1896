"""The ``VERDICTS`` record (``pan_runtime.isolation.verdicts``): what a worker writes reads
back the same, and a hostile worker's malformed record is a ``WorkerError``, whichever field
it breaks."""

from __future__ import annotations

import pytest

from pan_runtime.errors import FaultReason, RuntimeFault, WorkerError
from pan_runtime.isolation import verdicts
from pan_runtime.isolation.verdicts import ENTRY, HEAD, MAX_FAULT_TEXT, decode, encode


def _three() -> bytes:
    out: list[int | RuntimeFault] = [0x101, RuntimeFault("trapped: out of bounds", FaultReason.TRAP), -3]
    return encode(out, [(1, 2), (3, 4), (5, 1 << 40)], needs_reset=True)


def test_a_record_reads_back_as_written():
    reset, got = decode(_three(), 3)
    assert reset is True
    assert got[0] == (0x101, 1, 2)
    fault, steps, fuel = got[1]
    assert isinstance(fault, RuntimeFault) and fault.reason is FaultReason.TRAP
    assert str(fault) == "trapped: out of bounds" and (steps, fuel) == (3, 4)
    assert got[2] == (-3, 5, 1 << 40)
    assert len(_three()) == HEAD.size + 3 * ENTRY.size + len(b"trap:trapped: out of bounds")


def test_an_unknown_reason_is_a_runtime_error_and_a_long_text_is_cut():
    fault = RuntimeFault("x" * 5000, FaultReason.CRASH)
    rec = encode([fault], [(0, 0)], needs_reset=False)
    (got, _, _), = decode(rec, 1)[1]
    assert isinstance(got, RuntimeFault) and got.reason is FaultReason.CRASH
    assert len(rec) == HEAD.size + ENTRY.size + MAX_FAULT_TEXT
    odd = bytearray(encode([RuntimeFault("m", FaultReason.CRASH)], [(0, 0)], False))
    odd[HEAD.size + ENTRY.size : HEAD.size + ENTRY.size + 5] = b"nope:"
    (got, _, _), = decode(bytes(odd), 1)[1]
    assert isinstance(got, RuntimeFault) and got.reason is FaultReason.RUNTIME_ERROR


def test_a_verdict_outside_32_bits_keeps_its_kind():
    assert verdicts.clamp_verdict(0x7FFFFFFF) == 0x7FFFFFFF
    assert verdicts.clamp_verdict((1 << 40) | 0x02) & 0xFF == 0x02
    assert verdicts.clamp_verdict(-(1 << 40)) == -(1 << 31)


def _patched(field: str) -> bytes:
    rec = bytearray(_three())
    text_at = HEAD.size + 3 * ENTRY.size
    if field == "count":
        HEAD.pack_into(rec, 0, 4, 1, len(rec) - text_at, 0)
    elif field == "flags":
        HEAD.pack_into(rec, 0, 3, 3, len(rec) - text_at, 0)
    elif field == "reserved":
        HEAD.pack_into(rec, 0, 3, 1, len(rec) - text_at, 7)
    elif field == "text_bytes":
        HEAD.pack_into(rec, 0, 3, 1, len(rec) - text_at + 8, 0)
    elif field == "fault_len_long":
        v, _, s, f = ENTRY.unpack_from(rec, HEAD.size + ENTRY.size)
        ENTRY.pack_into(rec, HEAD.size + ENTRY.size, v, 0xFFFFFFFF, s, f)
    elif field == "fault_len_sum":  # a fault's text says fewer bytes than the area holds
        v, n, s, f = ENTRY.unpack_from(rec, HEAD.size + ENTRY.size)
        ENTRY.pack_into(rec, HEAD.size + ENTRY.size, v, n - 1, s, f)
    elif field == "fault_len_past":  # a second fault whose text is not in the area
        v, _, s, f = ENTRY.unpack_from(rec, HEAD.size + 2 * ENTRY.size)
        ENTRY.pack_into(rec, HEAD.size + 2 * ENTRY.size, v, 64, s, f)
    elif field == "truncated":
        del rec[-1]
    elif field == "no_header":
        del rec[8:]
    elif field == "trailing":
        rec += b"\0" * 8
    return bytes(rec)


@pytest.mark.parametrize(
    "field",
    ["count", "flags", "reserved", "text_bytes", "fault_len_long", "fault_len_sum", "fault_len_past", "truncated", "no_header", "trailing"],
)
def test_a_malformed_record_is_a_worker_error(field: str):
    with pytest.raises(WorkerError):
        decode(_patched(field), 3)
