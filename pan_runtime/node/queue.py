"""The node's input queue: capsules waiting for dispatch, bounded, each in a segment.

Links hand it datagrams (``receive_buffers``, copied into the node's pool) or segments they
filled themselves (``receive_segment``); applications inject capsules (``inject``); the demand
loader puts a parked capsule back at the front (``requeue``). What does not fit is dropped and
counted on the node: ``queue_full``, ``too_big`` (larger than a pool buffer),
``pool_exhausted``, and ``neighbour_throttled`` for a datagram of a neighbour the ledger
throttles now (``node/ledger.py``), refused before anything else is spent on it. Dispatch pops from ``items`` itself: it is the hot path and pays no
call per capsule for the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.segments import Segment, SegmentPool
from pan_runtime.data.wire import HEADER_SIZE, NAME_OFFSET, NAME_SIZE
from pan_runtime.errors import PanError
from pan_runtime.node.env import Origin
from pan_runtime.node.ledger import THROTTLED, Ledger
from pan_runtime.node.links import AppLink
from pan_runtime.node.stats import NodeStats

__all__ = ["CapsuleQueue", "Queued"]

_NETWORK = Origin.NETWORK
_APPLICATION = Origin.APPLICATION
_NAME = slice(NAME_OFFSET, NAME_OFFSET + NAME_SIZE)


class Queued:
    """A capsule waiting for dispatch: its wire segment and where it came from."""

    __slots__ = ("seg", "origin", "link", "prev_hop")

    def __init__(self, seg: Segment, origin: Origin, link: Any, prev_hop: NodeAddress | None):
        self.seg = seg
        self.origin = origin
        self.link = link
        self.prev_hop = prev_hop


class CapsuleQueue:
    """A bounded FIFO of ``Queued`` capsules; counts what it takes in on ``stats`` and reports
    what it refuses to ``count_drop(reason, detail)``."""

    __slots__ = ("items", "limit", "pool", "stats", "count_drop", "ledger")

    def __init__(
        self,
        pool: SegmentPool,
        limit: int,
        stats: NodeStats,
        count_drop: Callable[[str, str], None],
        ledger: Ledger | None = None,
    ):
        #: the waiting capsules, oldest first (the node's dispatch pops them directly)
        self.items: deque[Queued] = deque()
        self.limit = limit
        self.pool = pool
        self.stats = stats
        self.count_drop = count_drop
        self.ledger = ledger

    def _throttled(self, prev_hop: NodeAddress | None) -> bool:
        """True (and the drop counted) when ``prev_hop`` is a neighbour throttled now."""
        ledger = self.ledger
        if ledger is None or not ledger.blocked or not ledger.throttled(prev_hop):
            return False
        assert prev_hop is not None
        ledger.count_drop(prev_hop, THROTTLED)
        self.count_drop(THROTTLED, str(prev_hop))
        return True

    def refused(self, item: Queued) -> bool:
        """True (the capsule released, the drop counted) when ``item`` came from a neighbour
        throttled since it was queued; dispatch asks before parsing it."""
        if item.origin is not _NETWORK or not self._throttled(item.prev_hop):
            return False
        item.seg.release()
        return True

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Queued]:
        return iter(self.items)

    def receive_buffers(self, buffers: Iterable[memoryview], prev_hop: NodeAddress | None, link: Any = None) -> bool:
        """Queue a datagram from a neighbour (copied into the pool); False if dropped."""
        self.stats.received += 1
        if self._throttled(prev_hop):
            return False
        if len(self.items) >= self.limit:
            self.count_drop("queue_full", "")
            return False
        pool = self.pool
        if len(buffers) == 1:  # type: ignore[arg-type]
            (only,) = buffers
            total = len(only)
        else:
            total = 0
            for b in buffers:
                total += len(b)
        if total > pool.buffer_size:
            self.count_drop("too_big", f"{total} bytes > pool buffer {pool.buffer_size}")
            return False
        try:
            slot = pool.take_slot()
        except PanError:
            self.count_drop("pool_exhausted", "")
            return False
        dst = pool.slot_view(slot)
        pos = 0
        for b in buffers:
            n = len(b)
            dst[pos : pos + n] = b
            pos += n
        self.items.append(Queued(pool.segment_for_slot(slot, total), _NETWORK, link, prev_hop))
        return True

    def receive_segment(self, seg: Segment, prev_hop: NodeAddress | None, link: Any = None) -> bool:
        """Queue a received segment (its reference moves to the queue); False if dropped."""
        self.stats.received += 1
        if self._throttled(prev_hop):
            seg.release()
            return False
        if len(self.items) >= self.limit:
            seg.release()
            self.count_drop("queue_full", "")
            return False
        self.items.append(Queued(seg, _NETWORK, link, prev_hop))
        return True

    def inject(self, data: bytes | bytearray | memoryview, app: AppLink) -> bool:
        """Queue a capsule application link ``app`` injected (copied); False if dropped."""
        self.stats.injected += 1
        if len(self.items) >= self.limit:
            self.count_drop("queue_full", "")
            return False
        n = len(data)
        if n <= self.pool.buffer_size:
            try:
                seg = self.pool.allocate(n)
            except PanError:
                self.count_drop("pool_exhausted", "")
                return False
            seg.view()[:] = data
        else:
            seg = Segment.owned(data)
        self.items.append(Queued(seg, _APPLICATION, app, None))
        return True

    def requeue(self, capsule: Capsule, item: Queued) -> None:
        """Put a parked capsule back at the front, as ``item`` queued it (the capsule is released,
        its wire segment kept)."""
        wire = capsule.wire
        assert wire is not None
        wire.retain()
        capsule.release()
        self.items.appendleft(Queued(wire, item.origin, item.link, item.prev_hop))

    def pop_run(self, first: Queued, most: int) -> list[Queued] | None:
        """``first`` (just popped) and the capsules of its code object queued right behind it,
        popped, at most ``most`` in all: a batch; None when none of its code object follows."""
        if first.seg.length < HEADER_SIZE:
            return None
        name = bytes(first.seg.view()[_NAME])
        items = self.items
        run = [first]
        while items and len(run) < most and items[0].seg.length >= HEADER_SIZE and items[0].seg.view()[_NAME] == name:
            run.append(items.popleft())
        return run if len(run) > 1 else None

    def clear(self) -> None:
        """Drop every waiting capsule, releasing its segment."""
        items = self.items
        while items:
            items.popleft().seg.release()
