"""The record codec on a worker's channel: flat lists of signed 64-bit integers and byte
strings, read with every length checked.

Both ends are hostile to each other's mistakes: the node reads what a worker running hostile
code wrote, so nothing here trusts a length, a count or a tag (``WorkerError`` on any of
them); no pickle, no marshal. The worker side reads what the node wrote the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pan_runtime.errors import WorkerError

__all__ = ["Value", "encode", "decode", "encoded_size"]

Value = int | bytes
_INT = 0
_BYTES = 1
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")


def encoded_size(values: Sequence[Value]) -> int:
    return sum(9 if isinstance(v, int) else 5 + len(v) for v in values)


def encode(values: Sequence[Value], out: memoryview | bytearray | None = None, offset: int = 0) -> bytes | int:
    """``values`` as bytes, or written into ``out`` at ``offset`` (returns the end offset)."""
    buf = out if out is not None else bytearray(encoded_size(values))
    pos = offset if out is not None else 0
    for v in values:
        if isinstance(v, int):
            buf[pos] = _INT
            _I64.pack_into(buf, pos + 1, v)
            pos += 9
        else:
            n = len(v)
            buf[pos] = _BYTES
            _U32.pack_into(buf, pos + 1, n)
            buf[pos + 5 : pos + 5 + n] = v
            pos += 5 + n
    return pos if out is not None else bytes(buf)


def decode(data: memoryview | bytes, limit: int = 1 << 16) -> list[Value]:
    """The values in ``data`` (at most ``limit`` of them); ``WorkerError`` when malformed."""
    out: list[Value] = []
    pos = 0
    end = len(data)
    while pos < end:
        if len(out) >= limit:
            raise WorkerError(f"channel record holds more than {limit} values")
        tag = data[pos]
        if tag == _INT:
            if pos + 9 > end:
                raise WorkerError(f"channel record truncated in an integer at byte {pos}")
            out.append(_I64.unpack_from(data, pos + 1)[0])
            pos += 9
        elif tag == _BYTES:
            if pos + 5 > end:
                raise WorkerError(f"channel record truncated in a length at byte {pos}")
            n = _U32.unpack_from(data, pos + 1)[0]
            if pos + 5 + n > end:
                raise WorkerError(f"channel record: {n} bytes at byte {pos} run past its end ({end})")
            out.append(bytes(data[pos + 5 : pos + 5 + n]))
            pos += 5 + n
        else:
            raise WorkerError(f"channel record: bad tag {tag} at byte {pos}")
    return out
