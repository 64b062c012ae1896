"""Links: how capsules leave a node. Netlinks reach neighbour nodes; application links reach
applications attached to the node.

A node never does I/O itself: it hands a capsule's buffer list to a link. The in-process
links here copy the bytes into the receiving node's pool (as a wire would) and queue them;
UDP netlinks and UNIX-socket application links implement the same interfaces.
"""

from __future__ import annotations

import abc
import heapq
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.errreport import ErrorReport
from pan_runtime.data.wire import NAME_OFFSET, NAME_SIZE
from pan_runtime.errors import ClosedError, LinkError

if TYPE_CHECKING:
    from pan_runtime.node.node import Node

__all__ = ["NetLink", "InprocLink", "AppLink", "Delivery", "Scheduler"]


class NetLink(abc.ABC):
    """A link from one node to one or more neighbours."""

    #: largest capsule (header + body) the link carries
    mtu: int = 65507

    @abc.abstractmethod
    def send(self, buffers: list[memoryview], next_hop: NodeAddress) -> bool:
        """Send one capsule; False when it was lost (counted by the caller)."""

    def close(self) -> None:
        """Release the link's resources."""


class Scheduler:
    """A time-ordered queue of callbacks for in-process delay, driven by the network's clock."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when_ns: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._items, (when_ns, self._seq, fn))

    def due(self, now_ns: int) -> int:
        n = 0
        while self._items and self._items[0][0] <= now_ns:
            _, _, fn = heapq.heappop(self._items)
            fn()
            n += 1
        return n

    def next_time(self) -> int | None:
        return self._items[0][0] if self._items else None

    def __len__(self) -> int:
        return len(self._items)


class InprocLink(NetLink):
    """One direction of an in-process wire from ``src`` to ``dst`` (optional loss and delay)."""

    def __init__(
        self,
        src: Node,
        dst: Node,
        *,
        mtu: int = 65507,
        loss: float = 0.0,
        delay_ns: int = 0,
        scheduler: Scheduler | None = None,
        rng: random.Random | None = None,
    ):
        if not 0.0 <= loss < 1.0:
            raise LinkError(f"loss rate {loss} outside [0, 1)")
        if delay_ns and scheduler is None:
            raise LinkError("a delayed in-process link needs a scheduler")
        self.src = src
        self.dst = dst
        self.mtu = mtu
        self.loss = loss
        self.delay_ns = delay_ns
        self.scheduler = scheduler
        self.rng = rng or random.Random(0)
        self.sent = 0
        self.lost = 0

    def send(self, buffers: list[memoryview], next_hop: NodeAddress) -> bool:
        self.sent += 1
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            return False
        if self.delay_ns:
            data = b"".join(bytes(b) for b in buffers)
            assert self.scheduler is not None
            self.scheduler.at(
                self.src.now_ns() + self.delay_ns,
                lambda: self.dst.queue.receive_buffers([memoryview(data)], self.src.address),
            )
            return True
        return self.dst.queue.receive_buffers(buffers, self.src.address)


@dataclass(frozen=True)
class Delivery:
    """Data a code object delivered to an application."""

    port: int
    data: bytes
    code: bytes  # name of the code object that delivered it


class AppLink:
    """A node's end of one attached application; dies with the application.

    Code never sees this object: it sees a per-code-object token the node issues for it.
    ``uid`` and ``pid`` name the application's process (the peer's credentials of a UNIX socket;
    this process for an application in it): ports and pins belong to the link, and a root
    ``uid`` may override another link's (``node/ports.py``).
    """

    def __init__(
        self,
        node: Node,
        name: str = "app",
        sink: Callable[[Delivery], None] | None = None,
        *,
        uid: int | None = None,
        pid: int | None = None,
    ):
        self.node = node
        self.name = name
        self.uid = os.geteuid() if uid is None else uid
        self.pid = os.getpid() if pid is None else pid
        #: deliveries, and error reports when no ``report_sink`` takes them
        self.inbox: deque[Delivery | ErrorReport] = deque()
        self.sink = sink
        self.closed = False
        self.delivered = 0
        #: names of the code objects whose capsules this application sent lately (at most
        #: ``SENT_CODES``, oldest forgotten first): error reports about them come here
        self.sent_codes: dict[bytes, None] = {}
        #: called with each ``ErrorReport`` for this application (default: kept in ``inbox``)
        self.report_sink: Callable[[ErrorReport], None] | None = None
        self.reports = 0

    #: code objects an application link remembers having sent capsules of
    SENT_CODES = 64

    def note_sent(self, capsule: bytes | bytearray | memoryview) -> None:
        """Remember the code object a capsule this application injects names."""
        name = bytes(capsule[NAME_OFFSET : NAME_OFFSET + NAME_SIZE])
        sent = self.sent_codes
        if name not in sent:
            if len(sent) >= self.SENT_CODES:
                del sent[next(iter(sent))]
            sent[name] = None

    def report(self, report: ErrorReport) -> bool:
        """Hand the application an error report about a capsule it sent; False if closed."""
        if self.closed:
            return False
        self.reports += 1
        if self.report_sink is not None:
            self.report_sink(report)
        else:
            self.inbox.append(report)
        return True

    def deliver(self, delivery: Delivery) -> bool:
        if self.closed:
            return False
        self.delivered += 1
        if self.sink is not None:
            self.sink(delivery)
        else:
            self.inbox.append(delivery)
        return True

    def check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"application link {self.name!r} is closed")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.detach(self)

    def __repr__(self) -> str:
        return f"<AppLink {self.name} {'closed' if self.closed else 'open'}>"
