"""Compiled-module cache: compile each code object once, keep the artifact across restarts.

In memory, modules are kept by code object name. On disk (``cache_dir`` option), the
serialized artifact (``Module.serialize``) lives in ``<name hex>-<fingerprint>.cwasm``,
where the fingerprint hashes the wasmtime version and every engine setting that changes
generated code, so a node with other settings or another wasmtime never reads a stale
artifact (Wasmtime also refuses incompatible ones; such a file is deleted and recompiled).

The directory must be private to the node: deserializing an artifact trusts it to be
what this process wrote (files are written to a temporary name and renamed into place).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import wasmtime

    from pan_runtime.data.codeobj import CodeObject

__all__ = ["CacheStats", "ModuleCache", "fingerprint"]


def fingerprint(wasmtime_version: str, settings: Mapping[str, Any]) -> str:
    """A short hash of the wasmtime version and code-generation settings."""
    text = wasmtime_version + ";" + ";".join(f"{k}={settings[k]}" for k in sorted(settings))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CacheStats:
    compiled: int = 0  # modules compiled from wasm bytes
    disk_hits: int = 0  # modules deserialized from the cache directory
    memory_hits: int = 0  # loads served by a module already in memory
    disk_errors: int = 0  # unreadable or incompatible artifacts replaced


class ModuleCache:
    """Modules by code object name, backed by an optional directory."""

    def __init__(self, engine: wasmtime.Engine, directory: str | os.PathLike[str] | None, tag: str):
        self.engine = engine
        self.directory = Path(directory) if directory is not None else None
        self.tag = tag
        self.stats = CacheStats()
        self._modules: dict[bytes, wasmtime.Module] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, code: CodeObject) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{code.hex_name}-{self.tag}.cwasm"

    def get(self, code: CodeObject, compile_: Callable[[], wasmtime.Module]) -> wasmtime.Module:
        """The module for ``code``; ``compile_`` runs only when neither cache has it."""
        import wasmtime

        module = self._modules.get(code.name)
        if module is not None:
            self.stats.memory_hits += 1
            return module
        path = self.path_for(code)
        if path is not None and path.exists():
            try:
                module = wasmtime.Module.deserialize_file(self.engine, str(path))
                self.stats.disk_hits += 1
            except (wasmtime.WasmtimeError, OSError, ValueError):
                self.stats.disk_errors += 1
                path.unlink(missing_ok=True)
                module = None
        if module is None:
            module = compile_()
            self.stats.compiled += 1
            if path is not None:
                self._store(path, bytes(module.serialize()))
        self._modules[code.name] = module
        return module

    def _store(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)

    def forget(self, code: CodeObject) -> None:
        """Drop the in-memory module (the disk artifact stays for the next load)."""
        self._modules.pop(code.name, None)

    def clear(self) -> None:
        self._modules.clear()
