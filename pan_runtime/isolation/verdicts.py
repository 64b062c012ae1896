"""The ``VERDICTS`` record a worker answers a batch with: a fixed little-endian layout, no
wire codec, so either side can read or write it in C or Python with a struct.

Layout (``docs/isolation.md``): a 16-byte header (u32 count, u32 flags: bit 0 the code needs a
reset, u32 bytes of the fault-text area, u32 reserved 0), ``count`` 24-byte entries (i32
verdict, u32 fault-text length: 0 the verdict holds, else the capsule faulted; u64 steps, u64
fuel), then the fault texts (``reason:message``, at most ``MAX_FAULT_TEXT`` bytes each) back to
back in entry order. The record's length is exactly ``16 + 24 * count + text bytes``.

The node reads a worker's record as hostile: every field is checked (``decode``) and a record
that breaks the layout is a ``WorkerError`` (the worker is then killed and the batch counted
as a fault).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pan_runtime.errors import FaultReason, RuntimeFault, WorkerError

__all__ = ["HEAD", "ENTRY", "MAX_FAULT_TEXT", "NEEDS_RESET", "encode", "decode", "fault_text", "clamp_verdict"]

#: count, flags, text bytes, reserved
HEAD = struct.Struct("<IIII")
#: verdict, fault-text length, steps, fuel
ENTRY = struct.Struct("<iIQQ")
#: the longest fault text a capsule's entry may carry
MAX_FAULT_TEXT = 2048
#: flags bit: the code object needs a reset (a fault left its instance unusable)
NEEDS_RESET = 1
_U64_MAX = (1 << 64) - 1
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def clamp_verdict(v: int) -> int:
    """``v`` as an i32 the node reads the same way: a status below the range stays a status,
    a verdict above it keeps its kind (the low byte) with the largest argument (a FORWARD or
    DELIVER past any body or port, as the out-of-range argument was)."""
    if _I32_MIN <= v <= _I32_MAX:
        return v
    return _I32_MIN if v < 0 else (0x7FFFFF << 8) | (v & 0xFF)


def fault_text(fault: RuntimeFault) -> bytes:
    """A fault as an entry carries it: ``reason:message``, cut to ``MAX_FAULT_TEXT`` bytes."""
    reason = getattr(fault, "reason", None)
    why = reason.value if isinstance(reason, FaultReason) else FaultReason.RUNTIME_ERROR.value
    return f"{why}:{fault}".encode("utf-8", "replace")[:MAX_FAULT_TEXT]


def _u64(v: int) -> int:
    return 0 if v < 0 else min(v, _U64_MAX)


def encode(out: Sequence[int | RuntimeFault], usage: Sequence[tuple[int, int]], needs_reset: bool) -> bytes:
    """The record for verdicts or faults ``out`` and their (steps, fuel) ``usage``."""
    n = len(out)
    texts = []
    entries = bytearray(HEAD.size + ENTRY.size * n)
    at = HEAD.size
    for v, (steps, fuel) in zip(out, usage, strict=True):
        if isinstance(v, int):
            ENTRY.pack_into(entries, at, clamp_verdict(v), 0, _u64(steps), _u64(fuel))
        else:
            text = fault_text(v) or b"?"
            texts.append(text)
            ENTRY.pack_into(entries, at, 0, len(text), _u64(steps), _u64(fuel))
        at += ENTRY.size
    text = b"".join(texts)
    HEAD.pack_into(entries, 0, n, NEEDS_RESET if needs_reset else 0, len(text), 0)
    return bytes(entries) + text


def decode(payload: bytes | memoryview, count: int) -> tuple[bool, list[tuple[int | RuntimeFault, int, int]]]:
    """(needs reset, [(verdict or fault, steps, fuel)]) of a record answering a batch of
    ``count`` capsules; ``WorkerError`` when any field breaks the layout."""
    size = len(payload)
    if size < HEAD.size:
        raise WorkerError(f"a verdicts record of {size} bytes has no header")
    n, flags, text_bytes, reserved = HEAD.unpack_from(payload, 0)
    if n != count:
        raise WorkerError(f"verdicts for {n} capsules answer a batch of {count}")
    if flags & ~NEEDS_RESET or reserved:
        raise WorkerError(f"verdicts record with unknown flags {flags:#x} or reserved {reserved:#x}")
    text_at = HEAD.size + ENTRY.size * n
    if size != text_at + text_bytes:
        raise WorkerError(f"a verdicts record of {size} bytes, its fields say {text_at + text_bytes}")
    out: list[tuple[int | RuntimeFault, int, int]] = []
    at = HEAD.size
    t = text_at
    for _ in range(n):
        verdict, flen, steps, fuel = ENTRY.unpack_from(payload, at)
        at += ENTRY.size
        if flen == 0:
            out.append((verdict, steps, fuel))
            continue
        if flen > MAX_FAULT_TEXT or t + flen > size:
            raise WorkerError(f"a fault text of {flen} bytes runs past the verdicts record")
        reason, _, message = bytes(payload[t : t + flen]).decode("utf-8", "replace").partition(":")
        t += flen
        try:
            why = FaultReason(reason)
        except ValueError:
            why = FaultReason.RUNTIME_ERROR
        out.append((RuntimeFault(message, why), steps, fuel))
    if t != size:
        raise WorkerError(f"the fault texts take {t - text_at} bytes, the header says {text_bytes}")
    return bool(flags & NEEDS_RESET), out
