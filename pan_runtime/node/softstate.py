"""Soft state: per-code-object storage that capsules may use but never rely on.

Bounded in entries and bytes, evicting least recently used entries first and expired
entries whenever it is touched. Values are bytes or segments (kept without copying);
a code object's state vanishes with it (``clear``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from pan_runtime.data.segments import Segment

__all__ = ["SoftState"]

Value = bytes | Segment


class SoftState:
    """LRU + TTL bounded key-value store owned by one code object."""

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 4 << 20,
        default_ttl_ms: int = 60_000,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl_ms = default_ttl_ms
        self._clock = clock
        self._data: OrderedDict[bytes, tuple[Value, int]] = OrderedDict()
        self.bytes_used = 0
        self.evictions = 0
        self.expirations = 0

    @staticmethod
    def _size(key: bytes, value: Value) -> int:
        return len(key) + (value.chain_length() if isinstance(value, Segment) else len(value))

    def __len__(self) -> int:
        return len(self._data)

    def _drop(self, key: bytes) -> None:
        value, _ = self._data.pop(key)
        self.bytes_used -= self._size(key, value)
        if isinstance(value, Segment) and value.live:
            value.release()

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
        """Store ``value`` (a segment's reference moves in); False if it can never fit."""
        key = bytes(key)
        size = self._size(key, value)
        if size > self.max_bytes:
            return False
        if key in self._data:
            self._drop(key)
        self.expire()
        while self._data and (len(self._data) >= self.max_entries or self.bytes_used + size > self.max_bytes):
            oldest = next(iter(self._data))
            self._drop(oldest)
            self.evictions += 1
        ttl = ttl_ms or self.default_ttl_ms
        self._data[key] = (value, self._clock() + ttl * 1_000_000 if ttl else 0)
        self.bytes_used += size
        return True

    def delete(self, key: bytes) -> bool:
        if bytes(key) not in self._data:
            return False
        self._drop(bytes(key))
        return True

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
