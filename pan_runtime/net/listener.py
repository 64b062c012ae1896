"""Accepting connections on a listening socket without spinning when the process is out of
file descriptors.

At ``EMFILE``/``ENFILE`` (or the kernel short of memory for a socket) the pending connection
stays queued, so the listener stays readable and a loop that just retries burns a core and
writes a warning per attempt. ``Listener`` instead stops watching the socket for a pause that
doubles while the shortage lasts (``min_pause`` .. ``max_pause`` seconds) and resets after an
accept succeeds; each pause is counted and logged once.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pan_runtime.net.udp import EventLoop

__all__ = ["Listener", "SHORTAGE"]

log = logging.getLogger("pan.listener")

#: accept errors that mean "no resources now": retrying at once cannot help
SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Listener:
    """Calls ``on_accept(sock)`` for each connection ``sock`` (a listening socket) accepts."""

    def __init__(
        self,
        sock: socket.socket,
        loop: EventLoop,
        on_accept: Callable[[socket.socket], None],
        *,
        what: str,
        burst: int = 64,
        min_pause: float = 0.05,
        max_pause: float = 2.0,
    ):
        self.sock = sock
        self.loop = loop
        self.on_accept = on_accept
        self.what = what
        self.burst = burst
        self.min_pause = min_pause
        self.max_pause = max_pause
        self.accepted = 0
        #: pauses taken for a shortage of descriptors or memory (each logged once)
        self.pauses = 0
        #: accepts that failed (a shortage, or a connection that went away before it was taken)
        self.failed = 0
        self.paused = False
        self.closed = False
        self._pause = min_pause
        sock.setblocking(False)
        loop.add(sock, selectors.EVENT_READ, self._ready)

    def _ready(self, _mask: int) -> None:
        for _ in range(self.burst):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.failed += 1
                if exc.errno in SHORTAGE:
                    self._hold(exc)
                    return
                log.debug("accept on %s: %s", self.what, exc)  # e.g. ECONNABORTED: that peer left
                continue
            self.accepted += 1
            self._pause = self.min_pause
            self.on_accept(conn)

    def _hold(self, exc: OSError) -> None:
        """Stop watching the socket for a while; the connections wait in its backlog."""
        pause = self._pause
        self._pause = min(self.max_pause, pause * 2)
        self.pauses += 1
        self.paused = True
        self.loop.remove(self.sock)
        log.warning("accept on %s: %s; not accepting for %.2f s (pause %d)", self.what, exc.strerror or exc, pause, self.pauses)
        self.loop.call_later(pause, self._resume)

    def _resume(self) -> None:
        if self.closed or not self.paused:
            return
        self.paused = False
        self.loop.add(self.sock, selectors.EVENT_READ, self._ready)

    def info(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "accept_pauses": self.pauses, "accept_failed": self.failed, "accept_paused": self.paused}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove(self.sock)  # a no-op while paused
        self.sock.close()
