"""Code object builders: how ``pan build`` turns source files into a ``.pco`` per runtime."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError

__all__ = ["BuildRequest", "Builder", "BuilderRegistry"]


@dataclass
class BuildRequest:
    """Everything a builder needs: sources, dependencies (already built) and manifest extras."""

    sources: list[Path]
    runtime: str
    dependencies: list[CodeObject] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    label: str | None = None
    options: dict[str, str] = field(default_factory=dict)


class Builder(abc.ABC):
    """Builds code objects for one runtime from sources with the given suffixes."""

    runtime: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]

    @classmethod
    def available(cls) -> str | None:
        """``None`` when the toolchain is present, else the reason it is not."""
        return None

    @abc.abstractmethod
    def build(self, request: BuildRequest) -> CodeObject:
        """Compile ``request.sources`` and wrap the payload; raise ``BuildError`` with the
        compiler's message on failure."""

    @staticmethod
    def meta_for(request: BuildRequest, **extra: object) -> dict[str, object]:
        meta: dict[str, object] = {"sources": [p.name for p in request.sources]}
        if request.label:
            meta["label"] = request.label
        meta.update(extra)
        return meta


class BuilderRegistry:
    """Builders keyed by (runtime, suffix); filled through the ``pan_register_builders`` hook."""

    def __init__(self) -> None:
        self._builders: dict[tuple[str, str], Builder] = {}

    def add(self, builder: Builder) -> None:
        for suffix in builder.suffixes:
            key = (builder.runtime, suffix)
            if key in self._builders:
                raise BuildError(f"two builders for runtime {builder.runtime!r} and {suffix!r} sources")
            self._builders[key] = builder

    def find(self, runtime: str, suffix: str) -> Builder:
        try:
            return self._builders[(runtime, suffix)]
        except KeyError:
            known = sorted(f"{r}:{s}" for r, s in self._builders)
            raise BuildError(
                f"no builder for {suffix!r} sources and runtime {runtime!r}; known: {', '.join(known) or 'none'}"
            ) from None

    def runtimes_for(self, suffix: str) -> list[str]:
        return sorted(r for r, s in self._builders if s == suffix)

    def suffixes_for(self, runtime: str) -> list[str]:
        """The source suffixes ``runtime``'s builders take, in the order they were added."""
        return [s for r, s in self._builders if r == runtime]
