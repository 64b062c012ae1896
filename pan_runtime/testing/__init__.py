"""A conformance kit for runtimes: build per-language test sources and check a runtime
against the same scenarios as pan's own runtimes (used by ``tests/conformance``)."""

from pan_runtime.testing.conformance import BUILTIN_RUNTIMES, CaseSource, build_case, source_for

__all__ = ["BUILTIN_RUNTIMES", "CaseSource", "build_case", "source_for"]
