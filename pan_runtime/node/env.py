"""Environments: what one capsule runs in — its origin, status, resources and budget.

The node fills an environment before calling a runtime and clears it afterwards, whatever
happened; the origin is set by the node from the link the capsule came in on, never from
capsule bytes. Segments the code allocates or looks up are registered in the
environment's handle table and ring, and released together when the capsule finishes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pan_runtime.data.segments import Segment, SegmentRing

if TYPE_CHECKING:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.data.capsule import Capsule
    from pan_runtime.data.codeobj import CodeObject

__all__ = ["Budget", "Origin", "Status", "Environment", "Usage"]


@dataclass(frozen=True)
class Budget:
    """One budget shape for every runtime; each enforces what it can count."""

    time_ms: float = 50.0  # wall time per capsule (restricted_py: CPU time of the call's thread)
    steps: int = 200_000  # interpreter steps (restricted_py)
    fuel: int = 50_000_000  # instructions (wasm fuel) where counted
    memory_bytes: int = 16 << 20  # ceiling for a code object's memory (wasm linear memory, JVM and restricted_py per-call allocation)
    send_bytes: int = 4 << 20  # bytes a capsule may send or deliver
    segments: int = 256  # segments a capsule may allocate


class Origin(enum.IntEnum):
    NETWORK = 0
    APPLICATION = 1


class Status(enum.IntEnum):
    READY = 0
    WAITING = 1  # its code object is being fetched
    RUNNING = 2
    DONE = 3


@dataclass
class Usage:
    """What one call used, reported per call by the runtime where it can measure it."""

    steps: int = 0
    fuel: int = 0
    time_ns: int = 0


_RUNNING = Status.RUNNING
_DONE = Status.DONE


class Environment:
    """The per-capsule environment. ``handles[1]`` is always the capsule body."""

    BODY_HANDLE = 1

    __slots__ = (
        "code",
        "capsule",
        "body",
        "length",
        "handles",
        "ring",
        "origin_kind",
        "origin_link",
        "prev_hop",
        "budget",
        "status",
        "sent_bytes",
        "allocated",
        "usage",
        "extra",
    )

    def __init__(self) -> None:
        self.code: CodeObject | None = None
        self.capsule: Capsule | None = None
        self.body: Segment | None = None
        self.length = 0
        self.handles: list[Segment | None] = [None, None]
        self.ring = SegmentRing()
        self.origin_kind = Origin.NETWORK
        self.origin_link: Any = None
        self.prev_hop: NodeAddress | None = None
        self.budget = Budget()
        self.status = Status.READY
        self.sent_bytes = 0
        self.allocated = 0
        self.usage = Usage()
        self.extra: Any = None

    def setup(
        self,
        code: CodeObject,
        capsule: Capsule,
        origin_kind: Origin,
        origin_link: Any,
        prev_hop: NodeAddress | None,
        budget: Budget,
    ) -> Environment:
        self.code = code
        self.capsule = capsule
        body = capsule.body
        self.body = body
        self.length = body.length
        self.handles[1] = body
        self.origin_kind = origin_kind
        self.origin_link = origin_link
        self.prev_hop = prev_hop
        self.budget = budget
        self.status = _RUNNING
        self.sent_bytes = 0
        self.allocated = 0
        usage = self.usage
        usage.steps = usage.fuel = usage.time_ns = 0
        return self

    def register(self, seg: Segment) -> int:
        """Give ``seg`` (whose reference moves to the ring) a handle in this environment."""
        self.ring.add(seg)
        self.handles.append(seg)
        return len(self.handles) - 1

    def segment(self, handle: int) -> Segment | None:
        """The live segment behind ``handle``, or None."""
        if 0 < handle < len(self.handles):
            seg = self.handles[handle]
            if seg is not None and seg.refs > 0:
                return seg
        return None

    def clear(self) -> None:
        """Release everything the capsule's run held; the environment can be reused."""
        if self.ring._segs:
            self.ring.release_all()
        if len(self.handles) > 2:
            del self.handles[2:]
        self.handles[1] = None
        self.body = None
        self.capsule = None
        self.code = None
        self.origin_link = None
        self.prev_hop = None
        self.status = _DONE
        self.extra = None
