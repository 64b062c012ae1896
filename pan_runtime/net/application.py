"""The application library, in-process form: attach to a node, install code, bind ports,
inject capsules and receive what code delivers.

The same calls are carried over UNIX sockets by the network application link; an
application reaches data only through deliveries made on its own link.
"""

from __future__ import annotations

from collections import deque

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT, encode_header
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.errreport import ErrorReport
from pan_runtime.errors import CodeObjectError
from pan_runtime.node.cache import CacheEntry
from pan_runtime.node.links import Delivery
from pan_runtime.node.node import Node
from pan_runtime.node.ports import PORTMAP_BIND, PORTMAP_UNBIND
from pan_runtime.node.trust import CodeOrigin

__all__ = ["Application", "capsule_bytes", "PORTMAP_BIND", "PORTMAP_UNBIND"]


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
        self._reports: deque[ErrorReport] = deque(maxlen=1024)

    @property
    def address(self) -> NodeAddress:
        return self.node.address

    def install(self, code: CodeObject, *, pin: bool = False) -> CacheEntry:
        """Install a code object on the node as a local application (trusted as local origin);
        a pin is this application's, until it closes."""
        self.link.check_open()
        return self.node.install(code, origin=CodeOrigin.LOCAL, pin=pin, owner=self.link)

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

    def bind(self, port: int, portmapper: CodeObject | bytes | None = None, *, force: bool = False) -> bool:
        """Ask the node's portmapper to deliver capsules for ``port`` to this application, until
        it unbinds or closes. ``OwnershipError`` if another application holds the port (``force``:
        take it anyway, for a root process only)."""
        self._check_portmapper(portmapper)
        self.node.bind_port(self.link, port, force=force)
        return True

    def unbind(self, port: int, portmapper: CodeObject | bytes | None = None, *, force: bool = False) -> bool:
        self._check_portmapper(portmapper)
        self.node.unbind_port(self.link, port, force=force)
        return True

    def _check_portmapper(self, portmapper: CodeObject | bytes | None) -> None:
        if portmapper is None:
            return
        name = portmapper.name if isinstance(portmapper, CodeObject) else bytes(portmapper)
        if name != self.node.portmapper:
            raise CodeObjectError(f"{name.hex()[:12]} is not this node's portmapper; call node.use_portmapper() first")

    def receive(self, *, reports: bool = False) -> Delivery | ErrorReport | None:
        """The oldest delivery not yet taken, or None. ``reports``: an error report about a
        capsule this application sent is returned too when it comes first (else kept for
        ``errors()``)."""
        inbox = self.link.inbox
        while inbox:
            got = inbox.popleft()
            if reports or type(got) is Delivery:
                return got
            self._reports.append(got)  # type: ignore[arg-type]
        return None

    def deliveries(self) -> list[Delivery]:
        """Every delivery not yet taken, oldest first (error reports are kept for ``errors()``)."""
        inbox = self.link.inbox
        out = [d for d in inbox if type(d) is Delivery]
        self._reports.extend(d for d in inbox if type(d) is ErrorReport)
        inbox.clear()
        return out  # type: ignore[return-value]

    def errors(self) -> list[ErrorReport]:
        """Every error report not yet taken: capsules this application sent that a node dropped
        (the node needs an ``ErrorReporter``, as ``pan node`` has)."""
        inbox = self.link.inbox
        kept = [d for d in inbox if type(d) is Delivery]
        self._reports.extend(d for d in inbox if type(d) is ErrorReport)  # type: ignore[misc]
        inbox.clear()
        inbox.extend(kept)
        out = list(self._reports)
        self._reports.clear()
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
