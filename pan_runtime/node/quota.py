"""Receive buffers held by code objects: a quota per code object and a reserve the node keeps.

A pool buffer (``SegmentPool``) is used either for a moment — a datagram read, queued and
evaluated — or past the call of the code object that caused it: a capsule the code sent to
this node waits in the queue, a segment the code object keeps (``CodeBuffers.keep``). Soft
state holds no pool buffer at all: the host copies what code keeps there into memory of its
own (``PniServer.state_put_seg``), where it counts against the soft-state byte bounds.

The second kind is what lets code hostile to the node starve it, so ``BufferQuota`` admits
each such buffer under two bounds: the code object holds fewer than ``per_code`` buffers,
and more than ``reserve`` buffers stay free. Code objects together therefore never hold
more than ``count - reserve`` buffers, and the receive paths (the Python reader and the
compiled fast path, which take a slot per datagram and give it back when it is evaluated)
always find the reserve for demand loading, system capsules and other code. A refusal is a
PNI status for the code (``NO_SPACE``), and the node counts it with its ``Refusal`` reason
(``Node.count_refusal``: on the node and on the code object).
"""

from __future__ import annotations

import enum

from pan_runtime.data.segments import Segment, SegmentPool

__all__ = ["BufferQuota", "CodeBuffers", "Refusal"]


class Refusal(enum.StrEnum):
    """Why the node refused code a resource (counted in ``NodeStats.refused`` and per code)."""

    #: the code object holds its quota of pool buffers (``limits.code_buffers``)
    CODE_BUFFERS = "code_buffers"
    #: only the reserve of the pool is free (``limits.pool_reserve``)
    POOL_RESERVE = "pool_reserve"
    #: a soft-state value larger than the code object's soft-state bound (``limits.state_bytes``)
    STATE_BYTES = "state_bytes"


class CodeBuffers:
    """The pool buffers one code object holds past its calls, and the segments it keeps."""

    __slots__ = ("held", "_kept")

    def __init__(self) -> None:
        #: pool buffers held now (queued sends and kept segments)
        self.held = 0
        self._kept: list[tuple[Segment, int]] = []

    def __len__(self) -> int:
        """How many segments are kept."""
        return len(self._kept)

    def release_all(self) -> None:
        """Drop every kept segment (the code object is unloaded)."""
        kept, self._kept = self._kept, []
        for seg, n in kept:
            self.held -= n
            if seg.live:
                seg.release()


class BufferQuota:
    """Admits pool buffers that code objects hold past their calls; see the module docstring."""

    def __init__(self, pool: SegmentPool, per_code: int, reserve: int):
        if per_code < 0 or not 0 <= reserve < pool.count:
            raise ValueError(f"a buffer quota of {per_code} with a reserve of {reserve} of {pool.count} buffers")
        self.pool = pool
        self.per_code = per_code
        self.reserve = reserve

    def _refusal(self, holder: CodeBuffers, n: int, take: int) -> Refusal | None:
        """Why ``holder`` may not hold ``n`` more buffers, ``take`` of them from the free list."""
        if holder.held + n > self.per_code:
            return Refusal.CODE_BUFFERS
        if self.pool.available - take < self.reserve:
            return Refusal.POOL_RESERVE
        return None

    def allocate(self, holder: CodeBuffers, length: int) -> Segment | Refusal:
        """A pool segment of ``length`` bytes that ``holder`` holds until it is released, or
        the reason it may not."""
        why = self._refusal(holder, 1, 1)
        if why is not None:
            return why
        seg = self.pool.allocate(length)
        give_back = seg.finalizer
        assert give_back is not None
        holder.held += 1

        def back(s: Segment) -> None:
            holder.held -= 1
            give_back(s)

        seg.finalizer = back
        return seg

    def keep(self, holder: CodeBuffers, seg: Segment) -> Refusal | None:
        """Let ``holder`` keep a reference to ``seg`` until its ``release_all``; the pool buffers
        ``seg`` keeps alive count against the quota. None when kept, else the reason."""
        n = seg.pooled_buffers()
        why = self._refusal(holder, n, 0) if n else None  # its buffers are in use already
        if why is not None:
            return why
        holder._kept.append((seg.retain(), n))
        holder.held += n
        return None
