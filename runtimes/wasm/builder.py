"""``pan build --runtime wasm``: C sources (zig cc or clang) or one WAT file into a code object.

C is compiled for ``wasm32-freestanding`` against the generated ``pni.h`` (its
``PNI_IMPORT``/``PNI_EXPORT`` attributes name the imports and exports); flags are listed in
``README.md``. The entry points recorded in the manifest are the ones the module exports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError
from pan_runtime.plugin.builders import Builder, BuildRequest

__all__ = ["WasmBuilder", "C_FLAGS", "include_dir", "compiler"]

#: flags for every C build; -O2 and a 64 KiB shadow stack, no libc, no _start
C_FLAGS = (
    "--target=wasm32-freestanding",
    "-nostdlib",
    "-O2",
    "-fno-builtin",
    "-mbulk-memory",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=65536",
    "-Wl,--strip-all",
)
_TIMEOUT_S = 120


def _zig_cache() -> Path:
    """zig's compilation cache: kept with pan's other caches (``$PAN_CACHE``, else
    ``$XDG_CACHE_HOME/pan``), never in the temporary directory a build runs in."""
    base = os.environ.get("PAN_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pan")
    return Path(base) / "zig"


def include_dir() -> Path:
    """Where the generated ``pni.h`` lives (shipped with pan_runtime)."""
    from pan_runtime.resources import include_dir as shipped

    return shipped()


def compiler() -> list[str] | None:
    """The C compiler command: ``PAN_WASM_CC`` if set, else zig cc, else a clang with a wasm target."""
    env = os.environ.get("PAN_WASM_CC")
    if env:
        return env.split()
    try:
        import ziglang  # noqa: F401
    except ImportError:
        clang = shutil.which("clang")
        return [clang] if clang else None
    return [sys.executable, "-m", "ziglang", "cc"]


class WasmBuilder(Builder):
    runtime = "wasm"
    suffixes = (".c", ".wat")

    @classmethod
    def available(cls) -> str | None:
        try:
            import wasmtime  # noqa: F401
        except ImportError:
            return "wasmtime is not installed (needed to assemble WAT and check modules)"
        if compiler() is None:
            return "no C compiler for wasm32: pip install ziglang, or install clang"
        return None

    def build(self, request: BuildRequest) -> CodeObject:
        sources = [Path(p) for p in request.sources]
        if not sources:
            raise BuildError("wasm build: no sources given")
        kinds = {p.suffix for p in sources}
        if kinds == {".wat"}:
            if len(sources) != 1:
                raise BuildError(f"wasm build: one .wat file makes one module, got {len(sources)}")
            payload, tool = self._assemble(sources[0]), "wat2wasm"
        elif kinds == {".c"}:
            payload, tool = self._compile_c(sources, request), "cc"
        else:
            raise BuildError(f"wasm build: sources must be all .c or one .wat, got {sorted(kinds)}")
        entry = self._entries(payload, request)
        return CodeObject.create(
            "wasm",
            payload,
            entry=entry,
            dependencies=[d.name for d in request.dependencies],
            exports=request.exports,
            meta=self.meta_for(request, tool=tool),
        )

    def _assemble(self, source: Path) -> bytes:
        import wasmtime

        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildError(f"{source}: cannot read: {exc}") from None
        try:
            return bytes(wasmtime.wat2wasm(text))
        except wasmtime.WasmtimeError as exc:
            raise BuildError(f"{source}: not valid WebAssembly text:\n{exc}") from None

    def _compile_c(self, sources: list[Path], request: BuildRequest) -> bytes:
        cc = compiler()
        if cc is None:
            raise BuildError(
                "wasm build: no C compiler; pip install 'pan-runtime[wasm]' (ziglang) or install clang"
            )
        extra = request.options.get("cflags", "").split()
        with tempfile.TemporaryDirectory(prefix="pan-wasm-") as tmp:
            out = Path(tmp) / "module.wasm"
            cmd = [*cc, *C_FLAGS, "-I", str(include_dir()), *extra, *map(str, sources), "-o", str(out)]
            env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=os.environ.get("ZIG_GLOBAL_CACHE_DIR", str(_zig_cache())))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, env=env)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise BuildError(f"wasm build: cannot run {' '.join(cc)}: {exc}") from None
            if proc.returncode != 0 or not out.exists():
                output = (proc.stderr or proc.stdout).strip()
                raise BuildError(f"wasm build failed ({' '.join(cmd)}):\n{output}")
            return out.read_bytes()

    @staticmethod
    def _entries(payload: bytes, request: BuildRequest) -> dict[str, str]:
        import wasmtime

        try:
            module = wasmtime.Module(wasmtime.Engine(), payload)
        except wasmtime.WasmtimeError as exc:
            raise BuildError(f"wasm build produced an invalid module: {exc}") from None
        exported = {e.name for e in module.exports}
        if "accept" not in exported:
            raise BuildError(
                "wasm build: the module does not export 'accept' (declare it with PNI_EXPORT(accept))"
            )
        missing = [e for e in request.exports if e not in exported]
        if missing:
            raise BuildError(f"wasm build: exports {missing} are not defined by the sources")
        return {kind: kind for kind in ("accept", "init", "finalize") if kind in exported}
