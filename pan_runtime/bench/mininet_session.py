"""A Mininet session: the machine-wide state one Mininet network borrows, held by one at a time.

Mininet raises machine-wide limits when it starts (``mininet.util.fixLimits``: socket buffer
maxima, the ARP table, the backlog); they are not its network's but the machine's. Two Mininet
networks at once (a ``pan bench --topology mininet`` beside a ``pan lab up --backend mininet``,
or two test sessions on one machine) would record each other's raised values as "before" and
leave them behind. A session therefore holds an exclusive ``flock`` on ``LOCK_PATH`` from before
it records the sysctls until after it has put back every one that changed; a second session
waits for it (``wait_s`` at most, then ``PanError`` naming the holder's lock). The kernel drops
the lock with its holder, however that ends.

A process that holds the lock itself (a test that checks the sysctls around a ``pan bench``
run it starts) passes its descriptor to the child and names it in ``PAN_MININET_LOCK_FD``: the
child's session then neither takes nor releases the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from pan_runtime.errors import PanError

__all__ = ["LOCK_FD_ENV", "LOCK_PATH", "MININET_SYSCTLS", "MininetSession", "lock_path", "read_sysctls"]

#: where the machine's Mininet sessions take turns (root only: Mininet needs root)
LOCK_PATH = Path("/run/pan-mininet.lock")
#: the environment variable naming an inherited descriptor that already holds the lock
LOCK_FD_ENV = "PAN_MININET_LOCK_FD"

#: machine-wide sysctls Mininet raises when it starts (``mininet.util.fixLimits``); a session
#: records them before and restores every one that changed
MININET_SYSCTLS = (
    "fs.file-max",
    "net.core.wmem_max",
    "net.core.rmem_max",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.core.netdev_max_backlog",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv4.route.max_size",
    "kernel.pty.max",
)


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = MININET_SYSCTLS) -> dict[str, str]:
    """The current values of ``names`` (whitespace normalised), those this kernel has."""
    out = {}
    for n in names:
        try:
            out[n] = " ".join(sysctl_path(n).read_text().split())
        except OSError:
            pass
    return out


def lock_path() -> Path:
    """``LOCK_PATH``, or the temporary directory's when ``/run`` is not writable here."""
    if os.access(LOCK_PATH.parent, os.W_OK):
        return LOCK_PATH
    import tempfile

    return Path(tempfile.gettempdir()) / LOCK_PATH.name


def _inherited_fd() -> int | None:
    """The descriptor ``LOCK_FD_ENV`` names, when it is open on this machine's lock file."""
    text = os.environ.get(LOCK_FD_ENV, "")
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        st, want = os.fstat(fd), os.stat(lock_path())
    except OSError:
        return None
    return fd if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino) else None


class MininetSession:
    """The machine's Mininet state, borrowed: the lock taken and the sysctls recorded at
    creation; ``close`` puts back what changed and lets the next session in."""

    def __init__(self, wait_s: float = 600.0):
        self._fd: int | None = None
        if _inherited_fd() is None:
            path = lock_path()
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            guard = time.monotonic() + wait_s  # a hang guard for a session left up, not a deadline
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > guard:
                        os.close(fd)
                        raise PanError(f"another Mininet session on this machine (a pan lab or pan bench on Mininet) "
                                       f"holds {path}: bring it down first ({exc.strerror})") from None
                    time.sleep(0.05)
            self._fd = fd
        #: the sysctls before this session's Mininet started
        self.before = read_sysctls()

    @property
    def fd(self) -> int | None:
        """The descriptor that holds the lock (None: a parent process holds it)."""
        return self._fd

    def changed(self) -> dict[str, tuple[str, str]]:
        """The sysctls that differ from before: name -> (before, now)."""
        now = read_sysctls()
        return {k: (v, now[k]) for k, v in self.before.items() if now.get(k) != v}

    def close(self) -> list[str]:
        """Put back every sysctl that changed, then release the lock; what could not be put
        back, as text (nothing raised: the caller reports it with its other clean-up)."""
        failed = []
        for name, (value, _now) in self.changed().items():
            try:
                sysctl_path(name).write_text(value)
            except OSError as exc:
                failed.append(f"cannot restore sysctl {name} = {value!r}: {exc.strerror or exc}")
        self.release()
        return failed

    def release(self) -> None:
        """Let the next session in, putting nothing back (a holder whose child restores)."""
        self.before = {}
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor
            self._fd = None
