"""Building conformance-case sources for any runtime.

A case is a folder holding one source per language — ``<stem>.c`` (``native`` and
``wasm``), ``<Stem>.java`` (``jvm``), ``<stem>.py`` (``restricted_py``) — and an
``expected.toml``. A third-party runtime adds its own suffix by registering a builder and
placing ``<stem><suffix>`` beside the others.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import Plugins

__all__ = ["BUILTIN_RUNTIMES", "CaseSource", "source_for", "build_case"]

BUILTIN_RUNTIMES = ("restricted_py", "wasm", "native", "jvm")
_SUFFIX = {"native": ".c", "wasm": ".c", "jvm": ".java", "restricted_py": ".py"}


@dataclass(frozen=True)
class CaseSource:
    case_dir: Path
    stem: str
    runtime: str


def source_for(case_dir: Path, stem: str, runtime: str) -> Path:
    suffix = _SUFFIX.get(runtime)
    if suffix is None:
        raise BuildError(f"the conformance kit has no source convention for runtime {runtime!r}")
    name = stem[:1].upper() + stem[1:] if suffix == ".java" else stem
    path = case_dir / f"{name}{suffix}"
    if not path.exists():
        raise BuildError(f"case {case_dir.name} has no source {path.name} for runtime {runtime}")
    return path


@functools.cache
def _build(case_dir: Path, stem: str, runtime: str, deps: tuple[CodeObject, ...], exports: tuple[str, ...], plugins: Plugins) -> CodeObject:
    src = source_for(case_dir, stem, runtime)
    builder = plugins.builders.find(runtime, src.suffix)
    reason = builder.available()
    if reason is not None:
        raise BuildError(f"cannot build {src} for {runtime}: {reason}")
    return builder.build(BuildRequest([src], runtime, list(deps), list(exports), f"{case_dir.name}-{stem}-{runtime}"))


def build_case(
    case_dir: Path,
    runtime: str,
    plugins: Plugins,
    *,
    stem: str = "capsule",
    deps: tuple[CodeObject, ...] = (),
    exports: tuple[str, ...] = (),
) -> CodeObject:
    """Build (once per process) the case's source for ``runtime``."""
    return _build(Path(case_dir).resolve(), stem, runtime, tuple(deps), tuple(exports), plugins)
