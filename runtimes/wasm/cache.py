"""Compiled-module cache: compile each code object once, keep the artifact across restarts.

In memory, modules are kept by code object name. On disk (``cache_dir`` option), the
serialized artifact (``Module.serialize``) lives in ``<name hex>-<fingerprint>.cwasm``,
where the fingerprint hashes the wasmtime version and every engine setting that changes
generated code, so a node with other settings or another wasmtime never reads a stale one.

Deserializing trusts the bytes to be machine code this node's compiler made, and Wasmtime
checks only that they claim the right version and settings, so no file is taken on its
word: beside each artifact, ``<...>.cwasm.auth`` names the code object, the fingerprint and
the artifact's length and carries an HMAC-SHA256 over them and the artifact, under a key
kept in the directory (``.artifact-key``, created on first use, readable by the node's user
only). An artifact that is truncated, altered, written for another code object or settings,
or by another key (copied from another node) is counted in ``disk_errors``, deleted and
compiled again. A verified artifact is mapped from the file it was verified through
(``Module.deserialize_file`` on that open descriptor), not copied into memory first.

Artifacts compiled in the node's compiler process arrive through ``adopt``; they wait (a
few at most) for the ``load`` that takes them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import CodeObjectError, FaultReason

if TYPE_CHECKING:
    import wasmtime

    from pan_runtime.data.codeobj import CodeObject

__all__ = ["CacheStats", "ModuleCache", "fingerprint"]

log = logging.getLogger("pan.wasm")

#: an artifact's authentication record: magic, code object name, fingerprint (ASCII hex),
#: artifact length, HMAC
_MAGIC = b"PANCWSM1"
_AUTH = struct.Struct(">8s32s16sQ32s")
_KEY_FILE = ".artifact-key"
_KEY_SIZE = 32
#: adopted artifacts waiting for their load
_ADOPTED_MAX = 8


def fingerprint(wasmtime_version: str, settings: Mapping[str, Any]) -> str:
    """A short hash of the wasmtime version and code-generation settings."""
    text = wasmtime_version + ";" + ";".join(f"{k}={settings[k]}" for k in sorted(settings))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CacheStats:
    compiled: int = 0  # modules compiled from wasm bytes in this process
    adopted: int = 0  # modules compiled elsewhere (the node's compiler process) and handed over
    disk_hits: int = 0  # modules deserialized from the cache directory
    memory_hits: int = 0  # loads served by a module already in memory
    disk_errors: int = 0  # unreadable, altered, foreign or incompatible artifacts replaced


class ModuleCache:
    """Modules by code object name, backed by an optional directory."""

    def __init__(self, engine: wasmtime.Engine, directory: str | os.PathLike[str] | None, tag: str):
        self.engine = engine
        self.directory = Path(directory) if directory is not None else None
        self.tag = tag
        self.stats = CacheStats()
        self._modules: dict[bytes, wasmtime.Module] = {}
        self._adopted: OrderedDict[bytes, wasmtime.Module] = OrderedDict()
        self._key: bytes | None = None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, code: CodeObject) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{code.hex_name}-{self.tag}.cwasm"

    # ------------------------------------------------------------------ lookups
    def lookup(self, code: CodeObject) -> wasmtime.Module | None:
        """The module for ``code`` from memory or from a verified artifact on disk, else None."""
        module = self._modules.get(code.name)
        if module is not None:
            self.stats.memory_hits += 1
            return module
        module = self._adopted.pop(code.name, None)
        if module is None:
            module = self._from_disk(code)
        if module is not None:
            self._modules[code.name] = module
        return module

    def get(self, code: CodeObject, compile_: Callable[[], wasmtime.Module]) -> wasmtime.Module:
        """The module for ``code``; ``compile_`` runs only when neither cache has it."""
        module = self.lookup(code)
        if module is None:
            module = compile_()
            self.stats.compiled += 1
            path = self.path_for(code)
            if path is not None:
                self._store(path, code, bytes(module.serialize()))
            self._modules[code.name] = module
        return module

    def adopt(self, code: CodeObject, artifact: bytes) -> None:
        """Take an artifact the node's compiler process made for ``code`` (same engine settings)."""
        import wasmtime

        path = self.path_for(code)
        try:
            if path is not None and self._store(path, code, artifact):
                module = self._map(path)
            else:
                module = self._map_bytes(artifact)
        except (wasmtime.WasmtimeError, OSError, ValueError) as exc:
            raise CodeObjectError(
                f"{code.short_name}: the compiler's artifact does not load: {_first_line(exc)}",
                FaultReason.COMPILE_FAILED,
            ) from None
        self.stats.adopted += 1
        self._adopted[code.name] = module
        while len(self._adopted) > _ADOPTED_MAX:
            self._adopted.popitem(last=False)

    # ------------------------------------------------------------------ the directory
    def _from_disk(self, code: CodeObject) -> wasmtime.Module | None:
        import wasmtime

        path = self.path_for(code)
        if path is None or not path.exists():
            return None
        try:
            module = self._map(path, code)
        except (OSError, ValueError, wasmtime.WasmtimeError) as exc:
            self.stats.disk_errors += 1
            log.warning("compiling %s again: its cached artifact %s is unusable: %s", code.short_name, path.name, _first_line(exc))
            path.unlink(missing_ok=True)
            _auth(path).unlink(missing_ok=True)
            return None
        self.stats.disk_hits += 1
        return module

    def _map(self, path: Path, code: CodeObject | None = None) -> wasmtime.Module:
        """The module in ``path``, verified first when ``code`` is given (its name, settings and
        HMAC); mapped through the descriptor that was verified."""
        import wasmtime

        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if code is not None:
                self._verify(fd, path, code)
            return wasmtime.Module.deserialize_file(self.engine, f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def _map_bytes(self, artifact: bytes) -> wasmtime.Module:
        """Deserialize from a private temporary file: mapping a file is several times faster
        than ``Module.deserialize`` copying bytes, for large artifacts."""
        fd, tmp = tempfile.mkstemp(prefix="pan-artifact-", suffix=".cwasm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(artifact)
            return self._map(Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _verify(self, fd: int, path: Path, code: CodeObject) -> None:
        auth = _auth(path).read_bytes()
        if len(auth) != _AUTH.size:
            raise ValueError("its authentication record is missing or malformed")
        magic, name, tag, length, mac = _AUTH.unpack(auth)
        if magic != _MAGIC:
            raise ValueError("not an artifact of this cache")
        if name != code.name or tag != self.tag.encode():
            raise ValueError("made for another code object or other engine settings")
        size = os.fstat(fd).st_size
        if length != size:
            raise ValueError(f"holds {size} bytes, its record says {length}")
        h = self._hmac(name, tag, length)
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        if not hmac.compare_digest(mac, h.digest()):
            raise ValueError("its authentication code does not match (altered, or written with another key)")
        os.lseek(fd, 0, os.SEEK_SET)

    def _hmac(self, name: bytes, tag: bytes, length: int) -> hmac.HMAC:
        h = hmac.new(self._secret(), digestmod=hashlib.sha256)
        h.update(_MAGIC + name + tag + struct.pack(">Q", length))
        return h

    def _secret(self) -> bytes:
        """The directory's key: read once, created (mode 0600) when missing or malformed."""
        if self._key is not None:
            return self._key
        assert self.directory is not None
        path = self.directory / _KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = b""
        if len(key) != _KEY_SIZE:
            key = os.urandom(_KEY_SIZE)
            _write(path, [key])  # mkstemp makes it 0600
        self._key = key
        return key

    def _store(self, path: Path, code: CodeObject, artifact: bytes) -> bool:
        """Write the artifact, then its authentication record (a crash between the two leaves an
        artifact without a record, which is compiled again); False if the directory refuses."""
        try:
            tag = self.tag.encode()
            h = self._hmac(code.name, tag, len(artifact))
            h.update(artifact)
            _write(path, [artifact])
            _write(_auth(path), [_AUTH.pack(_MAGIC, code.name, tag, len(artifact), h.digest())])
        except OSError as exc:
            log.warning("not caching the artifact of %s: %s", code.short_name, exc)
            return False
        return True

    def forget(self, code: CodeObject) -> None:
        """Drop the in-memory module (the disk artifact stays for the next load)."""
        self._modules.pop(code.name, None)
        self._adopted.pop(code.name, None)

    def clear(self) -> None:
        self._modules.clear()
        self._adopted.clear()


def _auth(path: Path) -> Path:
    return path.with_name(path.name + ".auth")


def _write(path: Path, parts: list[bytes]) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
