"""The child side of ``pan_runtime.net.compiler``: run one load job and exit.

``python -m pan_runtime.net.compilechild JOB PAYLOAD OUT``, three descriptors of memory files
the node made: ties its life to the node's (``lifetime.die_with_parent``), lowers its
priority, caps its address space, CPU time and file size, then calls the job's target on the
payload. It writes the result into OUT (exit 0), or its refusal as JSON (exit 3) when the
target refuses the code object, and exits 4 when memory ran out. Nothing it writes is trusted to be more than bytes for the runtime's ``adopt``.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import resource
import sys

from pan_runtime.errors import CodeObjectError
from pan_runtime.net.compiler import EXIT_MEMORY, EXIT_REFUSED, read_file
from pan_runtime.net.lifetime import die_with_parent

__all__ = ["main"]

#: the compiler yields to the node when both want a core
NICENESS = 10


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))


def main(argv: list[str]) -> int:
    die_with_parent()
    job_fd, payload_fd, out_fd = (int(a) for a in argv[1:4])
    spec = json.loads(read_file(job_fd))
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, int(spec["cpu_s"]))
    _limit(resource.RLIMIT_FSIZE, int(spec["memory"]))
    payload = read_file(payload_fd)
    _limit(resource.RLIMIT_AS, int(spec["memory"]))
    try:
        module, _, name = str(spec["target"]).partition(":")
        target = getattr(importlib.import_module(module), name)
        result = target(payload, spec["settings"])
        with open(out_fd, "wb", closefd=False) as out:  # read only when this exits 0
            out.write(bytes(result))
    except CodeObjectError as exc:
        reason = exc.reason.value if exc.reason is not None else None
        with open(out_fd, "wb", closefd=False) as out:
            out.write(json.dumps({"reason": reason, "message": str(exc)}).encode())
        return EXIT_REFUSED
    except MemoryError:
        return EXIT_MEMORY
    except OSError as exc:
        if exc.errno in (errno.EFBIG, errno.ENOMEM):
            return EXIT_MEMORY
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
