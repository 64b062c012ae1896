"""The code cache: loaded code objects keyed by name, bounded in bytes, evicting LRU.

Pinned entries are never evicted, nor are entries other cached code depends on. With a
directory, every installed code object is also written there as ``<name>.pco`` so a
restarted node can reload it instead of fetching it again; a file whose contents do not
hash to its name is ignored and counted.

The directory is a cache, best effort: a write that fails (disk full, read-only, I/O error)
is a ``DiskError`` that the code table counts and logs while the code stays installed, since a
full disk should cost a node a faster restart, not the code its applications and neighbours
use. A failed write leaves no file behind: a ``.pco`` is complete or absent.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pan_runtime.data.codeobj import MAX_PCO, CodeObject
from pan_runtime.data.files import read_bounded
from pan_runtime.errors import CodeObjectError, DiskError
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
    """A directory of ``<hex name>.pco`` files; failures are ``DiskError``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DiskError(f"cannot make the code cache directory {self.path}: {exc.strerror or exc}") from None
        #: files that did not hold the code object their name says, or could not be read
        self.rejected = 0
        #: writes and removals that failed (``keep``/``forget``; each is logged only when a
        #: run of failures starts, so a full disk does not also fill the log)
        self.errors = 0
        self._failing = False

    def _file(self, name: bytes) -> Path:
        return self.path / f"{name.hex()}.pco"

    def put(self, code: CodeObject) -> None:
        """Write ``code`` (whole, or nothing: a temporary file renamed into place)."""
        target = self._file(code.name)
        tmp = target.with_suffix(".tmp")
        try:
            if target.exists():
                return
            with open(tmp, "wb") as f:
                f.write(code.to_pco())
            os.replace(tmp, target)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise DiskError(f"cannot write {target}: {exc.strerror or exc}") from None

    def get(self, name: bytes) -> CodeObject | None:
        """The code object stored under ``name``; None (counted in ``rejected``) if absent or bad."""
        f = self._file(name)
        try:
            if not f.exists():
                return None
            return CodeObject.from_pco(read_bounded(f, MAX_PCO, DiskError, "cached code object"), expect_name=name)
        except (CodeObjectError, DiskError, OSError) as exc:
            self.rejected += 1
            log.warning("ignoring %s: %s", f, exc)
            return None

    def remove(self, name: bytes) -> None:
        try:
            self._file(name).unlink(missing_ok=True)
        except OSError as exc:
            raise DiskError(f"cannot remove {self._file(name)}: {exc.strerror or exc}") from None

    def keep(self, code: CodeObject) -> bool:
        """``put``, best effort: a failure is counted and logged, not raised; True if written."""
        try:
            self.put(code)
        except DiskError as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def forget(self, name: bytes) -> bool:
        """``remove``, best effort like ``keep``."""
        try:
            self.remove(name)
        except DiskError as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: DiskError) -> None:
        self.errors += 1
        if not self._failing:
            self._failing = True
            log.warning("code cache: %s; the code stays installed but is not kept on disk (further failures are counted, not logged)", exc)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("code cache: writes to %s succeed again (%d failed)", self.path, self.errors)

    def names(self) -> list[bytes]:
        try:
            files = sorted(self.path.glob("*.pco"))
        except OSError as exc:
            raise DiskError(f"cannot list the code cache directory {self.path}: {exc.strerror or exc}") from None
        out = []
        for f in files:
            try:
                name = bytes.fromhex(f.stem)
            except ValueError:
                continue
            if len(name) == 32:
                out.append(name)
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
