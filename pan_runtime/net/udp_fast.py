"""The compiled fast path of a UDP netlink: common capsules finished in C, the rest in Python.

A forwarded capsule's cost in a ``pan node`` process is dominated by how much the process
touches per capsule, not by the code it runs: every Python frame on the path is paid again
with cold caches after each wake-up (``docs/network.md``). ``pan_runtime.net._fastpath`` (a
small C extension, built at install when a C compiler is present) therefore does the event
loop's ``epoll_wait`` itself, reads each datagram into a pool slot this module lends it and,
when it comes from a neighbour, is not truncated, has a well-formed header with hop limit
left, its code object is installed and not quarantined, and the node's queue is empty, runs
the code: through the runtime's C entry, else through its Python entry without an
environment (``fast_accept``), else Python runs it. A plain forward toward another node
over this socket's neighbours, within the MTU, is sent and counted in C, and the wait goes
on without returning to the event loop.

The door to the node is narrow: the fast path copies the node's tables from a snapshot
(``pan_runtime.node.snapshot``, refreshed when its generation moves) and gives every capsule
it does not finish to ``Node.hand_over`` in one call from C, together with the slot the
datagram is in and what the run gave; the answer lends C the next slot. A capsule whose
code reaches the node's host during the run is claimed for Python at that moment
(``materialize``, the hook this module registers with the node's PNI server, which calls it
the first time such a call needs the environment) and handed over after the run. Every rule of the node (drops and their
reasons, deliveries, demand loading, faults and quarantine) is so written once, in Python.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import PanError, RuntimeFault
from pan_runtime.node.snapshot import FastSnapshot, generation, queued, snapshot
from pan_runtime.plugin.fastentry import FastEntry
from pan_runtime.plugin.runtime import as_fault

if TYPE_CHECKING:
    import socket

    from pan_runtime.net.udp import UdpLink, UdpTransport
    from pan_runtime.node.cache import CacheEntry
    from pan_runtime.plugin.runtime import LoadedCode

try:
    from pan_runtime.net import _fastpath
except ImportError as exc:  # built at install only where a C compiler was found
    _fastpath = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = ""

__all__ = [
    "PATHS",
    "UdpFastPath",
    "available",
    "node_lock",
    "unavailable_reason",
    "uring_reason",
    "wait",
    "waits",
]

log = logging.getLogger(__name__)

#: how the datagrams a fast path read went: carried out in C after the code ran (through a C
#: entry or ``fast_accept``); run in Python (a runtime with neither entry); handed to Python
#: after the code ran (another verdict, the code reached the host, a run past the time
#: budget); to the node's ordinary path before any run (unknown peer, malformed, missing
#: code, ...); dropped in C (a neighbour the ledger throttles); and written by C into the
#: ring of the worker process of their code object (``pan_runtime/net/_fastpath_worker.c``)
PATHS = ("finished_in_c", "python_runs", "handed_over", "slow", "dropped_in_c", "to_worker")

#: the fewest slots a turn lends: two, so a lone capsule's receive comes back short and the
#: socket is known empty without a second call
_FEW = 2


def available() -> bool:
    """True when the C extension is built and importable."""
    return _fastpath is not None


def unavailable_reason() -> str | None:
    """Why the fast path cannot run here (None when it can)."""
    if _fastpath is not None:
        return None
    return f"pan_runtime.net._fastpath is not built ({_IMPORT_ERROR}); reinstall pan with a C compiler on PATH"


def wait(epfd: int, fast: dict[int, Any], timeout: float | None, limit: int, lock: Any = None) -> list[tuple[int, int]]:
    """``epoll_wait`` with the fast sockets' bursts read in C (``fast``: fd -> the ``UdpFastPath.c``
    reading it, the node's socket and its neighbours' own); returns the other ready
    descriptors. ``lock`` (``node_lock()``) is dropped while it blocks. See ``_fastpath.wait``."""
    assert _fastpath is not None
    return _fastpath.wait(epfd, fast, timeout, limit, lock)  # type: ignore[no-any-return]


_uring_said = False


def uring_reason() -> str | None:
    """Why the wait cannot send a visit's last forwards and wait in one ``io_uring_enter``
    (None when it can: ``_fastpath.uring_probe``; probed once per process)."""
    if _fastpath is None:
        return unavailable_reason()
    why = _fastpath.uring_probe()
    return None if why is None else str(why)


def _uring_wanted(setting: str) -> bool:
    """Whether a fast path with ``limits.io_uring = setting`` uses io_uring; the first time
    "auto" finds it unavailable, the log says why (once per process)."""
    global _uring_said
    if setting == "off":
        return False
    why = uring_reason()
    if why is not None and not _uring_said:
        _uring_said = True
        log.info(
            "io_uring unavailable (%s): the fast path waits with epoll_wait and sends with sendmmsg", why
        )
    return why is None


def node_lock() -> Any:
    """A new ``_fastpath.NodeLock``: what a node whose fast path runs on several threads
    serialises everything but system calls with (``pan_runtime/include/pan_nodelock.h``)."""
    if _fastpath is None:
        raise PanError(unavailable_reason() or "fast path unavailable")
    return _fastpath.NodeLock()


def waits() -> int:
    """``epoll_wait`` calls ``wait`` made so far on this thread (0 without the extension)."""
    return int(_fastpath.waits()) if _fastpath is not None else 0


def fast_entry(loaded: LoadedCode) -> tuple[int, int, Any, int]:
    """What C runs for a code object: (C entry address or 0, its state, ``fast_accept`` or None,
    C batch entry address or 0); (0, 0, None, 0) for code that does not offer the
    ``FastEntry`` capability (Python runs it)."""
    if not isinstance(loaded, FastEntry):
        return 0, 0, None, 0
    fn, state = loaded.fast_entry() or (0, 0)
    if not fn:
        return 0, 0, loaded.fast_accept, 0
    return fn, state, None, loaded.fast_batch_entry() or 0


def after_run(loaded: LoadedCode) -> None:
    """Tell the runtime a run without an environment ended (it may raise the code's fault)."""
    if isinstance(loaded, FastEntry):
        loaded.after_fast_run()


def fast_usage(loaded: LoadedCode) -> tuple[int, int]:
    """(steps, fuel) the runtime's fast runs used since the last call."""
    return loaded.take_fast_usage() if isinstance(loaded, FastEntry) else (0, 0)


def _materialize_inflight() -> None:
    """The ``materialize`` hook of the node's PNI server: the capsule a fast path is running
    (if any) is taken over by the node now, its environment current."""
    assert _fastpath is not None
    got = _fastpath.inflight()
    if got is not None:
        owner, slot, n, link, code = got
        owner.materialize(slot, n, link, code)


class UdpFastPath:
    """The fast path of one UDP socket of a transport; see the module docstring."""

    def __init__(
        self,
        transport: UdpTransport,
        sock: socket.socket,
        rx_batch: int = 64,
        *,
        serves: socket.socket | None = None,
        lock: Any = None,
        gso: bool = True,
    ):
        """``sock``: the socket it reads and sends on; ``serves``: the node socket whose
        neighbours it serves (default ``sock``; another thread's socket of the same port
        serves the same neighbours); ``lock``: the node's ``node_lock()`` when several
        threads run fast paths; ``gso``: send runs of forwards as UDP GSO messages."""
        if _fastpath is None:
            raise PanError(unavailable_reason() or "fast path unavailable")
        node = transport.node
        self.transport = transport
        self.node = node
        self.sock = sock
        self.serves = sock if serves is None else serves
        self.pool = pool = node.pool
        self._c: Any = _fastpath.FastPath(
            fd=sock.fileno(),
            pool=pool,
            base=pool.base_address,
            slot_size=pool.buffer_size,
            slot_count=pool.count,
            on_slow=self._slow,
            on_handover=self._handover,
            owner=self,
            quantum_ns=node.config.fair_quantum_us * 1000,
            budget_ns=int(node.config.budget.time_ms * 1_000_000),
            rx_batch=rx_batch,
            gso=gso,
            uring=_uring_wanted(transport.io_uring),
        )
        self._lock = lock
        if lock is not None:
            self._c.lock = lock
        self._snapshot: FastSnapshot | None = None
        self._links: list[UdpLink] = []
        self._entries: list[CacheEntry] = []
        self._held = False
        self._want = _FEW  # slots to lend for the next turn (see reclaim)
        self._rx_batch = rx_batch
        self.closed = False
        #: capsules by the way they went (see ``PATHS``)
        self.paths = dict.fromkeys(PATHS, 0)
        #: datagrams read in a batch that a Python error stopped (dropped as ``fast_path_error``)
        self.lost = 0
        node.counter_sources.append(self.flush)
        # a worker's plain batches go down and their verdicts are carried out in C (worker
        # lanes), on any of the fast path's threads (under the node's lock, as the rest of a visit)
        node.offload.lane_type = _fastpath.WorkerLane
        self._pool_low = False
        self._pool_reserve = node.config.pool_reserve
        # a host call from code this runs has the capsule's environment built on the spot
        node.host.materialize = _materialize_inflight

    @property
    def c(self) -> Any:
        """The C object (what ``wait`` takes)."""
        return self._c

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    @property
    def crossings(self) -> int:
        """Calls between C and Python made for capsules so far (hand-overs and claims)."""
        return int(self._c.crossings)

    # -- tables ------------------------------------------------------------------------------
    def sync(self) -> None:
        """Refresh the C tables from the node's snapshot if its generation moved."""
        snap = self._snapshot
        if snap is not None and snap.generation == generation(self.node):
            return
        self.flush()
        snap = snapshot(self.node)
        neighbors = dict(snap.neighbors)
        links = [link for link in self.transport.links.values() if link.sock is self.serves]
        index = {link.address: i for i, link in enumerate(links)}

        def link_of(hop: Any) -> int:
            i = index.get(hop, -1)
            return i if i >= 0 and neighbors.get(hop) is links[i] else -1

        routes = [(dest, link_of(hop)) for dest, hop in snap.routes]
        default = link_of(snap.default) if snap.default is not None else -1
        codes = [(e.code.name, *fast_entry(e.loaded), door) for e, door in zip(snap.codes, snap.doors, strict=True)]
        throttled = dict(snap.throttled)
        self._c.configure(
            snap.address,
            [(link.endpoint, link.address.raw, link.mtu, link.rx_fd, throttled.get(link.address, 0)) for link in links],
            routes,
            default,
            codes,
            snap.copy_on_send,
        )
        self._links, self._entries, self._snapshot = links, list(snap.codes), snap

    def lend(self) -> None:
        """Before C reads: fresh tables, pool slots to read into (as many as ``reclaim`` chose,
        at most half of what is free, so code objects still find buffers), and whether the
        queue holds capsules."""
        self.sync()
        held = queued(self.node)
        if held != self._held:
            self._c.held = self._held = held
        c = self._c
        room = self._want - c.lent
        if room > 0:
            pool = self.pool
            slots = pool.take_slots(room if room <= _FEW else min(room, max(1, pool.available // 2)))
            if slots:
                taken = c.lend(slots)
                if taken < len(slots):
                    pool.give_slots(slots[taken:])
        low = self.pool.available < self._pool_reserve  # a worker lane admits nothing then
        if low is not self._pool_low:
            c.pool_low = self._pool_low = low

    def let_go(self, fd: int) -> None:
        """This fast path no longer reads neighbour socket ``fd`` (it went to another thread):
        its fair share forgets that the socket waits, which it could no longer find out."""
        if not self.closed:
            self._c.let_go(fd)

    def reclaim(self) -> None:
        """After C read: the lent slots back to the pool (it is whole between turns). The next
        turn lends a whole ``rx_batch`` when a receive filled every slot lent (C then ended its
        wait to say so: a flood is read in whole batches from its second turn on), else at
        least what the largest receive returned, decaying by half (never under ``_FEW``): a
        lone capsule costs the loop about what it did."""
        slots, used, starved = self._c.reclaim()
        want = self._want
        if starved:
            self._want = self._rx_batch
        elif used:
            self._want = max(_FEW, used, want // 2)
        if slots:
            self.pool.give_slots(slots)

    @property
    def batches(self) -> tuple[int, int]:
        """(calls into runtimes' batch entries, capsules they ran) so far."""
        calls, ran = self._c.batches
        return int(calls), int(ran)

    @property
    def syscalls(self) -> dict[str, int]:
        """System calls this fast path made and the datagrams they moved (``_fastpath.FastPath.syscalls``)."""
        return dict(self._c.syscalls)

    def flush(self) -> None:
        """Fold the counters of capsules finished in C into the node, links and code stats
        (under the node's lock when several threads run fast paths: another thread's counters
        and tables are then between two of its system calls)."""
        if self._lock is not None:
            with self._lock:
                self._flush()
        else:
            self._flush()

    def _flush(self) -> None:
        if self._snapshot is None or self.closed:
            return
        received, sent, codes, links, paths, lost = self._c.take_counters()
        for k, v in zip(PATHS, paths, strict=True):
            self.paths[k] += v
        node = self.node
        node.stats.received += received + lost
        node.stats.sent += sent
        if lost:  # read in a batch a Python error stopped (the error is logged by the loop)
            self.lost += lost
            node.stats.drops["fast_path_error"] += lost
        for e, (n_in, forwarded, time_ns, max_ns, send_lost) in zip(self._entries, codes, strict=True):
            steps, fuel = fast_usage(e.loaded)  # what runs without an environment used
            e.stats.steps += steps
            e.stats.fuel += fuel
            if n_in:
                s = e.stats
                s.capsules_in += n_in
                s.forwarded += forwarded
                s.time_ns += time_ns
                if max_ns > s.max_time_ns:
                    s.max_time_ns = max_ns
                node.cache.get(e.code.name)  # used: keep it off the LRU end
            if send_lost:  # the kernel refused the send: as the node counts its own failed sends
                e.stats.drops["link_lost"] += send_lost
        for link, (r, rb, sn, sb, big, throttled, runs, run_ns, errs) in zip(self._links, links, strict=True):
            link.received += r
            link.received_bytes += rb
            link.sent += sn
            link.sent_bytes += sb
            if big > link.largest_sent:
                link.largest_sent = big
            if errs:
                link.errors += errs
                link.last_error = "the fast path's send was refused"
            if throttled or runs:
                self.transport.account(link, throttled, runs, run_ns)

    # -- the loop ------------------------------------------------------------------------------
    def burst(self, limit: int, fd: int) -> bool:
        """Read up to ``limit`` datagrams from socket ``fd`` (the node's or a neighbour's own) as far
        as its fair share allows; False when no pool slot is free (use the Python path)."""
        self.lend()
        try:
            return bool(self._c.burst(limit, fd) >= 0)
        finally:
            self.reclaim()

    def _answer(self) -> tuple[int, bool]:
        """What a callback returns to C: a fresh slot to read into, and whether the queue holds
        capsules (the tables are refreshed, unless C is still finishing a batch run's results)."""
        if not self._c.finishing:
            self.sync()
        elif self._snapshot is None or self._snapshot.generation != generation(self.node):
            self._c.stale = True  # C calls refresh() once the batch's results are finished
        self._held = held = queued(self.node)
        return self.pool.try_take_slot(), held

    def refresh(self) -> tuple[int, bool]:
        """After C finished a batch run's results, when a hand-over among them moved the node's
        tables (a code reset, a route): the fresh tables, and no slot."""
        self.sync()
        self._held = held = queued(self.node)
        return -1, held

    def _slow(self, slot: int, n: int, flags: int, addr: tuple[Any, ...]) -> tuple[int, bool]:
        """A datagram C does not run: the transport's ordinary path takes it (and its slot)."""
        self.transport.received(self.sock, slot, n, flags, addr)
        return self._answer()

    def materialize(self, slot: int, n: int, link: int, code: int) -> None:
        """The running capsule's code reached the host: the node takes the capsule over now,
        its environment current (C hands the run's result over when the run ends)."""
        via = self._links[link]
        self.node.hand_over(self._entries[code], self.pool.segment_for_slot(slot, n), via, via.address, running=True)

    def _handover(self, code: int, link_index: int, slot: int, n: int, result: Any, dt: int, ask: int) -> tuple[int, bool]:
        """A capsule C read and does not finish: ``result`` is the run's verdict or the
        exception it raised, or None (no run yet); slot -1: ``materialize`` took it already.
        ``ask``: the runtime's record of its last run is this capsule's (0 for a capsule a
        batch ran before others: its forward verdict says it did not fault)."""
        entry = self._entries[code]
        link = self._links[link_index]
        wire = self.pool.segment_for_slot(slot, n) if slot >= 0 else None
        link.received += 1
        link.received_bytes += n
        interrupt: BaseException | None = None
        if isinstance(result, BaseException):
            result.__traceback__ = result.__context__ = None  # frames of the run, holding the body
            if isinstance(result, Exception):
                result = as_fault(result, entry.runtime, entry.code.short_name)
            else:  # KeyboardInterrupt, SystemExit: not the code's; the capsule still goes in
                interrupt, result = result, RuntimeFault(f"interrupted: {type(result).__name__}", "interrupted")
        if result is not None and ask:
            try:
                after_run(entry.loaded)
            except Exception as exc:
                result = as_fault(exc, entry.runtime, entry.code.short_name)
        self.node.hand_over(entry, wire, link, link.address, result, dt)
        if interrupt is not None:
            raise interrupt
        return self._answer()

    def close(self) -> None:
        """Stop: fold the last counters in; a burst still running reads nothing more."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self.reclaim()
        try:
            self.node.counter_sources.remove(self.flush)
        except ValueError:
            pass
