"""The compiled fast path of a UDP netlink: common capsules finished in C, the rest in Python.

A forwarded capsule's cost in a ``pan node`` process is dominated by how much the process
touches per capsule, not by the code it runs: every Python frame on the path is paid again
with cold caches after each wake-up (``docs/network.md``). ``pan_runtime.net._fastpath`` (a
small C extension, built at install when a C compiler is present) therefore does the event
loop's ``epoll_wait`` itself, reads each datagram into a pool slot and, when

* it comes from a configured neighbour, is not truncated and has a well-formed header
  (version, flags, reserved byte) with hop limit left, and the node's queue is empty,
* its code object is installed and not quarantined,

runs the code: through the runtime's C entry (``LoadedCode.fast_entry``: ``native``,
``wasm`` and ``jvm`` have one), else through its Python entry without an environment
(``LoadedCode.fast_accept``, bound to a ``LeanHost``: ``restricted_py``), else through
``accept`` with a full environment. If the verdict is a plain forward toward another node
with a route over this socket's neighbours and within the MTU, C sends it and counts it,
and the wait goes on without returning to the event loop. The calls such code makes most
(segment calls on the body; origin, previous hop, node address) are answered from the
capsule; any other PNI call reaches the host as usual, which first builds the capsule's
Python environment (``materialize``), and the node then finishes that capsule in Python.
Every other datagram or verdict goes to the node's ordinary path with the bytes in place,
so each rule of the node (drops and their reasons, deliveries, demand loading, faults and
quarantine) is written once, in Python. Counters of capsules finished in C are folded into
the node's statistics whenever they are read (``Node.sync_counters``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pan_runtime.data.capsule import Capsule
from pan_runtime.errors import PanError, RuntimeFault
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.pni import BAD_ARGUMENT, OK, OUT_OF_RANGE, PniHost
from pan_runtime.plugin.runtime import as_fault

if TYPE_CHECKING:
    import socket

    from pan_runtime.net.udp import UdpLink, UdpTransport
    from pan_runtime.node.cache import CacheEntry

try:
    from pan_runtime.net import _fastpath
except ImportError as exc:  # built at install only where a C compiler was found
    _fastpath = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = ""

__all__ = ["LeanHost", "UdpFastPath", "available", "materialize", "unavailable_reason", "wait"]

#: how the datagrams a fast path read went: carried out in C after the code ran (through a C
#: entry or ``fast_accept``); run through ``accept`` with a full environment and finished in
#: Python (a runtime with neither entry); handed to Python after the code ran (another
#: verdict, or the code reached the Python host); and to the node's ordinary path before any
#: run (unknown peer, malformed, missing code, ...)
PATHS = ("finished_in_c", "python_runs", "handed_over", "slow")


def available() -> bool:
    """True when the C extension is built and importable."""
    return _fastpath is not None


def unavailable_reason() -> str | None:
    """Why the fast path cannot run here (None when it can)."""
    if _fastpath is not None:
        return None
    return f"pan_runtime.net._fastpath is not built ({_IMPORT_ERROR}); reinstall pan with a C compiler on PATH"


def materialize() -> None:
    """Build the Python environment of the capsule the fast path is running, if any.

    Runtimes with a fast entry call this from a host call that finds ``host.current`` None.
    """
    if _fastpath is None:
        return
    got = _fastpath.inflight()
    if got is not None:
        owner, slot, n, link, code = got
        owner._materialize(slot, n, link, code)


def wait(epfd: int, fast: dict[int, Any], timeout: float | None, limit: int) -> list[tuple[int, int]]:
    """``epoll_wait`` with the fast sockets' bursts read in C (``fast``: fd -> ``UdpFastPath.c``);
    returns the other ready descriptors. See ``_fastpath.wait``."""
    assert _fastpath is not None
    return _fastpath.wait(epfd, fast, timeout, limit)  # type: ignore[no-any-return]


class LeanHost:
    """PNI host calls for a capsule the fast path runs from Python without an environment.

    A runtime whose code runs in Python (``LoadedCode.fast_accept``) binds its PNI to one of
    these: segment calls on the body (handle 1) and the origin, previous-hop and node-address
    calls are answered from the capsule's bytes, with the host's statuses and checks; any
    other call first has the node build the capsule's environment (``materialize``), then
    goes to the node's ``PniHost``, and from then on every call does.
    """

    BODY = 1

    def __init__(self, host: Any):
        self._host = host
        #: the capsule body during a run (set by the runtime; None: not in a run, or materialized)
        self.body: memoryview | None = None
        #: the previous hop's address during a run
        self.prev_hop = b""
        node = getattr(host, "node", None)
        self.node_raw = node.address.raw if node is not None else b""

    def _real(self) -> Any:
        host = self._host
        if host.current is None:
            materialize()
        self.body = None
        return host

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._host, name)  # AttributeError for what the host lacks

        def call(*args: Any) -> Any:
            self._real()
            return method(*args)

        call.__name__ = name
        return call

    def seg_length(self, seg: int) -> int:
        if seg == 1 and self.body is not None:
            return len(self.body)
        return int(self._real().seg_length(seg))

    def seg_read(self, seg: int, offset: int, dst: memoryview) -> int:
        if seg != 1 or self.body is None:
            return int(self._real().seg_read(seg, offset, dst))
        n = len(dst)
        if offset < 0 or offset + n > len(self.body):
            return OUT_OF_RANGE
        dst[:] = self.body[offset : offset + n]
        return n

    def seg_write(self, seg: int, offset: int, src: Any) -> int:
        if seg != 1 or self.body is None:
            return int(self._real().seg_write(seg, offset, src))
        n = len(src)
        if offset < 0 or offset + n > len(self.body):
            return OUT_OF_RANGE
        self.body[offset : offset + n] = src
        return n

    def _get(self, seg: int, offset: int, size: int, call: str) -> int:
        if seg != 1 or self.body is None:
            return int(getattr(self._real(), call)(seg, offset))
        if offset < 0 or offset + size > len(self.body):
            return OUT_OF_RANGE
        return int.from_bytes(self.body[offset : offset + size], "big")

    def seg_get_u8(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 1, "seg_get_u8")

    def seg_get_u16(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 2, "seg_get_u16")

    def seg_get_u32(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 4, "seg_get_u32")

    def _set(self, seg: int, offset: int, value: int, size: int, call: str) -> int:
        if seg != 1 or self.body is None:
            return int(getattr(self._real(), call)(seg, offset, value))
        if offset < 0 or offset + size > len(self.body):
            return OUT_OF_RANGE
        if not 0 <= value < 1 << (8 * size):
            return BAD_ARGUMENT
        self.body[offset : offset + size] = value.to_bytes(size, "big")
        return OK

    def seg_set_u8(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value, 1, "seg_set_u8")

    def seg_set_u16(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value, 2, "seg_set_u16")

    def seg_set_u32(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value & 0xFFFFFFFF, 4, "seg_set_u32")

    def env_origin_kind(self) -> int:
        if self.body is None:
            return int(self._real().env_origin_kind())
        return _NETWORK

    def env_prev_hop(self, dst: memoryview) -> int:
        if self.body is None:
            return int(self._real().env_prev_hop(dst))
        return PniHost._fill(dst, self.prev_hop)

    def node_address(self, dst: memoryview) -> int:
        if self.body is None:
            return int(self._real().node_address(dst))
        return PniHost._fill(dst, self.node_raw)


    def python_calls(self, pni: Any) -> dict[str, Callable[..., Any]]:
        """Direct forms of the hot calls of ``pni`` (a ``pni_api.HostPNI`` over this host): the
        same results and errors, one Python call instead of three while a run is on."""
        lean = self
        read, length_of, u8, u16, u32 = pni.seg_read, pni.seg_length, pni.seg_get_u8, pni.seg_get_u16, pni.seg_get_u32
        origin, prev_hop, node_address = pni.env_origin_kind, pni.env_prev_hop, pni.node_address

        def seg_read(seg: int, offset: int, length: int) -> bytes:
            body = lean.body
            if (
                seg == 1 and body is not None and offset.__class__ is int and length.__class__ is int
                and 0 <= offset and 0 <= length and offset + length <= len(body)
            ):
                return bytes(body[offset : offset + length])
            return read(seg, offset, length)  # type: ignore[no-any-return]

        def seg_length(seg: int) -> int:
            body = lean.body
            return len(body) if seg == 1 and body is not None else length_of(seg)  # type: ignore[no-any-return]

        def getter(size: int, slow: Callable[[int, int], int]) -> Callable[[int, int], int]:
            def get(seg: int, offset: int) -> int:
                body = lean.body
                if seg == 1 and body is not None and offset.__class__ is int and 0 <= offset and offset + size <= len(body):
                    return int.from_bytes(body[offset : offset + size], "big")
                return slow(seg, offset)

            return get

        def env_origin_kind() -> int:
            return _NETWORK if lean.body is not None else origin()  # type: ignore[no-any-return]

        def env_prev_hop() -> bytes:
            return lean.prev_hop if lean.body is not None else prev_hop()  # type: ignore[no-any-return]

        def node_address_() -> bytes:
            return lean.node_raw if lean.body is not None else node_address()  # type: ignore[no-any-return]

        return {
            "seg_read": seg_read,
            "seg_length": seg_length,
            "seg_get_u8": getter(1, u8),
            "seg_get_u16": getter(2, u16),
            "seg_get_u32": getter(4, u32),
            "env_origin_kind": env_origin_kind,
            "env_prev_hop": env_prev_hop,
            "node_address": node_address_,
        }


_NETWORK = int(Origin.NETWORK)


class UdpFastPath:
    """The fast path of one UDP socket of a transport; see the module docstring."""

    def __init__(self, transport: UdpTransport, sock: socket.socket):
        if _fastpath is None:
            raise PanError(unavailable_reason() or "fast path unavailable")
        node = transport.node
        self.transport = transport
        self.node = node
        self.sock = sock
        self.pool = node.pool
        self._c: Any = _fastpath.FastPath(
            fd=sock.fileno(),
            pool=self.pool,
            free=self.pool._free,
            base=self.pool.base_address,
            slot_size=self.pool.buffer_size,
            slot_count=self.pool.count,
            host=node.host,
            queue=node.queue,
            on_slow=self._slow,
            on_after=self._after,
            on_run=self._run,
            on_fault=self._fault,
            owner=self,
        )
        self._key: tuple[int, int, int] | None = None
        self._links: list[UdpLink] = []
        self._entries: list[CacheEntry] = []
        self._env = Environment()
        self._materialized: tuple[Environment, Capsule] | None = None
        self._lean_fault: RuntimeFault | None = None
        self.closed = False
        #: capsules by the way they went (see ``PATHS``)
        self.paths = dict.fromkeys(PATHS, 0)
        node.counter_sources.append(self.flush)

    # -- tables ----------------------------------------------------------------------------
    @property
    def c(self) -> Any:
        """The C object (what ``wait`` takes)."""
        return self._c

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def sync(self) -> None:
        """Refresh the C tables if the node's routes, code cache or neighbours changed."""
        node = self.node
        key = (node.routes.generation, node.cache.generation, self.transport.generation)
        if key == self._key:
            return
        self.flush()
        links = [link for link in self.transport.links.values() if link.sock is self.sock]
        index = {link.address: i for i, link in enumerate(links)}

        def link_of(hop: Any) -> int:
            i = index.get(hop, -1)
            return i if i >= 0 and node.neighbors.get(hop) is links[i] else -1

        routes = [(r.dest.raw, link_of(r.next_hop)) for r in node.routes.routes()]
        default = link_of(node.routes.default) if node.routes.default is not None else -1
        entries: list[CacheEntry] = []
        codes: list[tuple[bytes, int, int, Any]] = []
        for e in node.cache:
            if e.breaker.open_until:
                continue
            entries.append(e)
            fn, state = e.loaded.fast_entry() or (0, 0)
            codes.append((e.code.name, fn, state, None if fn else e.loaded.fast_accept))
        self._c.configure(
            node.address.raw,
            [(link.endpoint, link.address.raw, link.mtu) for link in links],
            routes,
            default,
            codes,
            node.config.copy_on_send,
        )
        self._links, self._entries, self._key = links, entries, key

    def flush(self) -> None:
        """Fold the counters of capsules finished in C into the node, links and code stats."""
        if self._key is None or self.closed:
            return
        received, sent, codes, links, paths = self._c.take_counters()
        for k, v in zip(PATHS, paths, strict=True):
            self.paths[k] += v
        node = self.node
        node.stats.received += received
        node.stats.sent += sent
        for e, (n_in, forwarded, time_ns, max_ns) in zip(self._entries, codes, strict=True):
            steps, fuel = e.loaded.take_fast_usage()  # what runs without an environment used
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
        for link, (r, rb, sn, sb, big) in zip(self._links, links, strict=True):
            link.received += r
            link.received_bytes += rb
            link.sent += sn
            link.sent_bytes += sb
            if big > link.largest_sent:
                link.largest_sent = big

    # -- the loop ----------------------------------------------------------------------------
    def burst(self, limit: int) -> bool:
        """Read up to ``limit`` datagrams; False when no pool slot is free (use the Python path)."""
        self.sync()
        return bool(self._c.burst(limit) >= 0)

    def _claim(self) -> int:
        """The slot C read the current datagram into, now Python's; C reads into a fresh one
        (or into none, and stops, when the pool is empty)."""
        c = self._c
        slot = c.slot
        try:
            c.slot = self.pool.take_slot()
        except PanError:
            c.slot = -1
        return slot

    def _environment(self, entry: CacheEntry, link: UdpLink, slot: int, n: int) -> tuple[Environment, Capsule]:
        seg = self.pool.segment_for_slot(slot, n)
        try:
            cap = Capsule.parse(seg)  # the header was checked in C and its hop limit already taken
        finally:
            seg.release()
        env = self._env
        env.setup(entry.code, cap, Origin.NETWORK, link, link.address, self.node.config.budget)
        return env, cap

    def _slow(self, n: int, flags: int, addr: tuple[Any, ...]) -> None:
        self.transport.received(self.sock, self._claim(), n, flags, addr)
        self.sync()

    def _materialize(self, slot: int, n: int, link: int, code: int) -> None:
        assert _fastpath is not None
        _fastpath.release_inflight()
        self._claim()  # C's slot is the in-flight one
        env, cap = self._environment(self._entries[code], self._links[link], slot, n)
        self.node.host.current = env
        self._materialized = (env, cap)

    def _after(self, verdict: int, code: int, link_index: int, n: int, dt: int) -> None:
        entry = self._entries[code]
        link = self._links[link_index]
        node = self.node
        if self._materialized is not None:
            env, cap = self._materialized
            self._materialized = None
        else:
            env, cap = self._environment(entry, link, self._claim(), n)
            node.host.current = env
        self._count_in(link, n)
        entry.stats.capsules_in += 1
        result: int | RuntimeFault = verdict
        if self._lean_fault is not None:
            result, self._lean_fault = self._lean_fault, None
        try:
            entry.loaded.after_fast_run()
        except Exception as exc:
            result = as_fault(exc, entry.runtime, entry.code.short_name)
        node.finish(entry, env, cap, result, dt)
        self.sync()

    def _count_in(self, link: UdpLink, n: int) -> None:
        self.node.stats.received += 1
        link.received += 1
        link.received_bytes += n

    def _fault(self, code: int, link_index: int, n: int, exc: BaseException) -> int:
        """A ``fast_accept`` raised: keep the fault for ``_after`` (the node records it)."""
        entry = self._entries[code]
        fault = as_fault(exc, entry.runtime, entry.code.short_name) if isinstance(exc, Exception) else exc
        fault.__traceback__ = fault.__context__ = None  # frames of the run, holding the body
        if not isinstance(fault, RuntimeFault):  # KeyboardInterrupt, SystemExit: not the code's
            raise fault
        materialize()
        self._lean_fault = fault
        return BAD_ARGUMENT

    def _run(self, code: int, link_index: int, n: int) -> None:
        entry = self._entries[code]
        link = self._links[link_index]
        env, cap = self._environment(entry, link, self._claim(), n)
        self._count_in(link, n)
        self.node.run(entry, env, cap)
        self.sync()

    def close(self) -> None:
        """Stop: fold the last counters in; a burst still running reads nothing more."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self._c.slot = -1
        try:
            self.node.counter_sources.remove(self.flush)
        except ValueError:
            pass
