"""The support object: hot segment calls and the run loops in C, built once and cached.

``support.c`` is compiled with the native flags at first use into a cache directory
(``$PAN_CACHE_DIR/native``, else ``$XDG_CACHE_HOME/pan/native``, else ``~/.cache/pan/native``),
keyed by the SHA-256 of the source, ``pni.h`` and the flags, so a changed header rebuilds it.
The parsed object is kept per process; each loaded code object links its own copy.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from pan_native.elfobject import ElfObject, parse_object
from pan_native.toolchain import CFLAGS, compile_object, include_dir
from pan_runtime.errors import BuildError, RuntimeUnavailable
from pan_runtime.pni_hot import HOT_CALLS

__all__ = ["HOT_CALLS", "SOURCE", "cache_dir", "support_object"]

SOURCE = Path(__file__).with_name("support.c")


def cache_dir() -> Path:
    root = os.environ.get("PAN_CACHE_DIR")
    if root:
        return Path(root) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pan" / "native"


@functools.cache
def support_object() -> ElfObject:
    """The parsed support object, compiled now if the cache does not hold it."""
    header = include_dir() / "pni.h"
    try:
        digest = hashlib.sha256(
            SOURCE.read_bytes() + header.read_bytes() + (include_dir() / "pan_fast.h").read_bytes()
            + (include_dir() / "pni_hot.h").read_bytes() + " ".join(CFLAGS).encode()
        )
    except OSError as exc:
        raise RuntimeUnavailable(f"native support source unreadable: {exc}") from None
    path = cache_dir() / f"support-{digest.hexdigest()[:20]}.o"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".o", dir=path.parent)
        os.close(fd)
        try:
            compile_object([SOURCE], Path(tmp), ("-O3",))
            os.replace(tmp, path)
        except BuildError as exc:
            raise RuntimeUnavailable(f"cannot build the native support object: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return parse_object(path.read_bytes())
