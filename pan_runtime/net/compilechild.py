"""The child side of ``pan_runtime.net.compiler``: run one load job and exit.

``python -m pan_runtime.net.compilechild FOLDER``: ties its life to the node's
(``lifetime.die_with_parent``), lowers its priority, caps its address space, CPU time and
file size, then calls the job's target on the payload. It writes ``result`` (exit 0), or
``refusal.json`` (exit 3) when the target refuses the code object, and exits 4 when memory
ran out. Nothing it writes is trusted to be more than bytes for the runtime's ``adopt``.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import resource
import sys
from pathlib import Path

from pan_runtime.errors import CodeObjectError
from pan_runtime.net.compiler import EXIT_MEMORY, EXIT_REFUSED
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
    folder = Path(argv[1])
    spec = json.loads((folder / "job.json").read_text())
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, int(spec["cpu_s"]))
    _limit(resource.RLIMIT_FSIZE, int(spec["memory"]))
    payload = (folder / "payload").read_bytes()
    _limit(resource.RLIMIT_AS, int(spec["memory"]))
    try:
        module, _, name = str(spec["target"]).partition(":")
        target = getattr(importlib.import_module(module), name)
        result = target(payload, spec["settings"])
        out = folder / "result.tmp"
        out.write_bytes(bytes(result))
        out.rename(folder / "result")
    except CodeObjectError as exc:
        reason = exc.reason.value if exc.reason is not None else None
        (folder / "refusal.json").write_text(json.dumps({"reason": reason, "message": str(exc)}))
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
