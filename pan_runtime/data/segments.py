"""Software segments: reference-counted views of bytes that move through a node without copies.

A segment names a region of bytes and carries a type, a reference count, a ``next`` link
for chains and a finalizer. Its bytes live in one of:

* a pooled buffer (``SegmentPool``): fixed-size slots of one anonymous mapping, whose C
  address is computed once, so runtimes hand code a pointer instead of a copy;
* an owned buffer (a ``bytearray`` the segment alone holds);
* an overlay of part of another segment (shares the bytes, holds a reference to it);
* a container of other segments (their bytes in order, e.g. a header plus a body).

A ``SegmentRing`` holds references for a capsule's environment or a code object and drops
them all at once. Chains (``next`` links) and containers both yield the buffer list that
``socket.sendmsg`` takes, so a capsule is sent without joining its pieces.
"""

from __future__ import annotations

import ctypes
import enum
import mmap
from collections.abc import Callable, Iterable, Iterator

from pan_runtime.errors import SegmentError

__all__ = ["SegType", "Segment", "SegmentPool", "SegmentRing", "chain", "gather"]


class SegType(enum.IntEnum):
    POOLED = 1
    OWNED = 2
    OVERLAY = 3
    CONTAINER = 4


Finalizer = Callable[["Segment"], None]
# module-level aliases: reading an enum member through its class costs more than the work
# it names on the per-capsule path
_POOLED = SegType.POOLED
_OWNED = SegType.OWNED
_OVERLAY = SegType.OVERLAY
_CONTAINER = SegType.CONTAINER


class Segment:
    """A region of bytes with a reference count; see the module docstring."""

    __slots__ = ("_view", "length", "type", "refs", "next", "finalizer", "address", "_parts", "_base", "__weakref__")

    def __init__(
        self,
        view: memoryview | None,
        seg_type: SegType,
        *,
        address: int | None = None,
        finalizer: Finalizer | None = None,
        parts: tuple[Segment, ...] = (),
        base: Segment | None = None,
    ):
        self._view = view
        self.type = seg_type
        self.refs = 1
        self.next: Segment | None = None
        self.finalizer = finalizer
        self.address = address
        self._parts = parts
        self._base = base
        self.length = len(view) if view is not None else sum(p.length for p in parts)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def owned(cls, data: bytes | bytearray | memoryview | int) -> Segment:
        """A segment over a new buffer: a copy of ``data``, or ``data`` zero bytes."""
        buf = bytearray(data) if not isinstance(data, int) else bytearray(data)
        return cls(memoryview(buf), SegType.OWNED)

    def overlay(self, offset: int, length: int | None = None) -> Segment:
        """A segment sharing ``length`` bytes of this one from ``offset``; keeps this one alive."""
        if self.refs <= 0:
            raise SegmentError("segment used after release")
        if length is None:
            length = self.length - offset
        if offset < 0 or length < 0 or offset + length > self.length:
            raise SegmentError(f"overlay [{offset}, {offset}+{length}) outside segment of {self.length} bytes")
        v = self._view
        if v is not None:
            # the per-capsule path: build the overlay without a keyword-argument constructor call
            self.refs += 1
            seg = _new_segment(Segment)
            seg._view = v[offset : offset + length]
            seg.type = _OVERLAY
            seg.refs = 1
            seg.next = None
            seg.finalizer = None
            seg.address = None if self.address is None else self.address + offset
            seg._parts = ()
            seg._base = self
            seg.length = length
            return seg
        # overlay of a container: a container of overlays of the parts it covers
        parts: list[Segment] = []
        pos = 0
        end = offset + length
        for p in self._parts:
            lo, hi = max(offset, pos), min(end, pos + p.length)
            if lo < hi:
                parts.append(p.overlay(lo - pos, hi - lo))
            pos += p.length
        return Segment(None, SegType.CONTAINER, parts=tuple(parts))

    @classmethod
    def container(cls, parts: Iterable[Segment]) -> Segment:
        """A segment whose bytes are those of ``parts`` in order; takes a reference to each."""
        ps = tuple(parts)
        for p in ps:
            p.retain()
        return cls(None, SegType.CONTAINER, parts=ps)

    # -- reference counting --------------------------------------------------------------
    def retain(self) -> Segment:
        self._check_live()
        self.refs += 1
        return self

    def release(self) -> None:
        """Drop one reference; at zero the finalizer runs and the bytes become unusable."""
        refs = self.refs
        if refs > 1:
            self.refs = refs - 1
            return
        if refs <= 0:
            raise SegmentError("segment released more often than it was retained")
        self.refs = 0
        view = self._view
        self._view = None
        if view is not None and self.type is not _POOLED:
            view.release()
        fin = self.finalizer
        if fin is not None:
            self.finalizer = None
            fin(self)
        base = self._base
        if base is not None:
            self._base = None
            base.release()
        if self._parts:
            parts, self._parts = self._parts, ()
            for p in parts:
                p.release()

    def pooled_buffers(self) -> int:
        """How many pool buffers a reference to this segment keeps alive: its own, the one it
        overlays, those of the parts it contains (a buffer reached twice counts twice)."""
        if self.type is _POOLED:
            return 1
        base = self._base
        if base is not None:
            return base.pooled_buffers()
        return sum(p.pooled_buffers() for p in self._parts)

    @property
    def live(self) -> bool:
        return self.refs > 0

    def _check_live(self) -> None:
        if self.refs <= 0:
            raise SegmentError("segment used after release")

    # -- bytes -------------------------------------------------------------------------
    @property
    def contiguous(self) -> bool:
        return self._view is not None

    def view(self) -> memoryview:
        """The segment's bytes as one writable memoryview (contiguous segments only)."""
        v = self._view
        if v is None:
            self._check_live()
            raise SegmentError("a container segment has no single view; use buffers() or gather()")
        return v

    def buffers(self) -> list[memoryview]:
        """This segment's own bytes as a list of views (a container expands to its parts)."""
        self._check_live()
        if self._view is not None:
            return [self._view]
        out: list[memoryview] = []
        for p in self._parts:
            out.extend(p.buffers())
        return out

    def read_into(self, offset: int, dst: memoryview) -> None:
        """Copy ``len(dst)`` bytes from ``offset``; the caller checked the bounds."""
        v = self._view
        n = len(dst)
        if v is not None:
            dst[:] = v[offset : offset + n]
            return
        pos = 0
        for b in self.buffers():
            blen = len(b)
            if offset < pos + blen and n:
                lo = offset - pos if offset > pos else 0
                take = min(blen - lo, n)
                start = len(dst) - n
                dst[start : start + take] = b[lo : lo + take]
                n -= take
                offset += take
            pos += blen
            if not n:
                break

    def write_from(self, offset: int, src: bytes | bytearray | memoryview) -> None:
        """Copy ``src`` in at ``offset``; the caller checked the bounds."""
        v = self._view
        n = len(src)
        if v is not None:
            v[offset : offset + n] = src
            return
        src = memoryview(src).cast("B")
        done = 0
        pos = 0
        for b in self.buffers():
            blen = len(b)
            if offset < pos + blen and done < n:
                lo = offset - pos if offset > pos else 0
                take = min(blen - lo, n - done)
                b[lo : lo + take] = src[done : done + take]
                done += take
                offset += take
            pos += blen
            if done >= n:
                break

    def tobytes(self) -> bytes:
        """A copy of the segment's bytes (not of its chain)."""
        if self._view is not None:
            return self._view.tobytes()
        return b"".join(b.tobytes() for b in self.buffers())

    # -- chains --------------------------------------------------------------------------
    def iter_chain(self) -> Iterator[Segment]:
        seg: Segment | None = self
        while seg is not None:
            yield seg
            seg = seg.next

    def chain_length(self) -> int:
        return sum(s.length for s in self.iter_chain())

    def chain_buffers(self) -> list[memoryview]:
        """The whole chain as the buffer list ``socket.sendmsg`` takes."""
        out: list[memoryview] = []
        for s in self.iter_chain():
            out.extend(s.buffers())
        return out

    def release_chain(self) -> None:
        """Release every segment of the chain starting here."""
        seg: Segment | None = self
        while seg is not None:
            nxt = seg.next
            seg.next = None
            seg.release()
            seg = nxt

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        state = f"refs={self.refs}" if self.refs > 0 else "released"
        return f"<Segment {self.type.name.lower()} {self.length}B {state}>"


_new_segment = object.__new__


def chain(segments: Iterable[Segment]) -> Segment:
    """Link segments through ``next`` (no copy) and return the head."""
    segs = list(segments)
    if not segs:
        raise SegmentError("cannot chain zero segments")
    for a, b in zip(segs, segs[1:], strict=False):
        a.next = b
    segs[-1].next = None
    return segs[0]


def gather(buffers: Iterable[memoryview]) -> bytes:
    """Join views into one ``bytes`` (the copy zero-copy paths avoid; for tests and slow paths)."""
    return b"".join(bytes(b) for b in buffers)


class SegmentPool:
    """Fixed-size buffers carved from one anonymous mapping, recycled without allocation.

    The mapping never moves, so the C address of every slot is computed once; a runtime
    that hands code a pointer reads ``Segment.address``.
    """

    def __init__(self, buffer_size: int = 2048, count: int = 256):
        if buffer_size <= 0 or count <= 0:
            raise SegmentError("a segment pool needs a positive buffer size and count")
        self.buffer_size = buffer_size
        self.count = count
        self._map = mmap.mmap(-1, buffer_size * count)
        self._whole = memoryview(self._map)
        anchor = ctypes.c_char.from_buffer(self._map)
        self.base_address = ctypes.addressof(anchor)
        del anchor
        self._slots = [self._whole[i * buffer_size : (i + 1) * buffer_size] for i in range(count)]
        self._free = list(range(count - 1, -1, -1))
        # one finalizer per slot, made once: giving a buffer back allocates nothing
        self._finalizers = [self._finalizer_for(i) for i in range(count)]
        self._closed = False

    @property
    def available(self) -> int:
        return len(self._free)

    @property
    def whole(self) -> bool:
        """True when every buffer is back in the pool."""
        return len(self._free) == self.count

    def slot_view(self, index: int) -> memoryview:
        """The full buffer of slot ``index`` (for receiving into before a segment is made)."""
        return self._slots[index]

    # The slot API: a reader (the UDP transport, the fast path) takes a slot, receives into
    # it (``slot_view``, or C at ``base_address`` + index × ``buffer_size``), then makes it a segment or gives it back.
    def take_slot(self) -> int:
        """A free slot's index; ``SegmentError`` when every buffer is in use."""
        if not self._free:
            raise SegmentError(f"segment pool exhausted: all {self.count} buffers in use")
        return self._free.pop()

    def try_take_slot(self) -> int:
        """A free slot's index, or -1 when every buffer is in use."""
        free = self._free
        return free.pop() if free else -1

    def take_slots(self, most: int) -> list[int]:
        """Up to ``most`` free slots' indices at once (fewer, or none, when fewer are free)."""
        free = self._free
        if most <= 0 or not free:
            return []
        taken = free[-most:]
        del free[-most:]
        return taken

    def give_slots(self, indices: list[int]) -> None:
        """Return slots taken with ``take_slots`` (or ``take_slot``) that did not become segments."""
        if indices and (min(indices) < 0 or max(indices) >= self.count):
            bad = next(i for i in indices if not 0 <= i < self.count)
            raise SegmentError(f"slot {bad} is outside the pool's {self.count} slots")
        self._free.extend(indices)

    def give_slot(self, index: int) -> None:
        """Return a slot taken with ``take_slot`` that did not become a segment."""
        if not 0 <= index < self.count:
            raise SegmentError(f"slot {index} is outside the pool's {self.count} slots")
        self._free.append(index)

    def segment_for_slot(self, index: int, length: int) -> Segment:
        """Wrap ``length`` bytes of an already taken slot as a pooled segment."""
        seg = _new_segment(Segment)
        seg._view = self._slots[index][:length]
        seg.type = _POOLED
        seg.refs = 1
        seg.next = None
        seg.finalizer = self._finalizers[index]
        seg.address = self.base_address + index * self.buffer_size
        seg._parts = ()
        seg._base = None
        seg.length = length
        return seg

    def allocate(self, length: int | None = None) -> Segment:
        """A pooled segment of ``length`` bytes (default: the whole buffer)."""
        if length is None:
            length = self.buffer_size
        if not 0 <= length <= self.buffer_size:
            raise SegmentError(f"cannot allocate {length} bytes from a pool of {self.buffer_size}-byte buffers")
        return self.segment_for_slot(self.take_slot(), length)

    def _finalizer_for(self, index: int) -> Finalizer:
        free = self._free

        def back(_seg: Segment) -> None:
            free.append(index)

        return back

    def close(self) -> None:
        if self._closed:
            return
        if not self.whole:
            raise SegmentError(f"closing a segment pool with {self.count - len(self._free)} buffers in use")
        for s in self._slots:
            s.release()
        self._whole.release()
        try:
            self._map.close()
        except BufferError:
            raise SegmentError(
                "closing a segment pool while memoryviews of its buffers are still held; drop them first"
            ) from None
        self._closed = True

    def __enter__(self) -> SegmentPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SegmentRing:
    """References held for one environment or code object, dropped together by ``release_all``."""

    __slots__ = ("_segs",)

    def __init__(self) -> None:
        self._segs: list[Segment] = []

    def add(self, seg: Segment) -> Segment:
        """Track a reference this ring now owns (the caller's reference moves into the ring)."""
        self._segs.append(seg)
        return seg

    def keep(self, seg: Segment) -> Segment:
        """Take an extra reference to ``seg`` and track it."""
        self._segs.append(seg.retain())
        return seg

    def __len__(self) -> int:
        return len(self._segs)

    def remove(self, seg: Segment) -> bool:
        """Release the ring's reference to ``seg`` early; False if the ring holds none."""
        for i, s in enumerate(self._segs):
            if s is seg:
                del self._segs[i]
                seg.release()
                return True
        return False

    def release_all(self) -> None:
        segs, self._segs = self._segs, []
        for s in segs:
            if s.refs > 0:
                s.release()
