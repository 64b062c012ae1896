"""The search for a middle's capacity: the highest offered rate it forwards with loss under a
threshold, in the manner of RFC 2544's throughput test (trials of fixed duration at one
offered rate each, a trial passing when its loss is at most the threshold).

A search begins at the top of the range; a middle that passes there is reported at the top
(``ceiling``). Otherwise the rate the sink counted during that overloaded trial is the first
guess, and each further trial halves the interval between the highest passing and the
lowest failing rate, stepping by at most a quarter up or a fifth down while one side is still far away, until
the interval is narrower than ``resolution`` of its top or ``steps`` trials have run. The
capacity is the offered rate of the highest passing trial: what the generator actually sent,
which is below the target when the generator could not keep up (``generator_limited``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Probe", "Search", "find_capacity", "GENERATOR_SHORTFALL"]

#: a trial whose generator sent less than this share of the target rate did not offer it
GENERATOR_SHORTFALL = 0.97


@dataclass
class Probe:
    """One trial at one target rate: what was sent and what the sink counted."""

    target: float
    sent: int
    received: int
    seconds: float
    #: what the trial measured besides (the middle's CPU time and system calls, ...)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def offered(self) -> float:
        """Capsules per second the generator actually sent."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def delivered(self) -> float:
        """Capsules per second the sink counted."""
        return self.received / self.seconds if self.seconds > 0 else 0.0

    @property
    def loss(self) -> float:
        """Share of the sent capsules the sink did not count (negative: it counted more)."""
        return (self.sent - self.received) / self.sent if self.sent else 1.0


@dataclass
class Search:
    """The trials of one search, and what it found."""

    probes: list[Probe]
    #: the highest passing trial (None: not even the lowest rate passed)
    best: Probe | None
    #: the middle passed at the top of the range: its capacity is at least that
    ceiling: bool

    @property
    def capacity(self) -> float:
        """Capsules per second: the offered rate of the highest passing trial (0: none passed)."""
        return self.best.offered if self.best else 0.0

    @property
    def generator_limited(self) -> bool:
        """The highest passing trial offered less than its target: the generator's limit."""
        return self.best is not None and self.best.offered < GENERATOR_SHORTFALL * self.best.target


def find_capacity(
    trial: Callable[[float], Probe],
    *,
    top: float,
    threshold: float,
    steps: int,
    resolution: float = 0.02,
    floor: float = 100.0,
) -> Search:
    """Search with ``trial(rate)`` for the highest rate up to ``top`` (capsules/s) with loss
    at most ``threshold`` (a share, 0.001 = 0.1 %); at most ``steps`` trials."""
    if top <= floor or steps < 1 or not 0 <= threshold < 1:
        raise ValueError("a search needs top > floor, at least one step and 0 <= threshold < 1")
    probes: list[Probe] = []
    best: Probe | None = None

    def run(rate: float) -> bool:
        nonlocal best
        p = trial(rate)
        probes.append(p)
        ok = p.loss <= threshold and p.sent > 0
        if ok and (best is None or p.offered > best.offered):
            best = p
        return ok

    if run(top):
        return Search(probes, best, ceiling=True)
    lo, hi = 0.0, top
    # hi is the lowest failing target; a generator short of its target still offered what it sent
    rate = min(max(probes[0].delivered, floor), top * 0.98)
    while len(probes) < steps:
        if run(rate):
            lo = max(lo, rate)
            rate = min((lo + hi) / 2, lo * 1.25)
        else:
            hi = min(hi, rate)
            rate = max((lo + hi) / 2, hi * 0.8)
        if hi - lo <= resolution * hi or rate < floor:
            break
    return Search(probes, best, ceiling=False)
