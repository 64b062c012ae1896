"""panStreams: sequential, bounds-checked reading and writing over a chain of segments.

A stream sees the bytes of a segment chain (``next`` links and containers expanded) as one
run of bytes, without joining them. Every read, write and seek is checked against the end
of the chain and raises ``StreamError`` rather than running past it. Multi-byte integers
are in network order.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Iterator

from cryptography.hazmat.primitives import hashes, hmac

from pan_runtime.data.address import ADDRESS_SIZE, NodeAddress
from pan_runtime.data.segments import Segment
from pan_runtime.errors import StreamError

__all__ = ["PanStream", "inet_checksum", "crc32", "sha256", "hmac_sha256"]

NAME_SIZE = 32
_FORMATS = {
    "u8": struct.Struct(">B"),
    "u16": struct.Struct(">H"),
    "u32": struct.Struct(">I"),
    "u64": struct.Struct(">Q"),
    "i8": struct.Struct(">b"),
    "i16": struct.Struct(">h"),
    "i32": struct.Struct(">i"),
    "i64": struct.Struct(">q"),
}


def _ranges(buffers: list[memoryview], start: int, length: int) -> Iterator[memoryview]:
    """Views covering ``length`` bytes from ``start`` across ``buffers``."""
    pos = 0
    end = start + length
    for b in buffers:
        blen = len(b)
        lo, hi = max(start, pos), min(end, pos + blen)
        if lo < hi:
            yield b[lo - pos : hi - pos]
        pos += blen
        if pos >= end:
            break


def inet_checksum(views: Iterator[memoryview] | list[memoryview]) -> int:
    """The Internet checksum (RFC 1071) of the concatenated views."""
    total = 0
    carry = b""
    for v in views:
        data = carry + bytes(v) if carry else v
        n = len(data)
        if n % 2:
            carry = bytes(data[n - 1 : n])
            data = data[: n - 1]
        else:
            carry = b""
        if len(data):
            words = array("H")
            words.frombytes(data)
            if sys.byteorder == "little":
                words.byteswap()
            total += sum(words)
    if carry:
        total += carry[0] << 8
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def crc32(views: Iterator[memoryview] | list[memoryview]) -> int:
    value = 0
    for v in views:
        value = zlib.crc32(v, value)
    return value & 0xFFFFFFFF


def sha256(views: Iterator[memoryview] | list[memoryview]) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    for v in views:
        h.update(bytes(v))
    return h.finalize()


def hmac_sha256(key: bytes, views: Iterator[memoryview] | list[memoryview]) -> bytes:
    h = hmac.HMAC(bytes(key), hashes.SHA256())
    for v in views:
        h.update(bytes(v))
    return h.finalize()


class PanStream:
    """A cursor over a segment chain; the stream does not own the segments it reads."""

    __slots__ = ("_bufs", "_starts", "_idx", "_pos", "length")

    def __init__(self, head: Segment | list[memoryview]):
        bufs = head if isinstance(head, list) else head.chain_buffers()
        self._bufs = [b for b in bufs if len(b)]
        starts = []
        total = 0
        for b in self._bufs:
            starts.append(total)
            total += len(b)
        self._starts = starts
        self.length = total
        self._idx = 0
        self._pos = 0

    # -- position -------------------------------------------------------------------------
    def tell(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self.length - self._pos

    def seek(self, pos: int) -> None:
        if not 0 <= pos <= self.length:
            raise StreamError(f"seek to {pos} outside stream of {self.length} bytes")
        self._pos = pos
        self._locate()

    def skip(self, n: int) -> None:
        if n < 0:
            raise StreamError(f"cannot skip a negative count ({n})")
        self.seek(self._need(n))

    def _locate(self) -> None:
        pos, starts = self._pos, self._starts
        i = self._idx if self._idx < len(starts) and starts[self._idx] <= pos else 0
        while i + 1 < len(starts) and starts[i + 1] <= pos:
            i += 1
        self._idx = i

    def _need(self, n: int) -> int:
        end = self._pos + n
        if n < 0 or end > self.length:
            raise StreamError(
                f"{'negative count' if n < 0 else f'{n} bytes'} at offset {self._pos} "
                f"passes the end of the stream ({self.length} bytes)"
            )
        return end

    # -- raw bytes -------------------------------------------------------------------------
    def _span(self, n: int) -> tuple[memoryview, int] | None:
        """(buffer, offset) when the next ``n`` bytes lie in one buffer."""
        if not self._bufs:
            return None
        i = self._idx
        off = self._pos - self._starts[i]
        b = self._bufs[i]
        if off + n <= len(b):
            return b, off
        return None

    def read_bytes(self, n: int) -> bytes:
        end = self._need(n)
        span = self._span(n)
        if span is not None:
            b, off = span
            out = b[off : off + n].tobytes()
        else:
            out = b"".join(v.tobytes() for v in _ranges(self._bufs, self._pos, n))
        self._pos = end
        self._locate()
        return out

    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        end = self._need(n)
        span = self._span(n)
        if span is not None:
            b, off = span
            b[off : off + n] = data
        else:
            src = memoryview(data).cast("B")
            done = 0
            for v in _ranges(self._bufs, self._pos, n):
                v[:] = src[done : done + len(v)]
                done += len(v)
        self._pos = end
        self._locate()

    def _read(self, fmt: struct.Struct) -> int:
        n = fmt.size
        span = self._span(n)
        if span is not None and self._pos + n <= self.length:
            b, off = span
            (v,) = fmt.unpack_from(b, off)
            self._pos += n
            if off + n == len(b):
                self._locate()
            return v
        return fmt.unpack(self.read_bytes(n))[0]

    def _write(self, fmt: struct.Struct, value: int) -> None:
        try:
            data = fmt.pack(value)
        except struct.error:
            raise StreamError(f"value {value!r} does not fit {fmt.format[1:]} at offset {self._pos}") from None
        self.write_bytes(data)

    # -- typed items -------------------------------------------------------------------------
    def read_u8(self) -> int:
        return self._read(_FORMATS["u8"])

    def read_u16(self) -> int:
        return self._read(_FORMATS["u16"])

    def read_u32(self) -> int:
        return self._read(_FORMATS["u32"])

    def read_u64(self) -> int:
        return self._read(_FORMATS["u64"])

    def read_i8(self) -> int:
        return self._read(_FORMATS["i8"])

    def read_i16(self) -> int:
        return self._read(_FORMATS["i16"])

    def read_i32(self) -> int:
        return self._read(_FORMATS["i32"])

    def read_i64(self) -> int:
        return self._read(_FORMATS["i64"])

    def write_u8(self, v: int) -> None:
        self._write(_FORMATS["u8"], v)

    def write_u16(self, v: int) -> None:
        self._write(_FORMATS["u16"], v)

    def write_u32(self, v: int) -> None:
        self._write(_FORMATS["u32"], v)

    def write_u64(self, v: int) -> None:
        self._write(_FORMATS["u64"], v)

    def write_i8(self, v: int) -> None:
        self._write(_FORMATS["i8"], v)

    def write_i16(self, v: int) -> None:
        self._write(_FORMATS["i16"], v)

    def write_i32(self, v: int) -> None:
        self._write(_FORMATS["i32"], v)

    def write_i64(self, v: int) -> None:
        self._write(_FORMATS["i64"], v)

    def read_address(self) -> NodeAddress:
        return NodeAddress(self.read_bytes(ADDRESS_SIZE))

    def write_address(self, addr: NodeAddress) -> None:
        self.write_bytes(addr.raw)

    def read_name(self) -> bytes:
        """A 32-byte code object name."""
        return self.read_bytes(NAME_SIZE)

    def write_name(self, name: bytes) -> None:
        if len(name) != NAME_SIZE:
            raise StreamError(f"a code object name is {NAME_SIZE} bytes, got {len(name)}")
        self.write_bytes(name)

    # -- whole ranges ------------------------------------------------------------------------
    def copy_to(self, other: PanStream, n: int) -> None:
        """Copy ``n`` bytes from this stream's position to ``other``'s; both advance."""
        end = self._need(n)
        other._need(n)
        for v in _ranges(self._bufs, self._pos, n):
            other.write_bytes(v)
        self._pos = end
        self._locate()

    def _range(self, start: int | None, length: int | None) -> list[memoryview]:
        s = self._pos if start is None else start
        n = self.length - s if length is None else length
        if s < 0 or n < 0 or s + n > self.length:
            raise StreamError(f"range [{s}, {s}+{n}) outside stream of {self.length} bytes")
        return list(_ranges(self._bufs, s, n))

    def inet_checksum(self, start: int | None = None, length: int | None = None) -> int:
        """RFC 1071 checksum of a range (default: from the position to the end)."""
        return inet_checksum(self._range(start, length))

    def crc32(self, start: int | None = None, length: int | None = None) -> int:
        return crc32(self._range(start, length))

    def sha256(self, start: int | None = None, length: int | None = None) -> bytes:
        return sha256(self._range(start, length))

    def hmac_sha256(self, key: bytes, start: int | None = None, length: int | None = None) -> bytes:
        return hmac_sha256(key, self._range(start, length))
