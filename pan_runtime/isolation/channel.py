"""A worker's channel: one memfd holding two rings (node to worker, worker to node) and two
eventfds that wake the reader of each after a batch of records.

The node makes the memfd and the eventfds and hands the worker exactly these three
descriptors (``pass_fds``); the worker maps the same memory. One wake-up carries a whole batch
of capsules down and a whole batch of verdicts up; a PNI call the worker cannot answer itself
goes up as one record and its reply comes down as one.
"""

from __future__ import annotations

import mmap
import os
import select

from pan_runtime.isolation.ring import HEADER, Ring

__all__ = ["Channel", "ring_size_for"]


def ring_size_for(payload: int) -> int:
    """The smallest power-of-two ring (at least 1 MiB) holding ``payload`` bytes twice over."""
    size = 1 << 20
    while size < 2 * payload + 4096:
        size <<= 1
    return size


class Channel:
    """The node's or the worker's end (``down`` is written by the node, ``up`` by the worker)."""

    def __init__(self, memfd: int, wake_down: int, wake_up: int, ring_size: int, *, owner: bool):
        self.memfd = memfd
        self.wake_down = wake_down
        self.wake_up = wake_up
        self.ring_size = ring_size
        self.owner = owner
        length = 2 * (HEADER + ring_size)
        if owner:
            os.ftruncate(memfd, length)
        self._map = mmap.mmap(memfd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self._map)
        self.down = Ring(self.view, 0, ring_size)
        self.up = Ring(self.view, HEADER + ring_size, ring_size)

    @classmethod
    def create(cls, ring_size: int) -> Channel:
        memfd = os.memfd_create("pan-worker", os.MFD_CLOEXEC)
        try:
            down = os.eventfd(0, os.EFD_CLOEXEC)
            up = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except OSError:
            os.close(memfd)
            raise
        return cls(memfd, down, up, ring_size, owner=True)

    @property
    def max_payload(self) -> int:
        """The most one record's body or soft-state value may be: a quarter of a ring. The
        node keeps that much of its ring free for replies while batches are out, so a reply
        of that size always has room (``WorkerCode``)."""
        return self.ring_size // 4

    def fds(self) -> tuple[int, int, int]:
        return self.memfd, self.wake_down, self.wake_up

    # -- wake-ups --------------------------------------------------------------------
    def wake_worker(self) -> None:
        os.eventfd_write(self.wake_down, 1)

    def wake_node(self) -> None:
        os.eventfd_write(self.wake_up, 1)

    def wait_down(self) -> None:
        """Block the worker until the node writes (the worker's only way to sleep)."""
        os.eventfd_read(self.wake_down)

    def wait_up(self, timeout_s: float, pidfd: int) -> bool:
        """Block the node until the worker writes or ends, at most ``timeout_s``; True when
        woken (by a record or by the worker's end: read ``up`` and check the process)."""
        poller = select.poll()
        poller.register(self.wake_up, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        ready = poller.poll(max(0, int(timeout_s * 1000 + 0.999)))
        if ready:
            try:
                os.eventfd_read(self.wake_up)
            except BlockingIOError:
                pass
        return bool(ready)

    def close(self) -> None:
        self.down = self.up = None  # type: ignore[assignment]
        try:
            self.view.release()
            self._map.close()
        except BufferError:  # a record's view is still held: the mapping goes with the last one
            pass
        for fd in (self.memfd, self.wake_down, self.wake_up):
            try:
                os.close(fd)
            except OSError:
                pass
