"""Node addresses: 128-bit identifiers of nodes, and how UDP endpoints map into them.

Mapping (all bytes in network order):

* IPv4 endpoint ``a.b.c.d:port`` -> ``00*8 | ff ff | port (2) | a b c d``. Reversible: the
  endpoint is recovered from the address, so IPv4 neighbours need only their address.
  Text form: ``a.b.c.d:port``.
* IPv6 endpoint ``[ip6]:port`` -> the first 112 bits of ``ip6`` followed by ``port``. Not
  reversible (16 bits of the IPv6 address give way to the port), so IPv6 neighbours are
  configured with their endpoint, or learned from the datagrams they send.
* Any other address (in-process networks, hand-assigned identifiers): the 128 bits as
  IPv6 text, e.g. ``::1``; 32 hex digits are accepted too.

The paper's node used 48 of its 128 bits (IPv4 + port); the IPv6 form uses all of them.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

from pan_runtime.errors import AddressError

__all__ = ["ADDRESS_SIZE", "NodeAddress", "endpoint_text", "address_text", "parse_endpoint"]

ADDRESS_SIZE = 16
_V4_PREFIX = b"\x00" * 8 + b"\xff\xff"


class NodeAddress:
    """An immutable 128-bit node address; hashable, comparable, 16 bytes on the wire."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | bytearray | memoryview):
        b = bytes(raw)
        if len(b) != ADDRESS_SIZE:
            raise AddressError(f"a node address is {ADDRESS_SIZE} bytes, got {len(b)}")
        object.__setattr__(self, "raw", b)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NodeAddress is immutable")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_int(cls, value: int) -> NodeAddress:
        if not 0 <= value < 1 << 128:
            raise AddressError(f"node address integer {value} is outside 0..2**128-1")
        return cls(value.to_bytes(ADDRESS_SIZE, "big"))

    @classmethod
    def from_endpoint(cls, host: str, port: int) -> NodeAddress:
        """The address a node listening on UDP ``host:port`` takes by default."""
        if not 0 <= port <= 0xFFFF:
            raise AddressError(f"UDP port {port} is outside 0..65535")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise AddressError(f"{host!r} is not an IPv4 or IPv6 address") from None
        if isinstance(ip, ipaddress.IPv4Address):
            return cls(_V4_PREFIX + struct.pack(">H", port) + ip.packed)
        return cls(ip.packed[:14] + struct.pack(">H", port))

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        """Parse the text form: ``a.b.c.d:port``, IPv6 text, or 32 hex digits."""
        t = text.strip()
        if not t:
            raise AddressError("empty node address")
        if t.count(":") == 1 and "." in t:
            host, _, port = t.partition(":")
            if not port.isdigit():
                raise AddressError(f"bad port in node address {text!r}")
            return cls.from_endpoint(host, int(port))
        if t.startswith("[") and "]:" in t:
            host, _, port = t[1:].partition("]:")
            if not port.isdigit():
                raise AddressError(f"bad port in node address {text!r}")
            return cls.from_endpoint(host, int(port))
        if len(t) == 32 and all(c in "0123456789abcdefABCDEF" for c in t):
            return cls(bytes.fromhex(t))
        try:
            return cls(ipaddress.IPv6Address(t).packed)
        except ValueError:
            raise AddressError(
                f"cannot parse node address {text!r}: expected a.b.c.d:port, [ip6]:port, IPv6 text or 32 hex digits"
            ) from None

    # -- views ----------------------------------------------------------------------------
    @property
    def is_ipv4(self) -> bool:
        return self.raw[:10] == _V4_PREFIX

    def ipv4_endpoint(self) -> tuple[str, int] | None:
        """The UDP endpoint of an IPv4-derived address (None for any other address)."""
        if not self.is_ipv4:
            return None
        (port,) = struct.unpack_from(">H", self.raw, 10)
        return str(ipaddress.IPv4Address(self.raw[12:])), port

    def __int__(self) -> int:
        return int.from_bytes(self.raw, "big")

    def __bytes__(self) -> bytes:
        return self.raw

    def __str__(self) -> str:
        ep = self.ipv4_endpoint()
        if ep is not None:
            return f"{ep[0]}:{ep[1]}"
        return str(ipaddress.IPv6Address(self.raw))

    def __repr__(self) -> str:
        return f"NodeAddress({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeAddress) and other.raw == self.raw

    def __lt__(self, other: NodeAddress) -> bool:
        return self.raw < other.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def endpoint_text(host: str, port: int) -> str:
    """A UDP endpoint as users type it: ``a.b.c.d:port`` or ``[ip6]:port`` (no zone)."""
    return f"[{host.split('%', 1)[0]}]:{port}" if ":" in host else f"{host}:{port}"


def address_text(address: NodeAddress, endpoints: Iterable[tuple[str, int]] = ()) -> str:
    """``address`` in the form a user would type it: an IPv6 endpoint address (which does not
    keep the endpoint's last 16 bits) as ``[ip6]:port`` when it is the address of one of
    ``endpoints`` (a neighbour's, the node's own), else its text form (``str``)."""
    if not address.is_ipv4:
        for host, port in endpoints:
            try:
                if ":" in host and NodeAddress.from_endpoint(host.split("%", 1)[0], port) == address:
                    return endpoint_text(host, port)
            except AddressError:
                continue
    return str(address)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``a.b.c.d:port`` or ``[ip6]:port`` as (host, port); ``AddressError`` otherwise."""
    t = text.strip()
    if t.startswith("[") and "]:" in t:
        host, _, port = t[1:].partition("]:")
        family = ipaddress.IPv6Address
    else:
        host, _, port = t.rpartition(":")
        family = ipaddress.IPv4Address  # type: ignore[assignment]
    try:
        family(host.split("%", 1)[0])
        ok = port.isdigit() and int(port) <= 0xFFFF
    except ValueError:
        ok = False
    if not ok:
        raise AddressError(f"cannot parse UDP endpoint {text!r}: expected a.b.c.d:port or [ip6]:port")
    return host, int(port)
