"""The lab's reaper: waits for the ``pan lab up`` process to end, then tears its lab down.

``pan lab up`` starts it (in a session of its own, so it outlives a ``pan lab up`` killed
outright) right after writing the lab's record. When the holder tears down itself the record
goes, and the reaper exits within a second; when the holder was killed (SIGKILL, a crash), the
nodes have died with it (``PAN_PARENT_PID``) and the reaper removes the namespaces, the
processes still in them and the lab's folder.
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

from pan_runtime.errors import CleanupError, PanError

from .record import LabRecord, teardown

__all__ = ["main"]


def main(argv: list[str]) -> int:
    path, holder = Path(argv[0]), int(argv[1])
    try:
        fd = os.pidfd_open(holder)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        # wake each second: a record gone (or taken over) means the holder tore down itself
        while not select.select([fd], [], [], 1.0)[0]:
            if _not_ours(path, holder):
                os.close(fd)
                return 0
        os.close(fd)
    try:
        rec = LabRecord.load(path)
    except PanError:  # no record: the holder cleaned up
        return 0
    if rec.holder == holder:
        try:
            teardown(rec)
        except CleanupError as exc:  # its standard error goes where `pan lab up`'s went
            print(f"pan lab reaper: {exc}", file=sys.stderr)
            return 1
    return 0


def _not_ours(path: Path, holder: int) -> bool:
    try:
        return LabRecord.load(path).holder != holder
    except PanError:  # gone or unreadable: nothing of ours to remove
        return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
