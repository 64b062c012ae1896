"""Processes pan starts die with the process that started them.

A starter (the bench's testbed, the test helpers, any tool that runs ``pan node`` as a child)
puts its pid in ``PAN_PARENT_PID`` of the child's environment (``child_env``); the child calls
``die_with_parent`` first thing, which asks the kernel for SIGTERM when its parent exits
(``PR_SET_PDEATHSIG``), so a starter killed outright (SIGKILL, a crash, a test's timeout) leaves
no node running. The variable is an opt-in: a node a user starts from a shell lives on as usual.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
from collections.abc import Mapping

__all__ = ["PARENT_ENV", "child_env", "die_with_parent"]

#: the environment variable naming the pid a child must not outlive
PARENT_ENV = "PAN_PARENT_PID"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("pan.lifetime")


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this process named as the parent."""
    env = dict(os.environ if base is None else base)
    env[PARENT_ENV] = str(os.getpid())
    return env


def die_with_parent() -> bool:
    """If a starter asked for it, have the kernel end this process (SIGTERM) when its parent
    exits; ends it now if the parent is already gone. True when the request was made."""
    wanted = os.environ.pop(PARENT_ENV, None)
    if not wanted:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        log.warning("cannot tie this process to its parent's lifetime: %s", os.strerror(err))
        return False
    # launchers that exec in place (taskset, ip netns exec) keep the starter as our parent;
    # if it died before the request took effect, we were re-parented and must go now
    if os.getppid() == 1 and wanted != "1":
        os.kill(os.getpid(), signal.SIGTERM)
    return True
