"""Warm standbys: for a code object that has a worker, a second worker that has already made
its runtime, linked that code object and confined itself, and waits for ``INIT``.

When the code object's worker dies, the restart takes its standby and only runs ``init`` there
(a round trip on the channel) instead of starting an interpreter and a runtime and linking the
code (a JVM takes most of a second for that). The standby is started in the background at load
and after each restart, so a code object that keeps dying has one again by the time its
back-off has passed.

The security model is that of a worker: a standby holds one code object, is made for that code
object's ``WorkerCode`` and is only ever used for it (never for another code object, nor for
the same code object loaded again later), and it is confined (``confine``) before any of the
code's own calls run, the same point in the same order as a worker that is started on demand.
Standbys are bounded: at most ``NodeConfig.worker_standbys`` per runtime (``0``: none, every
restart starts or takes a spare), at most one per code object; a code object whose worker has
died before comes first when there are more code objects than standbys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from pan_runtime.errors import WorkerError
from pan_runtime.isolation import wire
from pan_runtime.isolation.protocol import Kind

if TYPE_CHECKING:
    from pan_runtime.isolation.supervisor import _Process

__all__ = ["Standby", "Owner", "wanted", "FAILED"]

#: what ``Standby.ready`` keeps for an answer that is not a result (a broken worker)
FAILED: list[wire.Value] = [1, b"crash", b"the standby broke its channel's protocol"]


class Owner(Protocol):
    """What the choice of standbys reads of a code object in workers."""

    standby: Standby | None
    deaths: int
    order: int


class Standby:
    """A worker started for one code object, its ``HELLO`` and ``LOAD`` sent: its answers to
    both are read when a restart takes it (they are there long before, unless it is still
    making its runtime)."""

    __slots__ = ("proc", "owner", "answers")

    def __init__(self, proc: _Process, owner: object):
        self.proc = proc
        #: the ``WorkerCode`` it was made for, by identity: nothing else may take it
        self.owner = owner
        #: its answers to ``HELLO`` and ``LOAD`` read so far (``ready``)
        self.answers: list[list[wire.Value]] = []

    def ready(self) -> bool:
        """Whether both its answers have come (read here without waiting, and kept for the
        restart that takes it): a node with an event loop takes a standby only then, and does
        not wait on its thread for one still making its runtime."""
        ring = self.proc.ch.up
        while len(self.answers) < 2:
            try:
                rec = ring.get()
                if rec is None:
                    return False
                kind, payload, _ = rec
                vals = wire.decode(payload) if kind == Kind.RESULT else FAILED
                ring.release()
            except WorkerError:
                vals = FAILED
            self.answers.append(vals)
        return True

    def alive(self) -> bool:
        return self.proc.proc.poll() is None

    def close(self) -> None:
        self.proc.close()


def wanted(owners: Iterable[Owner], limit: int) -> list[Owner]:
    """The code objects that should have a standby: at most ``limit``, those whose workers
    died first (most deaths), then the oldest loads; those that have one keep it over those
    that have none when both rank equal."""
    ranked = sorted(owners, key=lambda o: (-o.deaths, o.standby is None, o.order))
    return ranked[: max(0, limit)]
