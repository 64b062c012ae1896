"""UDP netlinks and the node's event loop.

``UdpTransport`` opens one UDP socket per address family (IPv4, IPv6), receives datagrams
straight into the node's pool buffers (``recvmsg_into``: the capsule arrives in a segment
without a copy) and gives the node one ``UdpLink`` per neighbour, which sends a capsule's
buffer list with one ``sendmsg`` (no join). Each neighbour (up to ``limits.neighbour_sockets``)
also gets a receive socket of its own on the same port, so one neighbour's flood queues in
its own buffer and the node shares its time between the neighbours' sockets
(``pan_runtime.net.fairshare``). A datagram from an endpoint that is not a configured
neighbour, a datagram cut short by the buffer size, or a capsule too large for a
neighbour's MTU is a counted drop with a reason; so is what the kernel dropped for want of
room in a neighbour's buffer (``neighbour_over_share``) or the node's (``socket_overflow``).
The node goes on.

``EventLoop`` is a ``selectors`` loop (epoll on Linux) with a timer heap. Each turn reads
each readable socket as far as its fair share allows (at most ``rx_burst`` datagrams), then
evaluates the node's bounded queue one capsule at a time (``Node.process``), and blocks in
``select`` only while the queue is empty. Where the compiled fast path is built, each
socket's burst is read by it instead (``pan_runtime.net.udp_fast``): it finishes common
forwards in C and hands every other datagram to ``received``, the same entry the Python
loop uses. Why not asyncio: a turn of this loop is a handful of direct calls, and asyncio's
protocol callbacks would add a call layer and a ``bytes`` object per datagram (no
``recvmsg_into`` into our pool); measured numbers are in ``docs/network.md``.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import ipaddress
import logging
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import ConfigError, LinkError, PanError
from pan_runtime.net.balance import MIN_DATAGRAMS as BALANCE_LEAST
from pan_runtime.net.balance import moves as balance_moves
from pan_runtime.net.fairshare import FairShare
from pan_runtime.net.lanes import Lane
from pan_runtime.net.udp_fast import PATHS, UdpFastPath, node_lock, unavailable_reason
from pan_runtime.net.udp_fast import wait as fast_wait
from pan_runtime.net.udp_fast import waits as fast_waits
from pan_runtime.node.ledger import OVER_SHARE, THROTTLED
from pan_runtime.node.links import NetLink
from pan_runtime.node.threadcpus import check as check_cpus
from pan_runtime.node.threadcpus import pin

if TYPE_CHECKING:
    from pan_runtime.node.node import Node

__all__ = ["EventLoop", "UdpLink", "UdpTransport", "MAX_DATAGRAM"]

log = logging.getLogger("pan.udp")

#: the largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP)
MAX_DATAGRAM = 65507
_SOCK_BUFFER = 4 << 20
_FOLD_EVERY_S = 1.0
_TRUNC = int(socket.MSG_TRUNC)  # a plain int: `&` on the IntFlag runs Python code per datagram
#: sockets of one port for the node and each neighbour (Linux; elsewhere all share one)
_REUSEPORT: int | None = getattr(socket, "SO_REUSEPORT", None) if sys.platform.startswith("linux") else None
#: getsockopt(SOL_SOCKET, SO_MEMINFO): the socket's memory counters; [8] is what it dropped
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
_MEMINFO_DROPS = 8
_OVERFLOW = "socket_overflow"
_PEEK = int(socket.MSG_PEEK)


class EventLoop:
    """Readiness callbacks on file objects plus timers; ``run_once`` is one turn."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.running = False
        #: called at the start of each turn; each returns the seconds until it needs to run
        #: again (0: it has work queued now) or None (only when I/O arrives)
        self.idle: list[Callable[[], float | None]] = []
        self.turns = 0
        #: callbacks that raised (each logged with its traceback)
        self.errors = 0
        #: UDP sockets whose datagrams the compiled fast path reads while the loop waits
        #: (descriptor -> the fast path reading it; one fast path reads several)
        self.fast: dict[int, UdpFastPath] = {}
        self._fast_c: dict[int, Any] = {}
        #: descriptors whose callback the fast path's wait calls itself (``add_ready``)
        self._ready_fds: set[int] = set()
        self._paths: list[UdpFastPath] = []
        self.fast_burst = 64
        #: the node's lock when its fast path runs on several threads (``udp_fast.node_lock``):
        #: this loop's thread holds it except while it waits or makes a system call
        self.lock: Any = None
        #: called once, under the lock, at the start of the next turn (threads to start)
        self.starting: list[Callable[[], None]] = []
        #: system calls that waited for readiness (epoll_wait, in C or through selectors)
        self.waits = 0
        self._epoll = isinstance(self.sel, getattr(selectors, "EpollSelector", ()))
        self._map = self.sel.get_map()

    def add_fast(self, fast: UdpFastPath, burst: int, fd: int | None = None) -> None:
        """Let ``fast`` read socket ``fd`` (default: its own) inside the wait (epoll only;
        elsewhere the socket's reader does)."""
        if self._epoll:
            fd = fast.fd if fd is None else fd
            self.fast[fd] = fast
            self._fast_c[fd] = fast.c
            if fast not in self._paths:
                self._paths.append(fast)
            self.fast_burst = burst

    def remove_fast(self, fast: UdpFastPath, fd: int | None = None) -> None:
        """Stop ``fast`` reading socket ``fd`` inside the wait (None: every socket it reads)."""
        for f_fd, f in list(self.fast.items()):
            if f is fast and (fd is None or f_fd == fd):
                del self.fast[f_fd]
                del self._fast_c[f_fd]
        if fast not in self.fast.values() and fast in self._paths:
            self._paths.remove(fast)

    def add(self, fileobj: Any, events: int, callback: Callable[[int], None]) -> None:
        self.sel.register(fileobj, events, callback)

    def modify(self, fileobj: Any, events: int, callback: Callable[[int], None]) -> None:
        self.sel.modify(fileobj, events, callback)

    def add_ready(self, fd: int, callback: Callable[..., int]) -> None:
        """Watch ``fd`` for reading with a callback the fast path's wait calls itself, going on
        waiting after it (epoll): it returns the monotonic ns by which the loop must turn
        (0: no need, 1: at once). Without the fast path the loop calls it as any callback,
        with False (``in_wait``)."""
        self.add(fd, selectors.EVENT_READ, lambda _m: callback(False))
        if self._epoll:
            self._fast_c[fd] = callback
            self._ready_fds.add(fd)

    def remove(self, fileobj: Any) -> None:
        if fileobj in self._ready_fds:
            self._ready_fds.discard(fileobj)
            self._fast_c.pop(fileobj, None)
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay_s, self._seq, fn))

    def run_once(self, timeout: float | None = None) -> None:
        """Wait for I/O (up to ``timeout``, 0 when work is pending), run callbacks, timers, idle work
        (under the node's lock when it has one; the wait drops it)."""
        lock = self.lock
        if lock is None:
            while self.starting:
                self.starting.pop(0)()
            self._turn(timeout)
            return
        with lock:
            while self.starting:
                self.starting.pop(0)()
            self._turn(timeout)

    def _turn(self, timeout: float | None) -> None:
        for fn in self.idle:
            wait = fn()
            if wait is not None:
                timeout = wait if timeout is None else min(timeout, wait)
        if self._timers:
            wait = max(0.0, self._timers[0][0] - time.monotonic())
            timeout = wait if timeout is None else min(timeout, wait)
        if self.fast:
            paths = self._paths
            for f in paths:
                f.lend()
            before = fast_waits()
            try:
                ready = fast_wait(self.sel.fileno(), self._fast_c, timeout, self.fast_burst, self.lock)
            except Exception:  # a bug in a hand-over to Python: the loop must go on serving
                self._failed("the fast path's wait")
                ready = []
            finally:
                self.waits += fast_waits() - before
                for f in paths:
                    f.reclaim()
            keys = self._map
            for fd, mask in ready:
                key = keys.get(fd)
                if key is not None:
                    self._call(key.data, mask)
        else:
            self.waits += 1
            for key, mask in self.sel.select(timeout):
                self._call(key.data, mask)
        if self._timers:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                self._call(fn)
        self.turns += 1

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self._failed(getattr(fn, "__qualname__", repr(fn)))

    def _failed(self, what: str) -> None:
        """A callback raised (a bug, not bad input): log it, count it, keep the loop running."""
        self.errors += 1
        log.exception("event loop: %s raised; the node goes on", what)

    def run(self, should_stop: Callable[[], bool] | None = None, tick: float = 0.5) -> None:
        """Run turns until ``stop()`` (or ``should_stop()`` returns True)."""
        self.running = True
        while self.running and not (should_stop and should_stop()):
            self.run_once(tick)

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        self.sel.close()


class UdpLink(NetLink):
    """The link to one neighbour: its endpoint on one of the transport's sockets."""

    def __init__(self, sock: socket.socket, address: NodeAddress, endpoint: tuple[str, int], mtu: int):
        if not 0 < mtu <= MAX_DATAGRAM:
            raise LinkError(f"MTU {mtu} for neighbour {address} is outside 1..{MAX_DATAGRAM}")
        self.sock = sock
        self.address = address
        self.endpoint = endpoint
        self.mtu = mtu
        self.sent = 0
        self.sent_bytes = 0
        self.largest_sent = 0
        self.received = 0
        self.received_bytes = 0
        self.errors = 0
        self.last_error = ""
        #: the neighbour's own receive socket (None: its datagrams arrive on ``sock``)
        self.rx: socket.socket | None = None
        #: datagrams the kernel dropped for want of room in ``rx`` (``neighbour_over_share``)
        self.over_share = 0
        self._rx_drops = 0
        self._sendmsg = sock.sendmsg
        #: sendmsg calls made for this neighbour from Python (the fast path counts its own)
        self.send_calls = 0
        self.send_datagrams = 0

    @property
    def rx_fd(self) -> int:
        """The descriptor of the neighbour's own receive socket, or -1."""
        return self.rx.fileno() if self.rx is not None else -1

    def own_socket(self, rx: socket.socket) -> None:
        """Receive the neighbour's datagrams on ``rx`` from now on (its drops count from here)."""
        self.rx = rx
        self._rx_drops = _dropped(rx)

    def take_over_share(self) -> int:
        """Datagrams the kernel dropped in ``rx`` since the last call (added to ``over_share``)."""
        if self.rx is None:
            return 0
        total = _dropped(self.rx)
        n = (total - self._rx_drops) & 0xFFFFFFFF  # the kernel's counter is 32 bits
        self._rx_drops = total
        self.over_share += n
        return n

    def send(self, buffers: list[memoryview], next_hop: NodeAddress) -> bool:
        self.send_calls += 1
        try:
            n = self._sendmsg(buffers, (), 0, self.endpoint)
        except OSError as exc:  # EAGAIN when the socket buffer is full, ENOBUFS, ...
            self.errors += 1
            self.last_error = exc.strerror or type(exc).__name__
            return False
        self.send_datagrams += 1
        self.sent += 1
        self.sent_bytes += n
        if n > self.largest_sent:
            self.largest_sent = n
        return True

    def info(self) -> dict[str, Any]:
        return {
            "endpoint": _endpoint_text(self.endpoint),
            "mtu": self.mtu,
            "largest_capsule": self.mtu,
            "sent": self.sent,
            "sent_bytes": self.sent_bytes,
            "largest_sent": self.largest_sent,
            "received": self.received,
            "received_bytes": self.received_bytes,
            "errors": self.errors,
            "last_error": self.last_error,
            "own_socket": self.rx is not None,
            "over_share": self.over_share,
        }


def _probe(fam: int, host: str, port: int) -> int:
    """Bind (and close) a socket without ``SO_REUSEPORT`` to ``host``:``port``, so a port in use
    fails as it would without sharing; returns the port (a free one for port 0)."""
    with socket.socket(fam, socket.SOCK_DGRAM) as probe:
        if fam == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def _dropped(sock: socket.socket) -> int:
    """Datagrams the kernel dropped on ``sock`` so far (0 where it does not say)."""
    try:
        info = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4 * (_MEMINFO_DROPS + 1))
    except OSError:
        return 0
    if len(info) < 4 * (_MEMINFO_DROPS + 1):
        return 0
    return int(struct.unpack_from("I", info, 4 * _MEMINFO_DROPS)[0])


def _reuse_twin(sock: socket.socket) -> socket.socket:
    """Another socket on ``sock``'s address and port (``SO_REUSEPORT``, sized and non-blocking
    alike): the kernel spreads unconnected peers' datagrams over the group."""
    twin = socket.socket(sock.family, socket.SOCK_DGRAM)
    try:
        if sock.family == socket.AF_INET6:
            twin.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                twin.setsockopt(socket.SOL_SOCKET, opt, _SOCK_BUFFER)
        twin.setsockopt(socket.SOL_SOCKET, _REUSEPORT, 1)  # type: ignore[arg-type]
        twin.bind(sock.getsockname()[:2] if sock.family == socket.AF_INET else sock.getsockname())
    except OSError as exc:
        twin.close()
        raise LinkError(f"cannot open another socket on UDP {_endpoint_text(sock.getsockname()[:2])}: {exc.strerror}") from None
    twin.setblocking(False)
    return twin


def _endpoint_text(ep: tuple[str, int]) -> str:
    return f"[{ep[0]}]:{ep[1]}" if ":" in ep[0] else f"{ep[0]}:{ep[1]}"


def _norm(host: str) -> str:
    return str(ipaddress.ip_address(host.split("%", 1)[0]))


class UdpTransport:
    """The node's UDP sockets (one per address family) and its neighbours' links."""

    def __init__(
        self,
        node: Node,
        listen: list[tuple[str, int]],
        loop: EventLoop,
        *,
        accept_unknown_peers: bool = False,
        rx_burst: int = 64,
        rx_batch: int = 64,
        udp_gso: bool = True,
        io_uring: str = "auto",
    ):
        self.node = node
        self.loop = loop
        self.accept_unknown_peers = accept_unknown_peers
        self.rx_burst = rx_burst
        #: the most datagrams one receive system call reads (the fast path's recvmmsg)
        self.rx_batch = rx_batch
        #: the fast path may send forwards as UDP GSO messages (limits.udp_gso)
        self.udp_gso = udp_gso
        #: "auto": the fast path's wait sends and waits in one io_uring_enter where it can (limits.io_uring)
        self.io_uring = io_uring
        #: system calls the Python path made: receives (recvmsg) and peeks (its sends count per link)
        self.recv_calls = 0
        self.recv_datagrams = 0
        self.peeks = 0
        self.sockets: dict[int, socket.socket] = {}
        self.links: dict[NodeAddress, UdpLink] = {}
        self._peers: dict[tuple[str, int], UdpLink] = {}
        self.unknown_peers = 0
        self.truncated = 0
        self._scratch = bytearray(MAX_DATAGRAM)
        self._peek = bytearray(1)
        #: bumped when a neighbour is added, so the fast path refreshes its copy
        self.generation = 0
        self._fast: dict[socket.socket, UdpFastPath] = {}
        cfg = node.config
        #: the Python path's fair share between the receive sockets (the fast path keeps its own)
        self.share = FairShare(cfg.fair_quantum_us * 1000)
        #: each socket read -> the node's socket of its family (itself for a node socket)
        self._family: dict[socket.socket, socket.socket] = {}
        #: neighbours may have receive sockets of their own (Linux, limits.neighbour_sockets > 0)
        self.own_sockets = _REUSEPORT is not None and cfg.neighbour_sockets > 0
        self._overflow: dict[socket.socket, int] = {}
        #: capsules waiting in the node's queue before the Python path stops reading (batches):
        #: the rest waits in the neighbours' own buffers, where the fair share picks from
        self._backlog = max(2 * cfg.batch, rx_burst)
        #: True when the configuration turned the fast path off (not a missing build)
        self.fast_path_declined = not cfg.fast_path
        #: why capsules all take the Python path ("" when the compiled fast path is on)
        self.fast_path_off = "limits.fast_path is false" if not cfg.fast_path else unavailable_reason() or ""
        #: the node's lock and the extra fast-path threads (``limits.threads`` - 1; lanes.py)
        self.lock: Any = None
        self.lanes: list[Lane] = []
        self._rx_lane: dict[socket.socket, Lane] = {}
        self._own_count = 0
        #: each neighbour's datagrams received at the last balance look; sockets moved since
        self._seen: dict[UdpLink, int] = {}
        self.moves = 0
        #: sockets taken from the event loop's thread since the last fold (``_unread``)
        self._gone: list[int] = []
        #: the CPU the event loop's thread runs on (``limits.thread_cpus``; None: the scheduler's)
        self.cpu: int | None = None
        if cfg.thread_cpus:
            check_cpus(cfg.thread_cpus)  # before anything is opened: a refusal leaves nothing behind
            self.loop.starting.append(self._pin)
        if cfg.threads > 1:
            self._start_lanes(cfg.threads)
        try:
            for host, port in listen:
                self._open(host, port)
        except BaseException:
            self.close()
            raise
        node.counter_sources.append(self._fold_overflows)
        self.loop.call_later(_FOLD_EVERY_S, self._fold)

    def _start_lanes(self, threads: int) -> None:
        """Make the node's lock and ``threads - 1`` lanes; they start with the loop's next turn."""
        why = self.fast_path_off or ("" if _REUSEPORT is not None and self.loop._epoll else "SO_REUSEPORT and epoll (Linux) are needed")
        if why:
            raise ConfigError(f"limits.threads = {threads} needs the compiled fast path: {why}")
        self.lock = self.loop.lock = node_lock()
        self.lanes = [Lane(self, i, self.lock) for i in range(1, threads)]
        self.loop.starting.append(self._run_lanes)

    def _pin(self) -> None:
        self.cpu = pin(0, self.node.config.thread_cpus)

    def _run_lanes(self) -> None:
        for lane in self.lanes:
            if not lane.alive:
                lane.start()

    def locked(self) -> Any:
        """The node's lock (a no-op context with one thread)."""
        return self.lock if self.lock is not None else contextlib.nullcontext()

    def _open(self, host: str, port: int) -> None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        if fam in self.sockets:
            raise LinkError(f"a second {'IPv6' if fam == socket.AF_INET6 else 'IPv4'} listen address {host}:{port}: one socket per address family")
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, _SOCK_BUFFER)
                except OSError:
                    pass
            if self.own_sockets or self.lanes:
                # the neighbours' and the threads' sockets share the port; a probe without SO_REUSEPORT first,
                # so a port another process holds (another node, too) is still an error
                port = _probe(fam, host, port)
                sock.setsockopt(socket.SOL_SOCKET, _REUSEPORT, 1)  # type: ignore[arg-type]
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            ep = _endpoint_text((host, port))
            if exc.errno == errno.EADDRINUSE:
                raise LinkError(f"UDP {ep} is already in use by another process; pick another port in node.listen") from None
            raise LinkError(f"cannot listen on UDP {ep}: {exc.strerror}") from None
        sock.setblocking(False)
        self.sockets[fam] = sock
        self._family[sock] = sock
        self.share.add(sock.fileno())
        if not self.fast_path_off:
            fast = self._fast[sock] = UdpFastPath(self, sock, self.rx_batch, lock=self.lock, gso=self.udp_gso)
            self.loop.add_fast(fast, self.rx_burst)
        self.loop.add(sock, selectors.EVENT_READ, lambda _mask, s=sock: self._readable(s))
        for lane in self.lanes:  # a socket of each lane's own on the same address and port
            lane.open(sock, _reuse_twin(sock))

    def _own_socket(self, link: UdpLink) -> None:
        """Give ``link``'s neighbour a receive socket of its own: bound to the node's address and
        port, connected to the neighbour, so the kernel queues its datagrams there and only
        there. Past ``limits.neighbour_sockets``, or when the kernel refuses, it shares the
        node's socket (logged)."""
        cfg = self.node.config
        if not self.own_sockets or link.rx is not None:
            return
        if sum(1 for lk in self.links.values() if lk.rx is not None) >= cfg.neighbour_sockets:
            log.warning("neighbour %s shares the node's socket: limits.neighbour_sockets (%d) are in use", link.address, cfg.neighbour_sockets)
            return
        node_sock = link.sock
        rx = socket.socket(node_sock.family, socket.SOCK_DGRAM)
        try:
            if node_sock.family == socket.AF_INET6:
                rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            rx.setsockopt(socket.SOL_SOCKET, _REUSEPORT, 1)  # type: ignore[arg-type]
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.neighbour_buffer)
            rx.bind(node_sock.getsockname())
            rx.connect(link.endpoint)
        except OSError as exc:
            rx.close()
            log.warning("neighbour %s shares the node's socket: cannot open its own (%s)", link.address, exc.strerror or exc)
            return
        rx.setblocking(False)
        link.own_socket(rx)
        self._family[rx] = node_sock
        turn = self._own_count % (len(self.lanes) + 1)  # the threads take neighbours in turn
        self._own_count += 1
        self._read_on(rx, node_sock, turn)

    def _read_on(self, rx: socket.socket, node_sock: socket.socket, thread: int) -> None:
        """Have fast-path thread ``thread`` (0: the event loop's) read neighbour socket ``rx``."""
        if thread:
            lane = self._rx_lane[rx] = self.lanes[thread - 1]
            lane.add(rx, node_sock=node_sock)
            return
        self.share.add(rx.fileno())
        fast = self._fast.get(node_sock)
        if fast is not None:
            self.loop.add_fast(fast, self.rx_burst, rx.fileno())
        self.loop.add(rx, selectors.EVENT_READ, lambda _mask, s=rx: self._readable(s))

    def _unread(self, rx: socket.socket, node_sock: socket.socket) -> None:
        """Stop whichever thread reads neighbour socket ``rx`` reading it."""
        lane = self._rx_lane.pop(rx, None)
        if lane is not None:
            lane.remove(rx)  # its thread's fair share lets the socket go at its next turn
            return
        fast = self._fast.get(node_sock)
        if fast is not None:
            self.loop.remove_fast(fast, rx.fileno())
            # its fair share must not wait for a socket it no longer reads; again at the next
            # fold, in case a visit under way on the loop's thread marked it busy meanwhile
            fast.let_go(rx.fileno())
            self._gone.append(rx.fileno())
        self.share.remove(rx.fileno())
        self.loop.remove(rx)

    def balance(self, least: int = BALANCE_LEAST) -> int:
        """Even out what the fast-path threads read: move neighbours' sockets by what each
        brought since the last look, when they brought ``least`` datagrams or more in all
        (``balance.py``; the counters' fold does it once a second). Returns the sockets moved."""
        with self.locked():
            self.node.sync_counters()
            return self._balance(least)

    def _balance(self, least: int = BALANCE_LEAST) -> int:
        if not self.lanes:
            return 0
        loads: dict[UdpLink, int] = {}
        threads: dict[UdpLink, int] = {}
        seen: dict[UdpLink, int] = {}
        for link in self.links.values():
            if link.rx is None:
                continue
            seen[link] = link.received
            loads[link] = link.received - self._seen.get(link, 0)
            lane = self._rx_lane.get(link.rx)
            threads[link] = 0 if lane is None else lane.index
        self._seen = seen
        moved = 0
        for link, thread in balance_moves(loads, threads, len(self.lanes) + 1, least):
            assert link.rx is not None
            self._unread(link.rx, link.sock)
            self._read_on(link.rx, link.sock, thread)
            moved += 1
        self.moves += moved
        if moved:
            log.info("fast-path threads: %d neighbour socket(s) moved to even out the threads' traffic", moved)
        return moved

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets.values()]

    def add_neighbor(self, address: NodeAddress, endpoint: tuple[str, int], mtu: int = 9216) -> UdpLink:
        """Make the link to a neighbour and register it with the node."""
        with self.locked():
            return self._add_neighbor(address, endpoint, mtu)

    def _add_neighbor(self, address: NodeAddress, endpoint: tuple[str, int], mtu: int) -> UdpLink:
        host = _norm(endpoint[0])
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self.sockets.get(fam)
        if sock is None:
            raise LinkError(
                f"neighbour {address} at {_endpoint_text(endpoint)} needs an {'IPv6' if fam == socket.AF_INET6 else 'IPv4'} listen address"
            )
        link = UdpLink(sock, address, (host, endpoint[1]), min(mtu, MAX_DATAGRAM))
        old = self.links.get(address)
        if old is not None:
            self._close_rx(old)
        self.links[address] = link
        self._peers[(host, endpoint[1])] = link
        self._own_socket(link)  # before the node learns of it: the fast path's refresh sees it
        self.node.add_neighbor(address, link)
        self.generation += 1
        return link

    def _readable(self, sock: socket.socket) -> None:
        """Read ``sock`` (the node's socket or a neighbour's own) as far as its fair share allows."""
        self.read_python(sock, self._fast.get(self._family.get(sock, sock)))

    def read_python(self, sock: socket.socket, fast: UdpFastPath | None) -> None:
        """Read ``sock`` through ``fast`` (the fast path of the thread reading it), else, when it
        has no slot to lend, in Python."""
        if fast is not None and fast.burst(self.rx_burst, sock.fileno()):
            return
        node = self.node
        if node.config.batch > 1 and len(node.queue) >= self._backlog:
            return  # the queue is served first; meanwhile each neighbour's datagrams wait in its buffer
        src = self.share.sources.get(sock.fileno())
        if src is None:
            return
        until = self.share.visit(src)
        if until < 0:
            src.busy = self._has_datagram(sock)  # left for the others' turn
            return
        pool = node.pool
        clock = time.perf_counter_ns
        for _ in range(self.rx_burst):
            if src.vtime > until:
                break
            t0 = clock()
            try:
                slot = pool.take_slot()
            except PanError:
                # no buffer: read the datagram away so the socket does not stall, count it
                try:
                    sock.recv_into(self._scratch)
                except OSError:  # BlockingIOError included: the socket is empty
                    return
                node.stats.received += 1
                node.count_drop("pool_exhausted")
                src.vtime += clock() - t0
                continue
            self.recv_calls += 1
            try:
                n, _anc, flags, addr = sock.recvmsg_into([pool.slot_view(slot)])
            except BlockingIOError:
                pool.give_slot(slot)
                return
            except OSError as exc:  # an error the socket reported (ICMP refused on a neighbour's)
                pool.give_slot(slot)
                log.debug("recvmsg on %s: %s", sock.getsockname(), exc)
                return
            self.recv_datagrams += 1
            self.received(sock, slot, n, flags, addr)
            src.vtime += clock() - t0
        src.busy = self._has_datagram(sock)  # the other sockets first

    def _has_datagram(self, sock: socket.socket) -> bool:
        """Whether a datagram waits in ``sock`` (a peek). A socket is marked busy only on this
        evidence: a busy mark on an empty socket would hold the others back for nothing."""
        self.peeks += 1
        try:
            sock.recv_into(self._peek, 1, _PEEK)
        except OSError:  # empty (or an error the socket reported: not a datagram)
            return False
        return True

    def received(self, sock: socket.socket, slot: int, n: int, flags: int, addr: tuple[Any, ...]) -> None:
        """Take a datagram read into pool slot ``slot`` (the slot moves to the node)."""
        node = self.node
        pool = node.pool
        link = self._peers.get((addr[0], addr[1]))
        if link is None:
            try:
                link = self._unknown(addr)
            except BaseException:
                pool.give_slot(slot)  # the buffer is not lost to a failure here
                raise
            if link is None:
                pool.give_slot(slot)
                return
        link.received += 1
        link.received_bytes += n
        if flags & _TRUNC:
            pool.give_slot(slot)
            self.truncated += 1
            node.stats.received += 1
            node.count_drop("datagram_truncated", f"from {link.address}: larger than {pool.buffer_size} bytes")
            return
        node.queue.receive_segment(pool.segment_for_slot(slot, n), link.address, link)
        if node.config.batch == 1:
            # one at a time: evaluate it now, before the read that ends the burst (with
            # batches the burst stays queued, so the node can hand a runtime several at once)
            node.process()

    def _unknown(self, addr: tuple[Any, ...]) -> UdpLink | None:
        host, port = addr[0], addr[1]
        if self.accept_unknown_peers and ":" not in host:
            address = NodeAddress.from_endpoint(host, port)
            log.info("learned neighbour %s from its datagram", address)
            return self.add_neighbor(address, (host, port), self.node.pool.buffer_size)
        self.unknown_peers += 1
        self.node.stats.received += 1
        self.node.count_drop("unknown_peer", _endpoint_text((host, port)))
        if self.unknown_peers & (self.unknown_peers - 1) == 0:  # log 1, 2, 4, 8, ... times
            log.warning("dropped a datagram from unknown peer %s (%d so far)", _endpoint_text((host, port)), self.unknown_peers)
        return None

    def info(self) -> dict[str, Any]:
        with self.locked():
            return self._info()

    def _info(self) -> dict[str, Any]:
        self.node.sync_counters()
        return {
            "listen": [_endpoint_text(e) for e in self.endpoints],
            "unknown_peer_datagrams": self.unknown_peers,
            "truncated_datagrams": self.truncated,
            "fast_path": self._fast_info(),
            "syscalls": self.syscalls(),
            "neighbors": {str(a): link.info() for a, link in sorted(self.links.items())},
        }

    def _fold(self) -> None:
        # the fast path's counters, its use of code objects (the cache's LRU order) and the
        # kernel's drops reach the node at least this often even when nobody reads the statistics
        if self.sockets:
            self.node.sync_counters()
            gone, self._gone = self._gone, []
            for fd in gone:
                for fast in self._fast.values():
                    fast.let_go(fd)
            self._balance()
            self.loop.call_later(_FOLD_EVERY_S, self._fold)

    def account(self, link: UdpLink, throttled: int, runs: int, run_ns: int) -> None:
        """Fold what a fast path counted for ``link``'s neighbour: datagrams it dropped while the
        ledger throttles the neighbour, and runs it finished (with the ns they took)."""
        node = self.node
        if runs:
            node.ledger.add_runs(link.address, runs, run_ns)
        if throttled:
            link.received += throttled
            node.stats.received += throttled
            node.stats.drops[THROTTLED] += throttled
            node.ledger.count_drop(link.address, THROTTLED, throttled)

    def _fold_overflows(self) -> None:
        """Count what the kernel dropped for want of room: in a neighbour's own buffer, as that
        neighbour's ``neighbour_over_share``; in a node socket's, as ``socket_overflow``."""
        node = self.node
        for link in self.links.values():
            before = link.over_share
            n = link.take_over_share()
            if not n:
                continue
            link.received += n
            node.stats.received += n
            node.stats.drops[OVER_SHARE] += n
            node.ledger.count_drop(link.address, OVER_SHARE, n)
            if before.bit_length() != link.over_share.bit_length():  # logged at 1, 2, 4, 8, ... drops
                log.warning("neighbour %s sends more than its share: %d datagrams dropped so far", link.address, link.over_share)
        for sock in self.sockets.values():
            total = _dropped(sock)
            n = (total - self._overflow.get(sock, 0)) & 0xFFFFFFFF
            self._overflow[sock] = total
            if n:
                node.stats.received += n
                node.stats.drops[_OVERFLOW] += n

    def syscalls(self) -> dict[str, int]:
        """System calls the node's UDP traffic cost, with the datagrams they moved: receives
        (recvmmsg in the fast path, recvmsg in Python), sends (sendmmsg, sendmsg), peeks at the
        end of a fair-share visit and waits for readiness; ``per_capsule_x1000`` is all of
        them per datagram received, times 1000. ``gso_sends`` of the sends were UDP GSO
        messages, carrying ``gso_datagrams``; ``gso_refused`` the kernel refused (then sent
        again without, and GSO limited or off for that socket). ``uring_enters``: the fast path's
        io_uring_enter calls, each a visit's last sends (``uring_sends`` messages, counted in
        ``send_datagrams``) and the wait after them (``limits.io_uring``; ``waits`` counts
        epoll_wait calls only)."""
        out = {
            "recv_calls": self.recv_calls,
            "recv_datagrams": self.recv_datagrams,
            "send_calls": sum(link.send_calls for link in self.links.values()),
            "send_datagrams": sum(link.send_datagrams for link in self.links.values()),
            "peeks": self.peeks,
            "waits": self.loop.waits + sum(lane.waits for lane in self.lanes),
            "gso_sends": 0,
            "gso_datagrams": 0,
            "gso_refused": 0,
            "uring_enters": 0,
            "uring_sends": 0,
        }
        for fast in self._fast_paths():
            for k, v in fast.syscalls.items():
                out[k] += v
        calls = out["recv_calls"] + out["send_calls"] + out["peeks"] + out["waits"] + out["uring_enters"]
        out["per_capsule_x1000"] = calls * 1000 // out["recv_datagrams"] if out["recv_datagrams"] else 0
        return out

    def _fast_info(self) -> dict[str, Any]:
        if self.fast_path_off:
            return {"on": False, "why_off": self.fast_path_off}
        out: dict[str, Any] = {"on": True, **dict.fromkeys(PATHS, 0), "crossings": 0, "batch_calls": 0, "batched": 0}
        for fast in self._fast_paths():
            for k, v in fast.paths.items():
                out[k] += v
            out["crossings"] += fast.crossings
            calls, ran = fast.batches
            out["batch_calls"] += calls
            out["batched"] += ran
        if self.lock is not None:  # the serial part of several threads' work, and its waits
            out["lock_held_ns"] = int(self.lock.held_ns)
            out["lock_waits"] = int(self.lock.contended)
            out["neighbour_moves"] = self.moves  # sockets moved between threads (balance.py)
        # each thread's share (the event loop's first): the figures above are their sums; and
        # the CPU it is pinned to (limits.thread_cpus)
        out["threads"] = [
            {k: sum(f.paths[k] for f in group) for k in PATHS} | ({} if cpu is None else {"cpu": cpu})
            for group, cpu in [(list(self._fast.values()), self.cpu)] + [(list(lane.fast.values()), lane.cpu) for lane in self.lanes]
        ]
        return out

    def _fast_paths(self) -> list[UdpFastPath]:
        """Every fast path of the node: the event loop's, then each lane's."""
        return [*self._fast.values(), *(f for lane in self.lanes for f in lane.fast.values())]

    def _close_rx(self, link: UdpLink) -> None:
        rx = link.rx
        if rx is None:
            return
        link.rx = None
        self._unread(rx, link.sock)
        self._family.pop(rx, None)
        rx.close()

    def close(self) -> None:
        with self.locked():
            self._close()
        if self.lock is not None and self.loop.lock is self.lock:
            self.loop.lock = None
            if self._run_lanes in self.loop.starting:
                self.loop.starting.remove(self._run_lanes)
        if self._pin in self.loop.starting:
            self.loop.starting.remove(self._pin)

    def _close(self) -> None:
        for lane in self.lanes:  # every thread ends before a socket it reads is closed
            lane.close()
        for fast in self._fast.values():
            self.loop.remove_fast(fast)
            fast.close()
        self._fast.clear()
        try:
            self.node.counter_sources.remove(self._fold_overflows)
        except ValueError:
            pass
        for link in self.links.values():
            self._close_rx(link)
        for sock in self.sockets.values():
            self.loop.remove(sock)
            sock.close()
        self.sockets.clear()
        self._family.clear()
