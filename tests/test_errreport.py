"""The error report codec: what a node writes reads back; anything else is a CapsuleError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.errreport import REPORT_HEADER, ErrorReport, decode_report, encode_report
from pan_runtime.data.wire import ERROR_DETAIL_MAX, ERROR_QUOTE_MAX, ERROR_REASON_MAX, SYS_ERROR_REPORT
from pan_runtime.errors import CapsuleError

NAME = bytes(range(32))
A = NodeAddress.parse("127.0.0.1:7001")
B = NodeAddress.parse("127.0.0.1:7002")


def _parse(data: bytes) -> tuple[Capsule, bytes]:
    cap = Capsule.parse_bytes(data)
    return cap, cap.body.tobytes()


def test_round_trip_through_a_capsule():
    cap, body = _parse(encode_report(NAME, B, A, "trust:network.none", "unsigned; sign it", b"quoted", 9))
    assert cap.is_system and cap.name == NAME and cap.home == B and cap.hop_limit == 9
    assert body[0] == SYS_ERROR_REPORT and NodeAddress(body[4:20]) == A
    r = decode_report(cap.name, cap.home, body)
    assert r == ErrorReport(B, "trust:network.none", "unsigned; sign it", NAME, b"quoted")
    assert str(r) == "From 127.0.0.1:7002: trust:network.none: unsigned; sign it"


def test_long_fields_are_clipped_to_the_wire_maxima_without_splitting_a_character():
    detail = "é" * ERROR_DETAIL_MAX  # two bytes each: the cut falls inside one
    cap, body = _parse(encode_report(NAME, B, A, "x" * 100, detail, bytes(200), 1))
    r = decode_report(cap.name, cap.home, body)
    assert len(r.reason) == ERROR_REASON_MAX and len(r.quote) == ERROR_QUOTE_MAX
    assert r.detail == "é" * (ERROR_DETAIL_MAX // 2)


def _body(rlen: int, qlen: int, dlen: int, rest: bytes, kind: int = SYS_ERROR_REPORT) -> bytes:
    return REPORT_HEADER.pack(kind, 0, 0, A.raw, rlen, qlen, dlen) + rest


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "truncated"),
        (_body(1, 0, 0, b"x")[:-2], "truncated"),
        (_body(1, 0, 0, b"x", kind=2), "bad_kind"),
        (_body(0, 0, 0, b""), "bad_length"),
        (_body(ERROR_REASON_MAX + 1, 0, 0, b"x" * (ERROR_REASON_MAX + 1)), "bad_length"),
        (_body(1, 0, 0, b"xy"), "bad_length"),
        (_body(1, 2, 0, b"x"), "bad_length"),
        (_body(1, 0, 0, b"\x07"), "bad_reason"),
    ],
)
def test_malformed_reports_are_refused_with_a_reason(body, reason):
    with pytest.raises(CapsuleError) as ei:
        decode_report(NAME, B, body)
    assert ei.value.reason == reason


def test_control_characters_in_the_detail_never_reach_a_terminal():
    r = decode_report(NAME, B, _body(1, 0, 6, b"x" + b"a\x1b[2Jb"))
    assert r.detail == "a?[2Jb"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_any_body_decodes_or_raises_capsule_error(data):
    try:
        r = decode_report(NAME, B, data)
    except CapsuleError:
        return
    assert r.reason.isascii() and len(r.quote) <= ERROR_QUOTE_MAX and r.detail.isprintable()
