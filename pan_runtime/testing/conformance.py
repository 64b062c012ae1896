"""Finding and building conformance-case sources for any runtime.

A case is a folder of pan's shipped cases (``pan_runtime.resources.cases_dir``) holding an
``expected.toml`` and one source per language: ``capsule.c`` (``native`` and ``wasm``),
``Capsule.java`` (``jvm``), ``capsule.py`` (``restricted_py`` and any runtime that runs
Python against the PNI's Python binding). A runtime's source is found through its builders:
for each suffix they take, ``<stem><suffix>`` (or ``<Stem><suffix>``, the Java spelling),
first in the case folders its plugin registered (``registry.add_cases``), then in pan's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import Plugins
from pan_runtime.resources import cases_dir

__all__ = ["BUILTIN_RUNTIMES", "CaseSource", "case_names", "source_for", "build_case"]

BUILTIN_RUNTIMES = ("restricted_py", "wasm", "native", "jvm")


@dataclass(frozen=True)
class CaseSource:
    """Where one case's source for one runtime was found."""

    case: str
    stem: str
    runtime: str
    path: Path


def case_names() -> list[str]:
    """The cases pan ships (folders with an ``expected.toml``)."""
    return sorted(d.name for d in cases_dir().iterdir() if (d / "expected.toml").is_file())


def _folders(case: str | Path, runtime: str, plugins: Plugins) -> list[Path]:
    """The folders searched for ``case``'s sources: the plugin's, then pan's (or the one given)."""
    given = Path(case) if isinstance(case, Path) else None
    name = given.name if given else str(case)
    out = [d / name for d in plugins.sources.case_dirs(runtime)]
    out.append(given if given else cases_dir() / name)
    return out


def source_for(case: str | Path, stem: str, runtime: str, plugins: Plugins) -> CaseSource:
    """The source of ``case`` (a shipped case's name, or a case folder) for ``runtime``."""
    suffixes = plugins.builders.suffixes_for(runtime)
    name = Path(case).name
    if not suffixes:
        raise BuildError(f"runtime {runtime!r} has no builder, so the conformance kit cannot build case {name} for it "
                         "(a plugin adds one through the pan_register_builders hook)")
    tried = []
    for folder in _folders(case, runtime, plugins):
        for suffix in suffixes:
            for base in dict.fromkeys((stem, stem[:1].upper() + stem[1:])):
                path = folder / f"{base}{suffix}"
                if path.is_file():
                    return CaseSource(name, stem, runtime, path)
                tried.append(str(path))
    raise BuildError(
        f"case {name} has no source for runtime {runtime} (its builders take {', '.join(suffixes)}); looked for "
        f"{', '.join(tried)}. Add one to a folder registered with registry.add_cases (the pan_register_sources hook)"
    )


@functools.cache
def _build(case: str | Path, stem: str, runtime: str, deps: tuple[CodeObject, ...], exports: tuple[str, ...], plugins: Plugins) -> CodeObject:
    src = source_for(case, stem, runtime, plugins).path
    builder = plugins.builders.find(runtime, src.suffix)
    reason = builder.available()
    if reason is not None:
        raise BuildError(f"cannot build {src} for {runtime}: {reason}")
    return builder.build(BuildRequest([src], runtime, list(deps), list(exports), f"{Path(case).name}-{stem}-{runtime}"))


def build_case(
    case: str | Path,
    runtime: str,
    plugins: Plugins,
    *,
    stem: str = "capsule",
    deps: tuple[CodeObject, ...] = (),
    exports: tuple[str, ...] = (),
) -> CodeObject:
    """Build (once per process) ``case``'s source (``stem``) for ``runtime``."""
    key = Path(case).resolve() if isinstance(case, Path) else case
    return _build(key, stem, runtime, tuple(deps), tuple(exports), plugins)
