"""Counters a node keeps per code object, per runtime and for itself; readable and printable."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CodeStats", "NodeStats", "format_table"]


@dataclass
class CodeStats:
    """What happened to the capsules of one code object (or one runtime, summed)."""

    capsules_in: int = 0
    forwarded: int = 0
    delivered: int = 0
    done: int = 0
    sent: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    time_ns: int = 0
    max_time_ns: int = 0
    steps: int = 0  # interpreter steps the code used (where the runtime counts them)
    fuel: int = 0  # instructions the code used (where the runtime counts them)
    sent_bytes: int = 0  # body bytes the code sent or delivered through the PNI

    def add_time(self, ns: int) -> None:
        self.time_ns += ns
        if ns > self.max_time_ns:
            self.max_time_ns = ns

    def add_usage(self, env: Any) -> None:
        """Fold one call's reported use (``env.usage``, ``env.sent_bytes``) into the totals."""
        usage = env.usage
        if usage.steps:
            self.steps += usage.steps
        if usage.fuel:
            self.fuel += usage.fuel
        if env.sent_bytes:
            self.sent_bytes += env.sent_bytes

    def merge(self, other: CodeStats) -> None:
        self.capsules_in += other.capsules_in
        self.forwarded += other.forwarded
        self.delivered += other.delivered
        self.done += other.done
        self.sent += other.sent
        self.drops.update(other.drops)
        self.errors += other.errors
        self.time_ns += other.time_ns
        self.max_time_ns = max(self.max_time_ns, other.max_time_ns)
        self.steps += other.steps
        self.fuel += other.fuel
        self.sent_bytes += other.sent_bytes

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def as_dict(self) -> dict[str, Any]:
        mean = self.time_ns / self.capsules_in / 1000 if self.capsules_in else 0.0
        return {
            "capsules_in": self.capsules_in,
            "forwarded": self.forwarded,
            "delivered": self.delivered,
            "done": self.done,
            "sent": self.sent,
            "dropped": self.dropped,
            "drops": dict(self.drops),
            "errors": self.errors,
            "time_us_total": self.time_ns / 1000,
            "time_us_mean": mean,
            "time_us_max": self.max_time_ns / 1000,
            "steps": self.steps,
            "fuel": self.fuel,
            "sent_bytes": self.sent_bytes,
        }


@dataclass
class NodeStats:
    """Node-level counters: what arrived, what left, and drops that belong to no code object."""

    received: int = 0
    injected: int = 0
    sent: int = 0
    delivered: int = 0
    drops: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "injected": self.injected,
            "sent": self.sent,
            "delivered": self.delivered,
            "dropped": sum(self.drops.values()),
            "drops": dict(self.drops),
        }


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)
