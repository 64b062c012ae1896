"""The node's load limits: how large and how intricate a code object may be before anything
costly is done with it, and what compiling it may take.

Code from the network is hostile; compiling it costs time and memory that grow with its
shape (functions, nesting, locals), not only with its size. The node checks the shape
first (each runtime reads what its format declares: wasm sections, jar entries and class
headers, ELF section and symbol tables), and compiles off its own thread under a time and
a memory ceiling. A refusal is a ``CodeObjectError`` whose ``reason`` names the limit.
Configured in the node TOML ``[limits]`` (``code_*``, ``compile_*``; ``docs/network.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pan_runtime.errors import CodeObjectError, ConfigError, FaultReason

__all__ = ["BOUNDS", "LoadLimits"]

#: the smallest compile memory ceiling: a child interpreter with an engine loaded needs this much
MIN_COMPILE_MEMORY = 64 << 20
#: the values each limit may take (a configuration outside them is a mistake, not a policy)
BOUNDS: dict[str, tuple[int, int]] = {
    "code_bytes": (1, 64 << 20),  # codeobj.MAX_PAYLOAD
    "code_functions": (1, 1_000_000),
    "code_nesting": (1, 1 << 20),
    "code_locals": (1, 50_000),  # what Wasmtime's validator allows
    "code_imports": (1, 1 << 20),
    "code_entries": (1, 1 << 24),
    "compile_time_ms": (1, 3_600_000),
    "compile_memory": (MIN_COMPILE_MEMORY, 1 << 40),
    "compile_jobs": (1, 64),
}


@dataclass(frozen=True)
class LoadLimits:
    """Limits on one code object's shape and on compiling it (field names = ``[limits]`` keys)."""

    #: bytes of the code object (manifest and payload; a jar's uncompressed classes too)
    code_bytes: int = 8 << 20
    #: functions (wasm: imported and defined; jvm: methods of all classes)
    code_functions: int = 10_000
    #: blocks nested in one function (wasm)
    code_nesting: int = 1024
    #: locals declared by one function (wasm)
    code_locals: int = 10_000
    #: imports (wasm imports; native: undefined symbols)
    code_imports: int = 256
    #: entries of any other table (sections, symbols, relocations, classes, types, globals,
    #: exports, data and element segments, ...)
    code_entries: int = 65_536
    #: wall time one compile (or check) off the node's thread may take
    compile_time_ms: int = 10_000
    #: address space of the process compiling one code object (RLIMIT_AS), bytes
    compile_memory: int = 1 << 30
    #: compiles running at once (each in its own process); more wait their turn
    compile_jobs: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            lo, hi = BOUNDS[f.name]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"load limit {f.name} must be an integer in {lo}..{hi}, got {v!r}")

    def require(self, what: str, value: int, limit: str, reason: FaultReason) -> None:
        """Refuse (``CodeObjectError`` with ``reason``) when ``value`` exceeds the limit named ``limit``."""
        allowed = getattr(self, limit)
        if value > allowed:
            raise CodeObjectError(f"{what}: {value} is more than limits.{limit} = {allowed}", reason)
