"""Counters a node keeps per code object, per runtime and for itself; readable and printable.

``CodeStats`` and ``NodeStats`` are the counters the dispatch path bumps; ``statistics``,
``code_stats``, ``runtime_totals`` and ``format_statistics`` read a node's counters as plain
data or as a text table (``Node`` binds them as its methods: ``node.statistics()``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pan_runtime.plugin.runtime import Isolation

if TYPE_CHECKING:
    from pan_runtime.node.node import Node

#: how a worker can end (``FaultReason`` values)
_DEATHS = ("crash", "abort", "killed_budget", "killed_memory")

__all__ = [
    "CodeStats",
    "NodeStats",
    "format_table",
    "statistics",
    "code_stats",
    "runtime_totals",
    "worker_statistics",
    "format_workers",
    "format_statistics",
]

log = logging.getLogger("pan.node")


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
    #: resources the node refused the code, by reason (``pan_runtime.node.quota.Refusal``)
    refused: Counter[str] = field(default_factory=Counter)

    def add_time(self, ns: int) -> None:
        self.time_ns += ns
        if ns > self.max_time_ns:
            self.max_time_ns = ns

    def add_finished_in_c(self, forwarded: int, dropped: int, lost: int, steps: int, fuel: int, time_ns: int,
                          max_ns: int) -> None:
        """Fold what the fast path carried out in C for a worker's capsules (their verdicts
        read there: forwards sent, ``code_drop`` drops, forwards the kernel refused as
        ``link_lost``) and what running them cost, into the totals."""
        self.forwarded += forwarded
        if dropped:
            self.drops["code_drop"] += dropped
        if lost:
            self.drops["link_lost"] += lost
        self.steps += steps
        self.fuel += fuel
        self.time_ns += time_ns
        if max_ns > self.max_time_ns:
            self.max_time_ns = max_ns

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
        self.refused.update(other.refused)

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
            "refused": dict(self.refused),
        }


@dataclass
class NodeStats:
    """Node-level counters: what arrived, what left, and drops that belong to no code object."""

    received: int = 0
    injected: int = 0
    sent: int = 0
    delivered: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    #: resources the node refused code objects, by reason (``pan_runtime.node.quota.Refusal``)
    refused: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "injected": self.injected,
            "sent": self.sent,
            "delivered": self.delivered,
            "dropped": sum(self.drops.values()),
            "drops": dict(self.drops),
            "refused": dict(self.refused),
        }


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def code_stats(node: Node) -> dict[str, dict[str, Any]]:
    """Each installed code object's counters, by hex name."""
    node.sync_counters()
    return {e.code.hex_name: {"runtime": e.runtime, "label": e.code.short_name, **e.stats.as_dict()} for e in node.cache}


def runtime_totals(node: Node) -> dict[str, CodeStats]:
    """The counters of the installed code objects summed per runtime."""
    node.sync_counters()
    totals: dict[str, CodeStats] = {}
    for e in node.cache:
        totals.setdefault(e.runtime, CodeStats()).merge(e.stats)
    return totals


def _runtime_statistics(node: Node) -> dict[str, dict[str, Any]]:
    out = {k: v.as_dict() for k, v in runtime_totals(node).items()}
    for name, rt in node.codes.runtimes.items():
        try:
            extra = rt.statistics()
        except Exception as exc:  # a runtime's counters must not break the node's report
            log.warning("runtime %s statistics failed: %s", name, exc)
            continue
        if extra:
            out.setdefault(name, CodeStats().as_dict()).update(extra)
    return out


def worker_statistics(node: Node) -> dict[str, dict[str, int]]:
    """Per runtime in process isolation: workers up, spares and standbys waiting, starts,
    restarts (those that took a warm standby), kills, demotions (``worker_demote_ms``), deaths
    of idle workers and of standbys or spares, how the running workers ran their capsules (C
    batch entry or Python) and deaths by reason."""
    out = {}
    for name, rt in sorted(node.codes.runtimes.items()):
        if rt.isolation is Isolation.PROCESS:
            w = rt.statistics()
            out[name] = {
                "workers": w.get("workers", 0),
                "spares": w.get("spares", 0),
                "standbys": w.get("standbys", 0),
                "starts": w.get("worker_starts", 0),
                "restarts": w.get("worker_restarts", 0),
                "warm_restarts": w.get("worker_warm_restarts", 0),
                "kills": w.get("worker_kills", 0),
                # batches (and their capsules) the node's C fast path wrote into the rings itself
                "fast_batches": w.get("worker_fast_batches", 0),
                "fast_capsules": w.get("worker_fast_capsules", 0),
                # how the running workers ran capsules: through the runtime's C batch entry
                # (calls, capsules) or on their Python path
                "entry_calls": w.get("worker_entry_calls", 0),
                "entry_capsules": w.get("worker_entry_capsules", 0),
                "python_capsules": w.get("worker_python_capsules", 0),
                "demotions": w.get("worker_demotions", 0),
                "idle_deaths": w.get("worker_idle_deaths", 0),
                "standby_deaths": w.get("standby_deaths", 0),
                **{f"died_{d}": w.get(f"worker_{d}", 0) for d in _DEATHS},
            }
    return out


def format_workers(workers: dict[str, dict[str, int]]) -> str:
    """One line on the workers of each runtime in process isolation ("" when none)."""
    parts = []
    for name, w in sorted(workers.items()):
        deaths = ", ".join(f"{d} {w[f'died_{d}']}" for d in _DEATHS if w.get(f"died_{d}"))
        parts.append(f"{name}: {w['workers']} up, {w.get('spares', 0)} spare, {w['restarts']} restarts, {w['kills']} kills, "
                     f"{w.get('standbys', 0)} standby, {w.get('warm_restarts', 0)} warm restarts" + (f" ({deaths})" if deaths else ""))
    return "workers: " + "; ".join(parts) if parts else ""


def statistics(node: Node) -> dict[str, Any]:
    """Everything a node counts, as plain data (what ``pan node`` and the bench report)."""
    node.sync_counters()
    cache = node.cache
    now = node.now_ns()
    return {
        "node": str(node.address),
        **node.stats.as_dict(),
        "queue": len(node.queue),
        "pool_free": node.pool.available,
        "pool": {
            "buffers": node.pool.count,
            "free": node.pool.available,
            "reserve": node.buffers.reserve,
            "held_by_code": sum(e.buffers.held for e in cache),
        },
        "soft_state": {"bytes": node.soft_state.bytes_used, "max_bytes": node.soft_state.max_bytes},
        "cache": {
            "entries": len(cache),
            "bytes": cache.bytes_used,
            "evictions": cache.evictions,
            "disk_errors": node.disk.errors if node.disk is not None else 0,
            "disk_rejected": node.disk.rejected if node.disk is not None else 0,
        },
        "code": code_stats(node),
        "runtimes": _runtime_statistics(node),
        "workers": worker_statistics(node),
        "quarantined": [e.code.hex_name for e in cache if not e.breaker.allows(now)],
        "ports": node.ports.info(),
        "neighbours": node.ledger.info(),
        # lines the node's bounds kept out of its log: code's own (codelog), fault warnings (faultlog)
        "log": {"code_lines_unwritten": node.host.code_log.suppressed,
                "fault_warnings_unwritten": node.fault_log.unlogged},
    }


def format_statistics(node: Node) -> str:
    """A node's counters as text: a line of totals, the node's drops, a table per code object."""
    node.sync_counters()
    rows = []
    now = node.now_ns()
    for e in node.cache:
        s = e.stats
        rows.append(
            [
                e.code.short_name,
                e.runtime,
                str(s.capsules_in),
                str(s.forwarded),
                str(s.delivered),
                str(s.done),
                str(s.dropped),
                str(s.errors),
                f"{(s.time_ns / s.capsules_in / 1000) if s.capsules_in else 0:.2f}",
                "quarantined" if not e.breaker.allows(now) else "",
            ]
        )
    ns = node.stats
    head = f"node {node.name}: received {ns.received}, injected {ns.injected}, sent {ns.sent}, delivered {ns.delivered}"
    drops = ", ".join(f"{k}={v}" for k, v in sorted(ns.drops.items())) or "none"
    table = format_table(rows, ["code", "runtime", "in", "fwd", "dlv", "done", "drop", "err", "µs/cap", ""])
    text = f"{head}\nnode drops: {drops}\n"
    throttled = ", ".join(str(n) for n, _ in node.ledger.remaining_ns())
    if throttled:
        text += f"throttled neighbours: {throttled}\n"
    text += table
    workers = format_workers(worker_statistics(node))
    if workers:
        text += "\n" + workers
    if ns.refused:
        text += "\nrefused to code: " + ", ".join(f"{k}={v}" for k, v in sorted(ns.refused.items()))
    code_lines, warnings = node.host.code_log.suppressed, node.fault_log.unlogged
    if code_lines or warnings:
        text += f"\nnot written to the log (rate bounds): {code_lines} lines of code, {warnings} fault warnings"
    return text
