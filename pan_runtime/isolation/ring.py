"""A single-producer, single-consumer ring of records in shared memory.

The ring is a header (the producer's ``head`` and the consumer's released ``tail``, byte
counts that only grow) and a data area of ``size`` bytes (a power of two). A record is an
8-byte frame (payload length, kind) and its payload, padded to 8 bytes, never split: one that
would cross the end is preceded by a wrap frame (kind 0). The consumer reads at a private
cursor and releases up to it when it is done with what it read (a batch's bodies stay in the
ring, in place, until its verdicts are in), so ``tail`` moves only on ``release``.

The producer's header line also holds three u64 counters after ``head`` (``put_counters``):
the worker reports there how it ran its capsules, for the node's statistics.

Both sides map the same memfd; neither trusts the other's counters: a consumer that finds a
frame whose length runs past what was produced, or a producer that finds ``tail`` ahead of
``head``, raises ``WorkerError``. Ordering needs no fences beyond the eventfd system call
that follows every batch of writes (x86-64 stores are not reordered with each other).
"""

from __future__ import annotations

import struct

from pan_runtime.errors import WorkerError

__all__ = ["HEADER", "Ring"]

#: bytes of a ring's header (head and tail on their own cache lines)
HEADER = 128
_U64 = struct.Struct("<Q")
_FRAME = struct.Struct("<II")
_COUNTERS = struct.Struct("<QQQ")
_WRAP = 0


class Ring:
    """One direction of a channel over ``buf[offset : offset + HEADER + size]``."""

    def __init__(self, buf: memoryview, offset: int, size: int):
        if size < 4096 or size & (size - 1):
            raise ValueError(f"ring size {size} must be a power of two of at least 4096")
        self.buf = buf
        self.size = size
        self._head_at = offset
        self._tail_at = offset + 64
        self.data_at = offset + HEADER
        self._head = _U64.unpack_from(buf, self._head_at)[0]
        self._read = _U64.unpack_from(buf, self._tail_at)[0]
        #: the producer's own hold: it writes nothing at or past this position a ring later
        #: (None: no hold). The node holds a batch's bodies until it has read its verdicts,
        #: though the worker may have released them already.
        self.hold: int | None = None

    # -- producer --------------------------------------------------------------------
    def _tail(self) -> int:
        tail = _U64.unpack_from(self.buf, self._tail_at)[0]
        if tail > self._head or self._head - tail > self.size:
            raise WorkerError(f"ring tail {tail} is outside the produced range ..{self._head}")
        return tail

    def room(self) -> int:
        """Bytes the producer may still write (short of the consumer's tail and its own hold)."""
        tail = self._tail()
        if self.hold is not None and self.hold < tail:
            tail = self.hold
        return self.size - (self._head - tail)

    def reserve(self, kind: int, length: int) -> memoryview | None:
        """Room for a record of ``length`` payload bytes (None: the ring is full for now);
        write the payload into the view, then ``commit``."""
        need = 8 + ((length + 7) & ~7)
        if need > self.size // 2:
            raise WorkerError(f"a {length}-byte record does not fit a {self.size}-byte ring")
        pos = self._head % self.size
        pad = self.size - pos if pos + need > self.size else 0
        tail = self._tail()
        hold = self.hold
        if hold is not None and hold < tail:
            tail = hold
        if self._head + pad + need - tail > self.size:
            return None
        if pad:
            _FRAME.pack_into(self.buf, self.data_at + pos, pad - 8, _WRAP)
            self._head += pad
            pos = 0
        at = self.data_at + pos
        _FRAME.pack_into(self.buf, at, length, kind)
        self._pending = need
        return self.buf[at + 8 : at + 8 + length]

    @property
    def head(self) -> int:
        """What the producer has written so far (a position for ``hold``)."""
        return self._head

    def commit(self) -> None:
        self._head += self._pending
        _U64.pack_into(self.buf, self._head_at, self._head)

    def advance(self) -> int:
        """``commit`` in two steps, for a payload another writer (the C fast path) fills: the
        reserved record is counted as produced and the new head returned, which the writer
        stores at ``head_view`` once the payload is in (the consumer never sees it half
        written). This object stays the ring's only producer: it keeps the position."""
        self._head += self._pending
        return self._head

    @property
    def head_view(self) -> memoryview:
        """The shared head (8 bytes): where ``advance``'s writer publishes it."""
        return self.buf[self._head_at : self._head_at + 8]

    def put(self, kind: int, payload: bytes | memoryview) -> bool:
        view = self.reserve(kind, len(payload))
        if view is None:
            return False
        view[:] = payload
        self.commit()
        return True

    def put_counters(self, a: int, b: int, c: int) -> None:
        """Write the producer's three counters (the worker's, on its up ring)."""
        _COUNTERS.pack_into(self.buf, self._head_at + 8, a, b, c)

    def counters(self) -> tuple[int, int, int]:
        """The producer's three counters, as it last wrote them (numbers it claims, no more)."""
        return _COUNTERS.unpack_from(self.buf, self._head_at + 8)  # type: ignore[return-value]

    # -- consumer --------------------------------------------------------------------
    def get(self) -> tuple[int, memoryview, int] | None:
        """The next record (kind, payload view, its offset in the shared buffer) or None."""
        head = _U64.unpack_from(self.buf, self._head_at)[0]
        while self._read < head:
            if head - self._read > self.size:
                raise WorkerError(f"ring head {head} is more than a ring ahead of the reader at {self._read}")
            pos = self._read % self.size
            if pos + 8 > self.size:
                raise WorkerError(f"ring frame at {pos} crosses the end")
            length, kind = _FRAME.unpack_from(self.buf, self.data_at + pos)
            need = 8 + ((length + 7) & ~7)
            if pos + need > self.size or self._read + need > head:
                raise WorkerError(f"ring frame of {length} bytes at {pos} runs past what was written")
            self._read += need
            if kind == _WRAP:
                continue
            at = self.data_at + pos + 8
            return kind, self.buf[at : at + length], at
        return None

    def unread(self) -> int:
        """Bytes the producer has written that this reader has not read yet (frames included)."""
        return max(0, _U64.unpack_from(self.buf, self._head_at)[0] - self._read)

    def release(self) -> None:
        """Give the producer back everything read so far."""
        _U64.pack_into(self.buf, self._tail_at, self._read)

    # -- another reader or writer of this side: C code of the same process ----------
    @property
    def head_at(self) -> int:
        """Where the ring's header (its head; the tail 64 bytes on) lies in ``buf``."""
        return self._head_at

    @property
    def cursor(self) -> int:
        """The consumer's read position: where the next record's frame starts."""
        return self._read

    def adopt(self, head: int | None = None, read: int | None = None) -> None:
        """Take back the positions C code of this process moved while it held the ring (the
        node's fast-path worker lane, the worker's ``BatchLoop.serve``): the producer's head
        ``head``, already published, or the consumer's read cursor ``read``."""
        if head is not None:
            self._head = head
        if read is not None:
            self._read = read
