"""Which fast-path thread reads which neighbour's socket: the threads' shares of the traffic.

With ``limits.threads`` above 1 a neighbour's own receive socket is read by one thread at a
time, so its capsules keep their order; a new neighbour goes to the threads in turn. Taking
turns spreads sockets, not traffic: one busy neighbour more on one thread (17 flows against
15 over two threads), or two heavy neighbours that happened to land on the same thread, and
one thread works while the other waits. So with each fold of the counters (once a second)
the transport looks at how many datagrams each neighbour's socket brought since the last
look and, where the busiest thread carried more than ``SLACK`` of the mean above the least
busy one, moves the sockets that bring them closest, a few per look (``moves``).

A move takes a socket out of one thread's wait and puts it into another's. If the old thread
had just read a batch from it, the new thread's next batch may be carried out before that one
(the two take the node's lock in either order): a move can cost the order of one batch, never
a capsule; and moves are rare, since a move is only made when it evens the load out.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

__all__ = ["MIN_DATAGRAMS", "MOVES", "SLACK", "moves"]

K = TypeVar("K", bound=Hashable)

#: the imbalance left alone: the busiest thread's datagrams above the least busy thread's, as a
#: share of the mean per thread
SLACK = 0.1
#: below this many datagrams over all sockets since the last look nothing moves (a node that
#: is not busy gains nothing from it, and a few datagrams say little about the load)
MIN_DATAGRAMS = 1000
#: sockets moved per look at most
MOVES = 4


def moves(loads: Mapping[K, int], threads: Mapping[K, int], count: int, least: int = MIN_DATAGRAMS) -> list[tuple[K, int]]:
    """The moves (socket, new thread) that even out ``count`` threads, given what each socket
    brought (``loads``) and the thread reading it (``threads``, 0..count-1): none when all
    brought fewer than ``least``; else each move takes from the busiest thread the socket
    whose load is nearest half the gap to the least busy one (and below the whole gap, so the
    busiest load only falls), until the gap is within ``SLACK``, no socket fits, or ``MOVES``
    were made."""
    per = [0] * count
    for key, load in loads.items():
        per[threads[key]] += load
    total = sum(per)
    if count < 2 or total < least:
        return []
    place = dict(threads)
    out: list[tuple[K, int]] = []
    for _ in range(MOVES):
        hi = max(range(count), key=per.__getitem__)
        lo = min(range(count), key=per.__getitem__)
        gap = per[hi] - per[lo]
        if gap <= SLACK * total / count:
            break
        best: K | None = None
        for key, load in loads.items():
            if place[key] == hi and 0 < load < gap and (best is None or abs(gap - 2 * load) < abs(gap - 2 * loads[best])):
                best = key
        if best is None:
            break
        place[best] = lo
        per[hi] -= loads[best]
        per[lo] += loads[best]
        out.append((best, lo))
    return out
