"""Soft state: per-code-object storage that capsules may use but never rely on.

Each code object's ``SoftState`` is bounded in entries and bytes, evicting its least recently
used entries first and expired entries whenever it is touched. All of a node's soft state
shares one ``SoftStateStore``, bounded in bytes in all: when it is full, the code object
holding the most bytes gives up its least recently used entries, so no code object takes the
store from the others (and one that holds the most makes room from its own). Bytes count
key, value and ``ENTRY_OVERHEAD``, so many tiny entries cost what they take.

Values are bytes or segments. The node's host stores a segment only as a copy in memory of
its own (``PniServer.state_put_seg``): soft state never holds a receive buffer of the pool.
A code object's state vanishes with it (``clear``).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable

from pan_runtime.data.segments import Segment

__all__ = ["ENTRY_OVERHEAD", "SoftState", "SoftStateStore"]

Value = bytes | Segment

#: bytes an entry costs beyond its key and value (its place in the tables, its deadline)
ENTRY_OVERHEAD = 64


class SoftStateStore:
    """The node-wide bound on soft-state bytes, shared by every code object's ``SoftState``.

    The largest holder is found through a heap of (bytes, holder) noted whenever a holder
    grows: a holder's newest note is at least what it holds, so the top note, once checked
    against what its holder holds now, names the largest in O(log n) per eviction however
    many code objects hold state (stale notes are dropped or renewed as they surface).
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self.bytes_used = 0
        #: entries dropped from a code object's state because the node's store was full
        self.evictions = 0
        self._holders: dict[SoftState, None] = {}  # those holding any bytes
        self._heap: list[tuple[int, int, SoftState]] = []  # (-bytes noted, tie-breaker, holder)
        self._seq = 0

    def _add(self, state: SoftState, n: int) -> None:
        self.bytes_used += n
        if state.bytes_used:
            self._holders[state] = None
            if n > 0:
                self._note(state)
        else:
            self._holders.pop(state, None)

    def _note(self, state: SoftState) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (-state.bytes_used, self._seq, state))
        if len(self._heap) > 4 * len(self._holders) + 64:  # mostly stale notes: start afresh
            self._heap = [(-st.bytes_used, i, st) for i, st in enumerate(self._holders)]
            heapq.heapify(self._heap)

    def _largest(self, putter: SoftState) -> SoftState | None:
        """The holder with the most bytes (``putter`` among equals), or None."""
        heap = self._heap
        while heap:
            noted, _, state = heap[0]
            if -noted == state.bytes_used:
                return putter if putter.bytes_used == state.bytes_used else state
            heapq.heappop(heap)
            if 0 < state.bytes_used < -noted:  # shrank since: its note may be its newest
                self._seq += 1
                heapq.heappush(heap, (-state.bytes_used, self._seq, state))
        return None

    def make_room(self, need: int, putter: SoftState) -> bool:
        """Evict until ``need`` more bytes of ``putter`` fit, each time from the code object
        holding the most (``putter`` itself among equals); False if ``need`` exceeds the store."""
        if need > self.max_bytes:
            return False
        while self.bytes_used + need > self.max_bytes:
            largest = self._largest(putter)
            if largest is None:
                break
            largest.evict_oldest()
            self.evictions += 1
        return self.bytes_used + need <= self.max_bytes


class SoftState:
    """LRU + TTL bounded key-value store owned by one code object."""

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 4 << 20,
        default_ttl_ms: int = 60_000,
        clock: Callable[[], int] = time.monotonic_ns,
        store: SoftStateStore | None = None,
    ):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl_ms = default_ttl_ms
        self._clock = clock
        self._store = store
        self._data: OrderedDict[bytes, tuple[Value, int]] = OrderedDict()
        self.bytes_used = 0
        self.evictions = 0
        self.expirations = 0

    @staticmethod
    def size(key_length: int, value_length: int) -> int:
        """What an entry of that key and value counts against the bounds, in bytes."""
        return key_length + value_length + ENTRY_OVERHEAD

    @staticmethod
    def _size(key: bytes, value: Value) -> int:
        return len(key) + (value.chain_length() if isinstance(value, Segment) else len(value)) + ENTRY_OVERHEAD

    def fits(self, key_length: int, value_length: int) -> bool:
        """Whether an entry of that size can be stored at all (after evicting others)."""
        size = self.size(key_length, value_length)
        return size <= self.max_bytes and (self._store is None or size <= self._store.max_bytes)

    def __len__(self) -> int:
        return len(self._data)

    def _drop(self, key: bytes) -> None:
        value, _ = self._data.pop(key)
        size = self._size(key, value)
        self.bytes_used -= size
        if self._store is not None:
            self._store._add(self, -size)
        if isinstance(value, Segment) and value.live:
            value.release()

    def evict_oldest(self) -> None:
        """Drop the least recently used entry (the node's store is full)."""
        if self._data:
            self._drop(next(iter(self._data)))
            self.evictions += 1

    def get(self, key: bytes) -> Value | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, deadline = item
        if deadline and self._clock() >= deadline:
            self._drop(key)
            self.expirations += 1
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: bytes, value: Value, ttl_ms: int = 0) -> bool:
        """Store ``value`` (a segment's reference moves in, kept as it is); False if it can never fit."""
        key = bytes(key)
        size = self._size(key, value)
        if size > self.max_bytes:
            return False
        if key in self._data:
            self._drop(key)
        self.expire()
        while self._data and (len(self._data) >= self.max_entries or self.bytes_used + size > self.max_bytes):
            self.evict_oldest()
        store = self._store
        if store is not None and not store.make_room(size, self):
            return False
        ttl = ttl_ms or self.default_ttl_ms
        self._data[key] = (value, self._clock() + ttl * 1_000_000 if ttl else 0)
        self.bytes_used += size
        if store is not None:
            store._add(self, size)
        return True

    def delete(self, key: bytes) -> bool:
        if bytes(key) not in self._data:
            return False
        self._drop(bytes(key))
        return True

    def peek_items(self, max_entries: int, max_bytes: int) -> tuple[list[tuple[bytes, bytes, int]], bool]:
        """Live entries, least recently used first, as (key, value, ms left; 0: no TTL), for
        a person to look at: neither the order nor expiry is touched. Stops before passing
        ``max_entries`` entries or ``max_bytes`` bytes of keys and values; the flag says
        whether it stopped early."""
        now = self._clock()
        out: list[tuple[bytes, bytes, int]] = []
        used = 0
        for key, (value, deadline) in self._data.items():
            if deadline and now >= deadline:
                continue
            n = len(key) + (value.chain_length() if isinstance(value, Segment) else len(value))
            if len(out) >= max_entries or used + n > max_bytes:
                return out, True
            data = b"".join(bytes(b) for b in value.chain_buffers()) if isinstance(value, Segment) else bytes(value)
            out.append((key, data, (deadline - now + 999_999) // 1_000_000 if deadline else 0))
            used += n
        return out, False

    def expire(self) -> int:
        """Drop expired entries; returns how many."""
        now = self._clock()
        dead = [k for k, (_, d) in self._data.items() if d and now >= d]
        for k in dead:
            self._drop(k)
        self.expirations += len(dead)
        return len(dead)

    def clear(self) -> None:
        for k in list(self._data):
            self._drop(k)
