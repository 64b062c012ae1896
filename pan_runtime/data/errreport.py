"""Error reports: a node's word to a capsule's home that it dropped the capsule, and why.

An error report is a system capsule (``pni_spec/system-protocol.md``, kind
``SYS_ERROR_REPORT``), as ICMP's "destination unreachable" is an IP datagram: its header's
code object name is the dropped capsule's, its home address is the node that dropped it, and
its body is the common system header (kind, destination = the dropped capsule's home), then::

    offset  size  field
    20      1     reason length R (1..ERROR_REASON_MAX)
    21      1     quote length Q (0..ERROR_QUOTE_MAX)
    22      2     detail length D (0..ERROR_DETAIL_MAX)
    24      R     reason tag, ASCII: the drop reason counted (``trust:network.none``, ``no_route``)
    24+R    D     detail, UTF-8: what refused the capsule and what to do about it
    24+R+D  Q     the first Q bytes of the dropped capsule's body (the sender matches its request)

The lengths are the constants of ``[wire]`` in ``pni_spec/pni.toml``. ``decode_report`` takes
any byte string and either returns an ``ErrorReport`` or raises ``CapsuleError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import FLAG_SYSTEM, encode_header
from pan_runtime.data.wire import (
    ERROR_DETAIL_MAX,
    ERROR_QUOTE_MAX,
    ERROR_REASON_MAX,
    ERROR_REPORT_FIELDS,
    SYS_ERROR_REPORT,
    SYS_HEADER_SIZE,
)
from pan_runtime.errors import CapsuleError

__all__ = ["ErrorReport", "encode_report", "decode_report", "REPORT_HEADER"]

#: the common system header and the error report's lengths: kind, 0, 0, destination, R, Q, D
REPORT_HEADER = struct.Struct(">BBH16sBBH")
assert REPORT_HEADER.size == SYS_HEADER_SIZE + ERROR_REPORT_FIELDS


@dataclass(frozen=True)
class ErrorReport:
    """A capsule an application sent was dropped on its way: by ``reporter``, for ``reason``.

    ``code`` is the name of the dropped capsule's code object; ``quote`` the start of its body
    (as the dropping node saw it); ``detail`` says what refused it and what to do.
    """

    reporter: NodeAddress
    reason: str
    detail: str
    code: bytes
    quote: bytes = b""

    def __str__(self) -> str:
        text = f"From {self.reporter}: {self.reason}"
        return f"{text}: {self.detail}" if self.detail else text


def _clip(text: str, limit: int) -> bytes:
    """``text`` as UTF-8 in at most ``limit`` bytes, never cutting a character in two."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def encode_report(
    name: bytes, reporter: NodeAddress, dest: NodeAddress, reason: str, detail: str, quote: bytes, hop_limit: int
) -> bytes:
    """The whole error report capsule (header and body) from ``reporter`` to ``dest``."""
    r = reason.encode("ascii", errors="replace")[:ERROR_REASON_MAX] or b"?"
    d = _clip(detail, ERROR_DETAIL_MAX)
    q = bytes(quote[:ERROR_QUOTE_MAX])
    body = REPORT_HEADER.pack(SYS_ERROR_REPORT, 0, 0, dest.raw, len(r), len(q), len(d)) + r + d + q
    return encode_header(name, reporter, hop_limit, FLAG_SYSTEM) + body


def decode_report(name: bytes, reporter: NodeAddress, body: bytes) -> ErrorReport:
    """Read an error report's body (after the capsule header); ``CapsuleError`` if malformed."""
    if len(body) < REPORT_HEADER.size:
        raise CapsuleError(f"error report of {len(body)} bytes, its header needs {REPORT_HEADER.size}", "truncated")
    kind, _r1, _r2, _dest, rlen, qlen, dlen = REPORT_HEADER.unpack_from(body)
    if kind != SYS_ERROR_REPORT:
        raise CapsuleError(f"system capsule kind {kind} is not an error report", "bad_kind")
    if not 0 < rlen <= ERROR_REASON_MAX or qlen > ERROR_QUOTE_MAX or dlen > ERROR_DETAIL_MAX:
        raise CapsuleError(f"error report lengths out of range: reason {rlen}, quote {qlen}, detail {dlen}", "bad_length")
    off = REPORT_HEADER.size
    if len(body) != off + rlen + dlen + qlen:
        raise CapsuleError(f"error report of {len(body)} bytes, its lengths say {off + rlen + dlen + qlen}", "bad_length")
    reason_raw = body[off : off + rlen]
    if not all(0x21 <= c < 0x7F for c in reason_raw):
        raise CapsuleError("error report reason is not printable ASCII", "bad_reason")
    detail = body[off + rlen : off + rlen + dlen].decode("utf-8", errors="replace")
    # control characters would let a remote node rewrite the user's terminal
    detail = "".join(c if c.isprintable() else "?" for c in detail)
    quote = bytes(body[off + rlen + dlen :])
    return ErrorReport(reporter, reason_raw.decode("ascii"), detail, bytes(name), quote)
