"""The C compiler the native runtime uses: ``pan build --runtime native`` and the support object."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pan_runtime.errors import BuildError

__all__ = ["CFLAGS", "compiler", "include_dir", "compile_object"]

#: flags every native code object is compiled with (see README.md for why each is there)
CFLAGS = (
    "-O2",
    "-fPIC",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-common",
    "-fcf-protection=none",
)


def compiler() -> str | None:
    """The C compiler command (``$CC`` or ``cc``), or ``None`` when there is none."""
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc)


def include_dir() -> Path:
    """The directory holding the generated ``pni.h`` (shipped with pan_runtime)."""
    from pan_runtime.resources import include_dir as shipped

    return shipped()


def compile_object(sources: Sequence[Path], out: Path, extra: Sequence[str] = ()) -> None:
    """Compile ``sources`` into the single object ``out``; ``BuildError`` carries cc's stderr."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler: install gcc or set $CC to build native code objects")
    if not (include_dir() / "pni.h").is_file():
        raise BuildError(f"{include_dir() / 'pni.h'} is missing; run `python -m pni_spec.generate`")
    if len(sources) == 1:
        args = [cc, "-c", *CFLAGS, *extra, f"-I{include_dir()}", "-o", str(out), str(sources[0])]
        stdin = None
    else:  # one object from several files: compile them as one translation unit
        args = [cc, "-c", *CFLAGS, *extra, f"-I{include_dir()}", "-o", str(out), "-x", "c", "-"]
        stdin = "".join(f'#include "{Path(s).resolve()}"\n' for s in sources)
    try:
        proc = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"cannot run {cc}: {exc}") from None
    if proc.returncode != 0:
        names = ", ".join(Path(s).name for s in sources)
        raise BuildError(f"{Path(cc).name} failed on {names} (exit {proc.returncode}):\n{proc.stderr.strip()}")
