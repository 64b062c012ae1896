"""The application library, in-process form: attach to a node, install code, bind ports,
inject capsules and receive what code delivers.

The same calls are carried over UNIX sockets by the network application link; an
application reaches data only through deliveries made on its own link.
"""

from __future__ import annotations

import struct

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT, encode_header
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
from pan_runtime.node.cache import CacheEntry
from pan_runtime.node.links import Delivery
from pan_runtime.node.node import Node
from pan_runtime.node.trust import CodeOrigin

__all__ = ["Application", "capsule_bytes"]

PORTMAP_BIND = 0
PORTMAP_UNBIND = 1


def capsule_bytes(
    code: CodeObject | bytes,
    body: bytes | bytearray | memoryview,
    home: NodeAddress,
    hop_limit: int = DEFAULT_HOP_LIMIT,
) -> bytes:
    """A capsule on the wire: header for ``code`` (object or 32-byte name) plus ``body``."""
    name = code.name if isinstance(code, CodeObject) else bytes(code)
    return encode_header(name, home, hop_limit) + bytes(body)


class Application:
    """An application attached to one node through its own application link."""

    def __init__(self, node: Node, name: str = "app"):
        self.node = node
        self.link = node.attach(name)

    @property
    def address(self) -> NodeAddress:
        return self.node.address

    def install(self, code: CodeObject, *, pin: bool = False) -> CacheEntry:
        """Install a code object on the node as a local application (trusted as local origin)."""
        self.link.check_open()
        return self.node.install(code, origin=CodeOrigin.LOCAL, pin=pin)

    def send(
        self,
        code: CodeObject | bytes,
        body: bytes | bytearray | memoryview,
        *,
        home: NodeAddress | None = None,
        hop_limit: int = DEFAULT_HOP_LIMIT,
    ) -> bool:
        """Inject a capsule of ``code`` with ``body``; False if the node's queue was full."""
        return self.node.inject(capsule_bytes(code, body, home or self.node.address, hop_limit), self.link)

    def bind(self, port: int, portmapper: CodeObject | bytes | None = None) -> bool:
        """Ask the node's portmapper to deliver capsules for ``port`` to this application."""
        return self._portmap(port, PORTMAP_BIND, portmapper)

    def unbind(self, port: int, portmapper: CodeObject | bytes | None = None) -> bool:
        return self._portmap(port, PORTMAP_UNBIND, portmapper)

    def _portmap(self, port: int, op: int, portmapper: CodeObject | bytes | None) -> bool:
        pm = portmapper if portmapper is not None else self.node.portmapper
        if pm is None:
            raise CodeObjectError("this node has no portmapper; install one and call node.use_portmapper()")
        return self.send(pm, struct.pack(">HBB", port, op, 0))

    def receive(self) -> Delivery | None:
        """The oldest delivery not yet taken, or None."""
        inbox = self.link.inbox
        return inbox.popleft() if inbox else None

    def deliveries(self) -> list[Delivery]:
        """Every delivery not yet taken, oldest first."""
        inbox = self.link.inbox
        out = list(inbox)
        inbox.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self.link.inbox)

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Application:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
