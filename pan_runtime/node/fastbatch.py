"""A batch of capsules the C fast path wrote into a worker's ring itself (``Offload.admit``).

The fast path keeps no environment for these capsules: only ``meta`` (their headers as
received, lengths, where each body lies in the batch, the neighbour each came from;
``pan_runtime/net/_fastpath_worker.c``). Their verdicts are carried out in C
(``FastPath.worker_verdicts``: plain forwards sent from the ring, drops counted); what C does
not carry out (a fault, a deliver, a forward it cannot route) comes back with the capsule's
bytes and is finished here, by ``Node.finish``, as any capsule of a worker. Environments are
made only when the worker forwards a PNI call for one of the capsules (``envs``), and then
for the whole batch. A worker that goes down with the batch costs each capsule a fault with
the reason of its end, counted as on the node's own path. A batch the fast path's worker
lane admitted becomes one of these only when the node takes the lane back while it is out
(``Offload._take``); its plain verdicts are otherwise carried out in C with no object here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.segments import Segment
from pan_runtime.data.wire import HEADER_SIZE
from pan_runtime.errors import FaultReason, RuntimeFault, WorkerError
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.queue import Queued

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pan_runtime.isolation.supervisor import WorkerCode
    from pan_runtime.node.cache import CacheEntry
    from pan_runtime.node.offload import Offload

__all__ = ["FastBatch", "META_SIZE", "finish_left"]

#: bytes the fast path keeps of each capsule of such a batch (``WK_META_SIZE`` in C)
META_SIZE = 80
_PREV = 60


def _fault(text: bytes) -> RuntimeFault:
    reason, _, message = text.decode("utf-8", "replace").partition(":")
    try:
        why = FaultReason(reason)
    except ValueError:
        why = FaultReason.RUNTIME_ERROR
    return RuntimeFault(message, why)


class FastBatch:
    """What the node keeps of one such batch, and how its verdicts are finished."""

    __slots__ = ("offload", "entry", "wc", "meta", "owner", "n", "t0", "rest", "per", "envs", "view")

    def __init__(self, offload: Offload, entry: CacheEntry, wc: WorkerCode, meta: bytes, owner: Any):
        self.offload = offload
        self.entry = entry
        self.wc = wc
        self.meta = meta
        #: the ``UdpFastPath`` that wrote it (its socket sends the forwards)
        self.owner = owner
        self.n = len(meta) // META_SIZE
        self.t0 = time.monotonic_ns()
        self.rest: list[tuple[int, int, bytes | None, bytes, bytes]] = []
        self.per = 0
        #: environments made for the worker's PNI calls (``environments``), else None
        self.envs: list[Environment] | None = None
        self.view: memoryview | None = None

    # -- the worker's PNI calls need environments ------------------------------------------
    def environments(self, view: memoryview) -> Sequence[Environment]:
        """An environment for each capsule (its body as it is in the ring now), made the first
        time the worker forwards a PNI call for one of them; a capsule whose neighbour went
        away meanwhile gets an empty one (its calls see no capsule)."""
        if self.envs is None:
            node = self.offload.node
            envs = []
            for i in range(self.n):
                env = self.offload.env()
                got = self._capsule(i, self._datagram(i, view))
                if got is not None:
                    cap, link, prev = got
                    env.setup(self.entry.code, cap, Origin.NETWORK, link, prev, node._budget)
                envs.append(env)
            self.envs = envs
        return self.envs

    def _datagram(self, i: int, view: memoryview) -> bytes:
        m = self.meta[i * META_SIZE : (i + 1) * META_SIZE]
        length = int.from_bytes(m[52:56], "little")
        rel = int.from_bytes(m[56:60], "little")
        return bytes(m[:HEADER_SIZE]) + bytes(view[rel : rel + length])

    def _capsule(self, i: int, dgram: bytes) -> tuple[Any, Any, NodeAddress] | None:
        return _parsed(self.offload, self.entry, self.owner, self.meta[i * META_SIZE + _PREV : i * META_SIZE + _PREV + 16],
                       dgram)

    # -- the verdicts ------------------------------------------------------------------------
    def finish(self, view: memoryview, payload: memoryview) -> None:
        """Carry out the VERDICTS record in C; keep what C leaves for ``done``."""
        n = self.n
        self.per = per = (time.monotonic_ns() - self.t0) // max(1, n)
        try:
            reset, forwarded, dropped, lost, steps, fuel, rest = self.owner.c.worker_verdicts(view, self.meta, payload, per)
        except ValueError as exc:
            raise WorkerError(f"verdicts: {exc}") from None
        self.wc.needs_reset = bool(reset)
        done_here = n - len(rest)
        self.entry.stats.add_finished_in_c(forwarded, dropped, lost, steps, fuel, per * done_here,
                                           per if done_here else 0)
        breaker = self.entry.breaker
        if breaker.open_until and (forwarded or dropped):
            breaker.record_success()
            self.offload.node.cache.generation += 1
        if rest:  # their bodies leave the ring with the record: copied out by C
            self.rest = rest
        if self.envs is not None:
            self.view = view

    def done(self, _envs: Sequence[Environment], out: list[int | RuntimeFault], time_ns: int) -> None:
        """The batch is over: ``out`` empty after ``finish`` (what C left is finished now), or a
        fault for each capsule (the worker went down with it)."""
        node = self.offload.node
        entry = self.entry
        envs = self.envs
        self.envs = None
        try:
            if out:
                per = time_ns // max(1, len(out))
                for i, fault in enumerate(out):
                    env = envs[i] if envs is not None else None
                    if env is not None and env.capsule is not None:
                        node.finish(entry, env, env.capsule, fault, per)
                        envs[i] = None  # type: ignore[index]
                        self.offload._free.append(env)
                    elif isinstance(fault, RuntimeFault):
                        entry.stats.add_time(per)
                        node.count_fault(entry, fault)
                return
            for i, verdict, why, dgram, prev in self.rest:
                result: int | RuntimeFault = verdict if why is None else _fault(why)
                env = envs[i] if envs is not None else None
                if env is not None and env.capsule is not None:
                    env.capsule.body.write_from(0, memoryview(dgram)[HEADER_SIZE:])
                    envs[i] = None  # type: ignore[index]
                else:
                    env = _env_of(self.offload, entry, self.owner, dgram, prev)
                    if env is None:
                        continue
                node.finish(entry, env, env.capsule, result, self.per)  # type: ignore[arg-type]
                self.offload._free.append(env)
        finally:
            self.rest = []
            if envs is not None:
                for env in envs:
                    if env is not None:
                        cap = env.capsule
                        env.clear()
                        if cap is not None:
                            cap.release()
                        self.offload._free.append(env)
            self.offload._pump(entry, self.wc)


def _parsed(offload: Offload, entry: CacheEntry, owner: Any, prev_bytes: bytes, dgram: bytes) -> tuple[Any, Any, NodeAddress] | None:
    """The capsule parsed again from its bytes (the node's hop taken as on entry), with its
    link and previous hop; None when its neighbour is gone or it does not parse (counted by
    the node). ``owner``: the ``UdpFastPath`` that read it."""
    node = offload.node
    prev = NodeAddress(prev_bytes)
    link = owner.transport.links.get(prev)
    if link is None:
        node._drop(entry, "no_link", f"its neighbour {prev} went away while it was in the worker")
        return None
    cap = node._parse(Queued(Segment.owned(dgram), Origin.NETWORK, link, prev))
    if cap is None:
        return None
    return cap, link, prev


def _env_of(offload: Offload, entry: CacheEntry, owner: Any, dgram: bytes, prev_bytes: bytes) -> Environment | None:
    """An environment for that capsule, for ``Node.finish``; None as for ``_parsed``."""
    got = _parsed(offload, entry, owner, prev_bytes, dgram)
    if got is None:
        return None
    cap, link, prev = got
    env = offload.env()
    env.setup(entry.code, cap, Origin.NETWORK, link, prev, offload.node._budget)
    return env


def finish_left(offload: Offload, entry: CacheEntry, owner: Any, rest: list[tuple[int, int, None, bytes, bytes]],
                per_ns: int) -> None:
    """Finish what a worker lane left of a batch it collected (``WorkerLane``'s ``finish``):
    capsules whose verdict is no fault but which C does not carry out (a deliver, a forward it
    cannot route), in their order, after the batch's plain forwards; the lane stays granted."""
    node = offload.node
    for _i, verdict, _why, dgram, prev in rest:
        env = _env_of(offload, entry, owner, dgram, prev)
        if env is not None:
            node.finish(entry, env, env.capsule, verdict, per_ns)  # type: ignore[arg-type]
            offload._free.append(env)
