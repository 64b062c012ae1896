"""Sources a plugin ships for its runtime: the reference protocols and conformance cases.

A plugin adds them through the ``pan_register_sources`` hook, the way it adds its runtime
and builder, so ``pan demo``, ``pan bench`` and ``pan conformance`` treat every installed
runtime alike; the built-in runtimes register pan's own sources through the same hook.

* **Reference protocols** (``forward``, ``ping``, ``flood``, ``portmapper``; behaviour in
  ``docs/protocols.md``): ``registry.add_protocols(runtime, directory, files)`` names, per
  protocol, the files its build reads (relative to ``directory``, the first one choosing the
  runtime's builder by its suffix). ``files`` may be a suffix (``".py"``: ``forward.py``,
  ...). ``directory`` may be a function returning it, read at every build (pan's own sources
  honour ``$PAN_PROTOCOLS`` so).
* **Conformance cases**: ``registry.add_cases(runtime, directory)`` adds a directory laid out
  like pan's shipped cases (``<case>/<stem><suffix>``), searched before pan's own, for a
  language pan ships no case sources in.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pan_runtime.errors import CodeObjectError, PanError
from pan_runtime.resources import protocols_dir

__all__ = ["PROTOCOLS", "ReferenceSources", "SourceRegistry", "shipped_protocols"]

#: the reference protocols every runtime that has them provides, all four
PROTOCOLS = ("forward", "ping", "flood", "portmapper")

Directory = Path | Callable[[], Path]


@dataclass(frozen=True)
class ReferenceSources:
    """Where one runtime's reference protocols are: a directory and, per protocol, the files
    (paths or ``glob`` patterns relative to it) its build reads."""

    runtime: str
    directory: Directory
    files: Mapping[str, tuple[str, ...]]
    #: files every build reads besides its sources (headers they include): they key the build cache
    inputs: tuple[str, ...] = ()
    #: the plugin that registered them
    source: str = ""

    def root(self) -> Path:
        return Path(self.directory() if callable(self.directory) else self.directory)

    def _expand(self, patterns: Sequence[str]) -> list[Path]:
        root = self.root()
        out: list[Path] = []
        for pattern in patterns:
            if glob.has_magic(pattern):
                out.extend(sorted(root.glob(pattern)))
            else:
                out.append(root / pattern)
        return out

    def sources(self, protocol: str) -> list[Path]:
        """The files of ``protocol``'s build, its main source first."""
        if protocol not in self.files:
            raise CodeObjectError(f"no reference protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        return self._expand(self.files[protocol])

    def input_files(self) -> list[Path]:
        return self._expand(self.inputs)

    def missing(self) -> list[Path]:
        """The named sources that are not there (empty when every protocol can be built)."""
        named = [p for protocol in PROTOCOLS for p in self.sources(protocol)[:1]]
        return [p for p in named if not p.is_file()]


class SourceRegistry:
    """Reference protocols and conformance-case directories, by runtime name; filled through
    the ``pan_register_sources`` hook."""

    def __init__(self) -> None:
        self._protocols: dict[str, ReferenceSources] = {}
        self._cases: dict[str, list[Path]] = {}
        self.current_source = ""

    def add_protocols(
        self,
        runtime: str,
        directory: Directory,
        files: str | Mapping[str, str | Sequence[str]],
        *,
        inputs: Sequence[str] = (),
    ) -> None:
        """Register ``runtime``'s four reference protocols: ``files`` is a suffix (``".py"``) or
        a mapping from each protocol to its file (or files, main source first) under ``directory``."""
        if not isinstance(runtime, str) or not runtime:
            raise PanError(f"reference protocols need a runtime name, got {runtime!r}")
        if isinstance(files, str):
            if not files.startswith("."):
                raise PanError(f"{runtime}: a suffix of reference sources starts with '.', got {files!r}")
            named: dict[str, tuple[str, ...]] = {p: (f"{p}{files}",) for p in PROTOCOLS}
        else:
            named = {p: (f,) if isinstance(f, str) else tuple(f) for p, f in files.items()}
        unknown = sorted(set(named) - set(PROTOCOLS))
        missing = [p for p in PROTOCOLS if p not in named]
        if unknown or missing:
            raise PanError(
                f"{runtime}: reference protocols are exactly {', '.join(PROTOCOLS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        if any(not paths or not all(isinstance(x, str) and x for x in paths) for paths in named.values()):
            raise PanError(f"{runtime}: every reference protocol names at least one file (relative to its directory)")
        if runtime in self._protocols:
            raise PanError(
                f"reference protocols for {runtime!r} registered twice: by {self._protocols[runtime].source or '?'} "
                f"and {self.current_source or '?'}"
            )
        self._protocols[runtime] = ReferenceSources(runtime, directory, named, tuple(inputs), self.current_source)

    def add_cases(self, runtime: str, directory: Path) -> None:
        """Add a directory of conformance-case sources (``<case>/<stem><suffix>``) for ``runtime``."""
        if not isinstance(runtime, str) or not runtime:
            raise PanError(f"conformance cases need a runtime name, got {runtime!r}")
        self._cases.setdefault(runtime, []).append(Path(directory))

    def protocols(self, runtime: str) -> ReferenceSources:
        try:
            return self._protocols[runtime]
        except KeyError:
            have = ", ".join(sorted(self._protocols)) or "none"
            raise CodeObjectError(
                f"no reference protocols for runtime {runtime!r} (a plugin adds them through the "
                f"pan_register_sources hook; runtimes that have them: {have})"
            ) from None

    def has_protocols(self, runtime: str) -> bool:
        return runtime in self._protocols

    def with_protocols(self) -> list[str]:
        return sorted(self._protocols)

    def case_dirs(self, runtime: str) -> list[Path]:
        return list(self._cases.get(runtime, ()))


def shipped_protocols(language: str) -> tuple[Callable[[], Path], dict[str, tuple[str, ...]], tuple[str, ...]]:
    """pan's own reference sources in ``language`` (``c``, ``java``, ``python``) as the
    ``directory``, ``files`` and ``inputs`` of ``SourceRegistry.add_protocols``."""
    if language == "c":
        return protocols_dir, {p: (f"{p}.c",) for p in PROTOCOLS}, ("headers.h",)
    if language == "java":
        return protocols_dir, {p: (f"java/{p.capitalize()}.java", "java/pan/protocols/*.java") for p in PROTOCOLS}, ()
    if language == "python":
        return protocols_dir, {p: (f"{p}.py",) for p in PROTOCOLS}, ()
    raise PanError(f"pan ships reference protocols in c, java and python, not {language!r}")
