"""Capsules: a code object name, a home node address and a data body, in a strict wire format.

Wire format (network order), 52 header bytes then the body::

    offset  size  field
    0       1     version           must be 1
    1       1     flags             bit 0: system capsule (node protocol); other bits must be 0
    2       1     hop limit         decremented by every node; a capsule arriving with 0 is dropped
    3       1     reserved          must be 0
    4       32    code object name  SHA-256 of the code object's canonical encoding
    36      16    home node address where the code object can be fetched
    52      ...   body              up to the end of the datagram or frame

The constants are generated from ``[wire]`` in ``pni_spec/pni.toml`` (``data/wire.py``; the
compiled fast path reads the same values from ``include/pan_wire.h``). Parsing never copies the body: it becomes an overlay of the received segment. Any byte
string either parses or raises ``CapsuleError`` with a reason tag; nothing else escapes.
"""

from __future__ import annotations

import struct

from pan_runtime.data.address import ADDRESS_SIZE, NodeAddress
from pan_runtime.data.segments import Segment
from pan_runtime.data.wire import (
    DEFAULT_HOP_LIMIT,
    FLAG_SYSTEM,
    HEADER_SIZE,
    HOP_LIMIT_OFFSET,
    KNOWN_FLAGS,
    VERSION,
)
from pan_runtime.errors import CapsuleError

__all__ = [
    "VERSION",
    "HEADER_SIZE",
    "FLAG_SYSTEM",
    "DEFAULT_HOP_LIMIT",
    "Capsule",
    "encode_header",
]

# the constants come from pni.toml's [wire] (generated data/wire.py), as the C fast path's do
_HEADER = struct.Struct(">BBBB32s16s")


def encode_header(name: bytes, home: NodeAddress, hop_limit: int = DEFAULT_HOP_LIMIT, flags: int = 0) -> bytes:
    if len(name) != 32:
        raise CapsuleError(f"code object name must be 32 bytes, got {len(name)}", "bad_name")
    if not 0 <= hop_limit <= 255:
        raise CapsuleError(f"hop limit {hop_limit} outside 0..255", "bad_hop_limit")
    if flags & ~KNOWN_FLAGS:
        raise CapsuleError(f"unknown capsule flags {flags:#04x}", "bad_flags")
    return _HEADER.pack(VERSION, flags, hop_limit, 0, name, home.raw)


class Capsule:
    """A parsed capsule. ``wire`` is the whole received segment (header + body) when the
    capsule came off a link, so forwarding it unchanged sends that segment again."""

    __slots__ = ("name", "home_raw", "hop_limit", "flags", "body", "wire")

    def __init__(
        self,
        name: bytes,
        home: NodeAddress,
        body: Segment,
        *,
        hop_limit: int = DEFAULT_HOP_LIMIT,
        flags: int = 0,
        wire: Segment | None = None,
    ):
        self.name = name
        self.home_raw = home.raw
        self.body = body
        self.hop_limit = hop_limit
        self.flags = flags
        self.wire = wire

    @property
    def home(self) -> NodeAddress:
        return NodeAddress(self.home_raw)

    @property
    def is_system(self) -> bool:
        return bool(self.flags & FLAG_SYSTEM)

    @classmethod
    def parse(cls, seg: Segment) -> Capsule:
        """Parse a received segment; the capsule holds a new reference to it (``wire``)."""
        view = seg._view
        if view is None:
            view = seg.view()  # raises: released, or a container
        n = len(view)
        if n < HEADER_SIZE:
            raise CapsuleError(f"capsule truncated: {n} bytes, header needs {HEADER_SIZE}", "truncated", n)
        version, flags, hop, reserved, name, home = _HEADER.unpack_from(view, 0)
        if version != VERSION or flags & ~KNOWN_FLAGS or reserved:
            if version != VERSION:
                raise CapsuleError(f"capsule version {version} at offset 0, this node speaks {VERSION}", "version", 0)
            if flags & ~KNOWN_FLAGS:
                raise CapsuleError(f"unknown capsule flags {flags:#04x} at offset 1", "bad_flags", 1)
            raise CapsuleError(f"reserved byte at offset 3 is {reserved}, must be 0", "reserved", 3)
        cap = _new_capsule(cls)
        cap.name = name
        cap.home_raw = home
        cap.hop_limit = hop
        cap.flags = flags
        cap.body = seg.overlay(HEADER_SIZE, n - HEADER_SIZE)
        seg.refs += 1
        cap.wire = seg
        return cap

    @classmethod
    def parse_bytes(cls, data: bytes | bytearray | memoryview) -> Capsule:
        """Parse from bytes (copied once into an owned segment)."""
        seg = Segment.owned(data)
        try:
            return cls.parse(seg)
        finally:
            seg.release()

    def header(self) -> bytes:
        return _HEADER.pack(VERSION, self.flags, self.hop_limit, 0, self.name, self.home_raw)

    def buffers(self) -> list[memoryview]:
        """The capsule as a buffer list for ``sendmsg``: header view plus the body chain.

        A capsule that came off a link and whose body was not replaced is sent from its
        original segment, with the hop limit patched in place.
        """
        wire = self.wire
        if wire is not None and wire.refs > 0:
            v = wire._view
            if v is not None:
                v[HOP_LIMIT_OFFSET] = self.hop_limit
                return [v]
        return [memoryview(self.header()), *self.body.chain_buffers()]

    def to_bytes(self) -> bytes:
        return b"".join(bytes(b) for b in self.buffers())

    @property
    def size(self) -> int:
        return HEADER_SIZE + self.body.chain_length()

    def replace_body(self, body: Segment) -> None:
        """Send a different body from now on (the original wire segment is let go)."""
        old, self.body = self.body, body
        old.release()
        if self.wire is not None:
            self.wire.release()
            self.wire = None

    def release(self) -> None:
        """Drop the capsule's references to its segments."""
        body, self.body = self.body, None  # type: ignore[assignment]
        if body is not None and body.refs > 0:
            body.release()
        wire, self.wire = self.wire, None
        if wire is not None and wire.refs > 0:
            wire.release()

    def __repr__(self) -> str:
        return f"<Capsule code={self.name.hex()[:12]} home={self.home} hop={self.hop_limit} body={self.body.length if self.body else 0}B>"


_new_capsule = object.__new__

assert HEADER_SIZE == _HEADER.size == 4 + 32 + ADDRESS_SIZE
