"""The ``tc`` commands that shape one end of a link: ``netem`` for delay, jitter and loss,
``tbf`` under it (or alone) for the rate. Both ends of a link get the same, so each
direction sees the link's delay once."""

from __future__ import annotations

from .topology import Shaping

__all__ = ["tc_commands"]


def tc_commands(ns: str | None, dev: str, s: Shaping) -> list[list[str]]:
    """Commands that shape ``dev`` in namespace ``ns`` (None: run inside the node's namespace;
    none when the link is not shaped)."""
    tc = ["tc", *(["-n", ns] if ns else []), "qdisc", "add", "dev", dev]
    out = []
    parent = ["root"]
    if s.delay_us or s.loss_pct:
        netem = ["netem"]
        if s.delay_us:
            netem += ["delay", f"{s.delay_us}us"] + ([f"{s.jitter_us}us"] if s.jitter_us else [])
        if s.loss_pct:
            netem += ["loss", f"{s.loss_pct}%"]
        out.append(tc + ["root", "handle", "1:"] + netem)
        parent = ["parent", "1:"]
    if s.rate_bit:
        burst = max(1600, s.rate_bit // 8 // 250)  # a tick's worth of bytes at 250 Hz, at least a packet
        out.append(tc + parent + ["handle", "2:", "tbf", "rate", f"{s.rate_bit}bit", "burst", str(burst), "latency", "100ms"])
    return out
