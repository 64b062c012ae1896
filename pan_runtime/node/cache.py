"""The code cache: loaded code objects keyed by name, bounded in bytes, evicting LRU.

Pinned entries are never evicted, nor are entries other cached code depends on. With a
directory, every installed code object is also written there as ``<name>.pco`` so a
restarted node can reload it instead of fetching it again; a file whose contents do not
hash to its name is ignored and counted.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
from pan_runtime.node.quota import CodeBuffers
from pan_runtime.node.softstate import SoftState
from pan_runtime.node.stats import CodeStats
from pan_runtime.plugin.runtime import LoadedCode

__all__ = ["Breaker", "CacheEntry", "CodeCache", "DiskStore"]

log = logging.getLogger("pan.cache")


@dataclass
class Breaker:
    """Circuit breaker for one code object: too many faults in a window quarantine it."""

    threshold: int = 5
    window_ns: int = 10_000_000_000
    backoff_ns: int = 1_000_000_000
    max_backoff_ns: int = 60_000_000_000
    faults: list[int] = field(default_factory=list)
    open_until: int = 0
    trips: int = 0
    current_backoff: int = 0

    def allows(self, now: int) -> bool:
        return now >= self.open_until

    def record_fault(self, now: int) -> bool:
        """Count a fault; True when this fault trips the breaker (quarantine starts)."""
        self.faults = [t for t in self.faults if now - t < self.window_ns]
        self.faults.append(now)
        half_open = self.trips and self.open_until and now >= self.open_until
        if len(self.faults) >= self.threshold or half_open:
            self.current_backoff = (
                min(self.current_backoff * 2, self.max_backoff_ns) if half_open else self.backoff_ns
            )
            self.open_until = now + self.current_backoff
            self.trips += 1
            self.faults.clear()
            return True
        return False

    def record_success(self) -> None:
        if self.open_until:
            self.open_until = 0
            self.current_backoff = 0

    @property
    def quarantined_until(self) -> int:
        return self.open_until


@dataclass
class CacheEntry:
    """One installed code object with everything the node keeps for it."""

    code: CodeObject
    runtime: str
    loaded: LoadedCode
    state: SoftState
    origin: str
    pinned: bool = False
    #: pool buffers the code object holds past its calls (``pan_runtime.node.quota``)
    buffers: CodeBuffers = field(default_factory=CodeBuffers)
    stats: CodeStats = field(default_factory=CodeStats)
    breaker: Breaker = field(default_factory=Breaker)
    dependants: set[bytes] = field(default_factory=set)


class DiskStore:
    """A directory of ``<hex name>.pco`` files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.rejected = 0

    def _file(self, name: bytes) -> Path:
        return self.path / f"{name.hex()}.pco"

    def put(self, code: CodeObject) -> None:
        target = self._file(code.name)
        if target.exists():
            return
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(code.to_pco())
        os.replace(tmp, target)

    def get(self, name: bytes) -> CodeObject | None:
        f = self._file(name)
        if not f.exists():
            return None
        try:
            return CodeObject.from_pco(f.read_bytes(), expect_name=name)
        except CodeObjectError as exc:
            self.rejected += 1
            log.warning("ignoring %s: %s", f, exc)
            return None

    def remove(self, name: bytes) -> None:
        self._file(name).unlink(missing_ok=True)

    def names(self) -> list[bytes]:
        out = []
        for f in sorted(self.path.glob("*.pco")):
            try:
                out.append(bytes.fromhex(f.stem))
            except ValueError:
                continue
        return out


class CodeCache:
    """Content-addressed, byte-bounded LRU of installed code objects."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        #: bumped when an entry is added, removed, reset or quarantined or let out, so copies
        #: of the cache (the UDP fast path's code table) know to refresh
        self.generation = 0
        self.bytes_used = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[CacheEntry]:
        return iter(list(self._entries.values()))

    def get(self, name: bytes) -> CacheEntry | None:
        e = self._entries.get(name)
        if e is not None:
            self._entries.move_to_end(name)
        return e

    def peek(self, name: bytes) -> CacheEntry | None:
        return self._entries.get(name)

    def add(self, entry: CacheEntry) -> None:
        self._entries[entry.code.name] = entry
        self.bytes_used += entry.code.size
        self.generation += 1

    def remove(self, name: bytes) -> CacheEntry | None:
        e = self._entries.pop(name, None)
        if e is not None:
            self.bytes_used -= e.code.size
            self.generation += 1
        return e

    def victims(self, incoming: int) -> list[bytes] | None:
        """Names to evict (LRU first) so ``incoming`` more bytes fit; None if they cannot."""
        need = self.bytes_used + incoming - self.max_bytes
        if need <= 0:
            return []
        out = []
        for name, e in self._entries.items():
            if e.pinned or e.dependants:
                continue
            out.append(name)
            need -= e.code.size
            if need <= 0:
                return out
        return None
