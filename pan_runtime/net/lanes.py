"""More threads reading a node's UDP sockets: ``limits.threads`` above 1.

A ``Lane`` is one extra thread of the node's fast path (the event loop's own thread is lane
0). It opens a socket of its own on each of the node's listen addresses and ports
(``SO_REUSEPORT``: the kernel spreads the datagrams of unconnected peers over the group by
their addresses and ports), runs its own ``UdpFastPath`` on each and its own ``epoll``, and
reads the receive sockets of the neighbours the transport gives it (neighbours' own sockets
go to the lanes in turn). So each thread has its own receive sockets, pool slots lent,
fair-share clocks and counters; the counters reach the node's statistics when they are
folded (``UdpFastPath.flush``), which sums the threads.

What runs in parallel is what the kernel does: ``epoll_wait``, ``recvmmsg`` and ``sendmmsg``
are made with the GIL and the node's lock (``udp_fast.node_lock``) released. Everything
else — the node's Python code (hand-overs, tables, the pool, statistics) and every entry into
a runtime — runs under that lock, one thread at a time, as it did with one thread: a wasm
Store, a native image's support state, a JVM lane and restricted_py's accounting are made
for one caller at a time, and host functions called from a run touch the node's Python
objects. A fault in one thread's run is handled by the same node code under the lock, so it
is contained as with one thread.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import ConfigError
from pan_runtime.net.udp_fast import UdpFastPath
from pan_runtime.net.udp_fast import wait as fast_wait
from pan_runtime.net.udp_fast import waits as fast_waits
from pan_runtime.node.threadcpus import pin

if TYPE_CHECKING:
    from pan_runtime.net.udp import UdpTransport

__all__ = ["Lane"]

log = logging.getLogger("pan.lanes")

#: the longest a lane waits without looking at its state (stop() also wakes it at once)
_TICK_S = 1.0
#: how long close waits for a lane's thread to end (a guard: a turn ends within a wait)
_JOIN_S = 30.0
#: the most capsules a lane evaluates from the node's queue after its turn (batches)
_PROCESS = 256


class Lane:
    """One more thread of the node's fast path, with sockets of its own; see the module docstring."""

    def __init__(self, transport: UdpTransport, index: int, lock: Any):
        self.transport = transport
        self.index = index
        self.lock = lock
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        #: the node socket each fast path serves -> this lane's fast path on its port
        self.fast: dict[socket.socket, UdpFastPath] = {}
        #: this lane's own socket per node socket
        self.sockets: dict[socket.socket, socket.socket] = {}
        self._fast_c: dict[int, Any] = {}
        self._readers: dict[int, tuple[socket.socket, UdpFastPath]] = {}
        #: sockets taken from this thread since its last turn (``remove``)
        self._gone: list[int] = []
        self._thread = threading.Thread(target=self._run, name=f"pan-lane-{index}", daemon=True)
        self._stopping = False
        #: the CPU this thread runs on (``limits.thread_cpus``; None: the scheduler's choice)
        self.cpu: int | None = None
        #: epoll_wait calls this lane made; turns that raised (each logged)
        self.waits = 0
        self.errors = 0

    def open(self, node_sock: socket.socket, sock: socket.socket) -> None:
        """Read ``sock`` (bound to ``node_sock``'s address and port with ``SO_REUSEPORT``) here,
        with a fast path serving ``node_sock``'s neighbours."""
        fast = UdpFastPath(self.transport, sock, self.transport.rx_batch, serves=node_sock, lock=self.lock,
                           gso=self.transport.udp_gso)
        self.fast[node_sock] = fast
        self.sockets[node_sock] = sock
        self.add(sock, fast)

    def add(self, sock: socket.socket, fast: UdpFastPath | None = None, node_sock: socket.socket | None = None) -> None:
        """Read ``sock`` on this lane (a neighbour's own socket: pass its node socket)."""
        if fast is None:
            assert node_sock is not None
            fast = self.fast[node_sock]
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._fast_c[fd] = fast.c
        self._readers[fd] = (sock, fast)
        self.transport.share.add(fd)

    def remove(self, sock: socket.socket) -> None:
        """Stop reading ``sock`` (before it is closed)."""
        fd = sock.fileno()
        if self._readers.pop(fd, None) is None:
            return
        self._fast_c.pop(fd, None)
        self.transport.share.remove(fd)
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        self._gone.append(fd)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.cpu = pin(self.index, self.transport.node.config.thread_cpus)
        except ConfigError:  # checked when the node started: a CPU taken since; it serves where it started
            self.errors += 1
            log.exception("fast-path thread %d stays on the CPUs it started with (the event loop thread's)", self.index)
        lock = self.lock
        lock.acquire()
        try:
            while not self._stopping:
                try:
                    self._turn()
                except Exception:  # a bug in a hand-over: the thread goes on serving
                    self.errors += 1
                    log.exception("fast-path thread %d: a turn raised; it goes on", self.index)
        finally:
            lock.release()

    def _turn(self) -> None:
        paths = list(self.fast.values())
        if self._gone:  # sockets taken from this thread: its fair share lets them go (here,
            # between visits: a visit under way when one was taken could mark it busy again)
            gone, self._gone = self._gone, []
            for fd in gone:
                for f in paths:
                    f.let_go(fd)
        for f in paths:
            f.lend()
        # batches this thread handed to workers: their budget and demotion looks are made here
        # too (the event loop's wait may sleep past them), and the wait ends by the next one
        due = self.transport.node.offload.out_look()
        timeout = _TICK_S if due is None else min(_TICK_S, due)
        before = fast_waits()
        try:
            ready = fast_wait(self._epoll.fileno(), self._fast_c, timeout, self.transport.rx_burst, self.lock)
        finally:
            self.waits += fast_waits() - before
            for f in paths:
                f.reclaim()
        for fd, _mask in ready:
            got = self._readers.get(fd)
            if got is not None:  # no slot was free to lend: the Python path reads it
                self.transport.read_python(got[0], got[1])
        node = self.transport.node
        if node.queue:
            node.process(_PROCESS)

    def stop(self) -> None:
        """End the thread (the caller may hold the node's lock: it is freed while waiting)."""
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        if not self._thread.is_alive():
            return
        depth = self.lock.suspend()
        try:
            self._thread.join(_JOIN_S)
        finally:
            self.lock.resume(depth)
        if self._thread.is_alive():
            log.error("fast-path thread %d did not end within %.0f s", self.index, _JOIN_S)

    def close(self) -> None:
        """Stop the thread, fold its counters in, close its sockets (a second call does nothing)."""
        if self._wake < 0:
            return
        self.stop()
        for sock in list(s for s, _f in self._readers.values()):
            self.remove(sock)
        for fast in self.fast.values():
            fast.close()
        for sock in self.sockets.values():
            sock.close()
        self.fast.clear()
        self.sockets.clear()
        self._epoll.close()
        os.close(self._wake)
        self._wake = -1
