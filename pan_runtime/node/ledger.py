"""The neighbour ledger: what each neighbour's capsules cost the node, and who is throttled.

A code object's breaker (``cache.Breaker``) quarantines code that keeps faulting, but a
neighbour can send capsules of a new code name each time, every one using up its whole
budget, and hold the node forever. So the node also keeps an account per neighbour (the
previous hop a capsule came from, which the node takes from the link, never from capsule
bytes): how many of its capsules ran, the time they ran for, their faults by reason, and
how many used up their budget (a budget or memory fault, or a run longer than the time
budget: ``native`` code cannot be stopped, but it is still charged). A neighbour whose
capsules exhaust their budget ``neighbour_exhaustions`` times within ``neighbour_window_ms``
is throttled for a back-off (``neighbour_backoff_ms``, doubled each time it trips again
right after one, up to ``neighbour_max_backoff_ms``), whatever code names it uses: its
capsules are dropped on arrival with reason ``neighbour_throttled``, counted here and on
the node. A window without exhaustions after a throttle ends forgets the doubling.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import FaultReason, RuntimeFault
from pan_runtime.node.cache import Breaker
from pan_runtime.node.events import Event, NeighbourThrottled

if TYPE_CHECKING:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.node.config import NodeConfig

__all__ = ["Ledger", "NeighbourAccount", "EXHAUSTING", "OVER_SHARE", "THROTTLED"]

log = logging.getLogger("pan.node")

#: fault reasons that mean a capsule used up its budget (time, steps, fuel, memory)
EXHAUSTING = frozenset({FaultReason.BUDGET, FaultReason.MEMORY})
#: drop reason: a neighbour's capsule refused while it is throttled
THROTTLED = "neighbour_throttled"
#: drop reason: a neighbour sent more than its share of the node could take (its receive
#: buffer overflowed while the node served the other neighbours)
OVER_SHARE = "neighbour_over_share"


@dataclass
class NeighbourAccount:
    """What one neighbour's capsules cost the node."""

    breaker: Breaker
    runs: int = 0
    run_ns: int = 0
    exhaustions: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)

    def as_dict(self, now: int) -> dict[str, Any]:
        b = self.breaker
        return {
            "runs": self.runs,
            "run_us": self.run_ns / 1000,
            "exhaustions": self.exhaustions,
            "faults": dict(self.faults),
            "drops": dict(self.drops),
            "throttles": b.trips,
            "throttled_for_ms": max(0, b.open_until - now) / 1e6,
        }


class Ledger:
    """Accounts per neighbour, and the neighbours throttled now (``blocked``)."""

    def __init__(self, config: NodeConfig, clock: Callable[[], int], emit: Callable[[Event], None]):
        self.config = config
        self.now_ns = clock
        self.emit = emit
        self.accounts: dict[NodeAddress, NeighbourAccount] = {}
        #: neighbour -> the node time its throttle ends (only neighbours throttled now)
        self.blocked: dict[NodeAddress, int] = {}
        #: bumped when a throttle starts, so copies (the UDP fast path's tables) refresh
        self.generation = 0
        self._budget_ns = int(config.budget.time_ms * 1e6)

    def account(self, neighbour: NodeAddress) -> NeighbourAccount:
        acct = self.accounts.get(neighbour)
        if acct is None:
            c = self.config
            acct = self.accounts[neighbour] = NeighbourAccount(
                Breaker(
                    threshold=c.neighbour_exhaustions,
                    window_ns=c.neighbour_window_ms * 1_000_000,
                    backoff_ns=c.neighbour_backoff_ms * 1_000_000,
                    max_backoff_ns=c.neighbour_max_backoff_ms * 1_000_000,
                )
            )
        return acct

    def charge(self, neighbour: NodeAddress, time_ns: int, verdict: int | RuntimeFault) -> None:
        """Account one run of a capsule from ``neighbour``: ``time_ns`` and its verdict or fault."""
        acct = self.accounts.get(neighbour) or self.account(neighbour)
        acct.runs += 1
        acct.run_ns += time_ns
        exhausted = time_ns > self._budget_ns
        if isinstance(verdict, RuntimeFault):
            acct.faults[verdict.reason] += 1
            exhausted = exhausted or verdict.reason in EXHAUSTING
        if exhausted:
            self._exhausted(neighbour, acct, verdict)

    def add_runs(self, neighbour: NodeAddress, runs: int, run_ns: int) -> None:
        """Account runs that finished elsewhere (the UDP fast path) within the budget."""
        acct = self.accounts.get(neighbour) or self.account(neighbour)
        acct.runs += runs
        acct.run_ns += run_ns

    def _exhausted(self, neighbour: NodeAddress, acct: NeighbourAccount, verdict: int | RuntimeFault) -> None:
        acct.exhaustions += 1
        now = self.now_ns()
        b = acct.breaker
        if b.open_until and now - b.open_until >= b.window_ns:
            b.record_success()  # a quiet window since the last throttle ended: start afresh
        if not b.record_fault(now):
            return
        self.blocked[neighbour] = b.open_until
        self.generation += 1
        self.emit(NeighbourThrottled(str(neighbour), b.trips, b.open_until))
        log.warning(
            "throttled neighbour %s for %.1fs: its capsules used up their budget %d times (last: %s)",
            neighbour,
            b.current_backoff / 1e9,
            acct.exhaustions,
            verdict if isinstance(verdict, RuntimeFault) else "ran past the time budget",
        )

    def throttled(self, neighbour: NodeAddress | None) -> bool:
        """True while ``neighbour`` is throttled (cheap when nobody is)."""
        blocked = self.blocked
        if not blocked or neighbour is None:
            return False
        until = blocked.get(neighbour)
        if until is None:
            return False
        if self.now_ns() < until:
            return True
        del blocked[neighbour]
        return False

    def remaining_ns(self) -> list[tuple[NodeAddress, int]]:
        """(neighbour, node ns left) of every throttle in force now."""
        now = self.now_ns()
        return [(n, until - now) for n, until in self.blocked.items() if until > now]

    def count_drop(self, neighbour: NodeAddress, reason: str, n: int = 1) -> None:
        """Count ``n`` capsules of ``neighbour`` dropped for ``reason`` (the node counts them too)."""
        (self.accounts.get(neighbour) or self.account(neighbour)).drops[reason] += n

    def info(self) -> dict[str, dict[str, Any]]:
        """Every neighbour's account, by address."""
        now = self.now_ns()
        return {str(n): a.as_dict(now) for n, a in sorted(self.accounts.items())}
