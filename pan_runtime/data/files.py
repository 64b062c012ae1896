"""Reading a file the node was told about, bounded: a regular file of at most ``limit`` bytes.

A path in a configuration can name anything: ``/dev/zero`` would never end, a FIFO would block
start-up, a huge file would fill memory. ``read_bounded`` opens without blocking, refuses what is
not a regular file, and reads at most one byte more than the limit so nothing bigger is loaded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pan_runtime.errors import PanError

__all__ = ["read_bounded"]


def read_bounded(path: str | os.PathLike[str], limit: int, error: type[PanError] = PanError, what: str = "file") -> bytes:
    """The bytes of regular file ``path`` (at most ``limit``); ``error`` (naming ``what``) otherwise."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {p} is not a regular file")
        if st.st_size > limit:
            raise error(f"{what} {p} is {st.st_size} bytes, more than {limit}")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read
        raise error(f"{what} {p} is more than {limit} bytes")
    return data
