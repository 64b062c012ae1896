"""Fair share of a node's receive capacity between its neighbours.

A node's UDP socket is one FIFO: a neighbour flooding it puts every other neighbour's
capsules behind its own, and when the buffer overflows the kernel drops whoever's datagram
comes next. So ``UdpTransport`` gives each neighbour a receive socket of its own (a UDP
socket bound to the node's port with ``SO_REUSEPORT`` and connected to the neighbour's
endpoint: the kernel delivers that neighbour's datagrams to it, and only those), up to
``limits.neighbour_sockets``; everyone else (unknown peers, neighbours past the limit)
shares the node's socket, which is one more source here. What a neighbour sends beyond
what the node reads from it queues in its own buffer (``limits.neighbour_buffer``) and,
when that is full, is dropped by the kernel without costing the node anything; the node
counts those drops per neighbour as ``neighbour_over_share`` (``SO_MEMINFO``).

Which socket to read next is decided by self-clocked fair queueing over the time the node
spends on each source (read, run, send: everything a datagram costs): each source has a
virtual time, the service it received; one that turns busy again starts at the node's
virtual clock (so idleness earns no credit); a visit serves a source until it is
``quantum`` ahead of the least-served busy source, or ``ALONE_QUANTA`` quanta past where it
started when no other source is busy (so a lone flood is read in whole batches, its system
calls spread over many capsules), or its socket is empty. A lone capsule is read and run at once, as before; a flood gets the
node's time that nobody else wants, and a neighbour whose capsules run long code gets
fewer of them. The compiled fast path (``_fastpath.c``) runs the same rule on its sockets;
this module is the Python path's copy.
"""

from __future__ import annotations

__all__ = ["ALONE_QUANTA", "FairShare", "Source"]

#: how many quanta a visit may run while no other source is busy (``_fastpath.c`` has the same)
ALONE_QUANTA = 20


class Source:
    """One receive socket's share: the service it had (ns) and whether it is busy (a datagram
    was seen waiting when its last visit ended; only on that evidence, since a busy mark on
    an empty socket would hold every other source back)."""

    __slots__ = ("vtime", "busy")

    def __init__(self) -> None:
        self.vtime = 0
        self.busy = False


class FairShare:
    """The shares of a transport's receive sockets (see the module docstring)."""

    def __init__(self, quantum_ns: int):
        if quantum_ns <= 0:
            raise ValueError("the fair-share quantum must be positive")
        self.quantum = quantum_ns
        #: the node's virtual clock: the least service of a busy source at the last visit
        self.clock = 0
        self.sources: dict[int, Source] = {}

    def add(self, key: int) -> Source:
        src = self.sources[key] = Source()
        src.vtime = self.clock
        return src

    def remove(self, key: int) -> None:
        self.sources.pop(key, None)

    def visit(self, src: Source) -> int:
        """Start serving ``src`` (its socket is readable): the virtual time up to which it may be
        served now, or -1 when it is ahead and must wait for the others."""
        if not src.busy:
            if src.vtime < self.clock:
                src.vtime = self.clock
        low = src.vtime
        alone = True
        for other in self.sources.values():
            if other.busy and other is not src:
                alone = False
                if other.vtime < low:
                    low = other.vtime
        if low > self.clock:
            self.clock = low
        if src.vtime > low + self.quantum:
            return -1  # left for the others' turn (the caller says whether it is busy)
        src.busy = False  # set again when the visit ends with a datagram left
        return low + (ALONE_QUANTA if alone else 1) * self.quantum
