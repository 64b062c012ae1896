"""The capacity experiment's compiled tools: a paced generator, a sink and the C batched
forwarder (``traffic.c``, one executable with three modes).

They are built at run time with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) into pan's cache directory, once per version of the source: a Python sender
could not offer the rates a compiled middle forwards, and pan ships the source rather than
a binary for every machine. ``PanError`` says what to install where no compiler is found.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from pan_runtime.errors import BuildError
from pan_runtime.resources import include_dir

__all__ = ["SOURCE", "compiler", "traffic_binary", "cache_dir"]

SOURCE = Path(__file__).with_name("traffic.c")
#: how long the compiler may take: a guard against a hung compiler, not a measure
COMPILE_LIMIT_S = 300.0


def cache_dir() -> Path:
    """Where built tools are kept: ``$PAN_CACHE/bench`` (default ``~/.cache/pan/bench``)."""
    base = os.environ.get("PAN_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pan")
    return Path(base) / "bench"


def compiler() -> list[str] | None:
    """The C compiler command to use (None: none on this machine)."""
    cc = os.environ.get("CC")
    if cc:
        argv = shlex.split(cc)
        return argv if argv and shutil.which(argv[0]) else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def traffic_binary() -> Path:
    """The built ``pan-traffic`` executable, compiled now if this version of the source has no
    build in the cache yet; ``BuildError`` (a ``PanError``) without a compiler or on a failed build."""
    try:
        source = SOURCE.read_bytes()
        header = (include_dir() / "pan_wire.h").read_bytes()
    except OSError as exc:
        raise BuildError(f"the capacity experiment's source is missing ({exc}); reinstall pan-runtime") from None
    cc = compiler()
    if cc is None:
        raise BuildError(
            "the capacity experiment builds its traffic generator and sink with a C compiler, and none was found "
            "(set CC, or install one: apt-get install gcc)"
        )
    digest = hashlib.sha256(source + b"\0" + header + b"\0" + " ".join(cc).encode()).hexdigest()[:20]
    out = cache_dir() / f"pan-traffic-{digest}"
    if out.is_file() and os.access(out, os.X_OK):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    cmd = [*cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE), "-I", str(include_dir())]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_LIMIT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the traffic generator with {cc[0]} failed: {exc}") from None
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the traffic generator failed (`{' '.join(cmd)}`): {(r.stderr or r.stdout).strip()[-800:]}")
    os.replace(tmp, out)
    return out
