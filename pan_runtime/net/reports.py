"""Error reports travel back to the sender, as ICMP's do for IP.

When the node drops a parsed capsule for a reason its sender can act on (trust refused the
code, no route, no code after a fetch, a fault or budget of the code, the hop limit, a port
nobody holds, ...), it tells the capsule's home node with an error report (a system capsule,
``pan_runtime.data.errreport``): who dropped it, the reason tag, a short detail saying what
refused it and what to do, and the start of its body. The home node hands the report to the
applications that sent capsules of that code object lately (``AppLink.report``); the
client library surfaces it (``Client.receive(reports=True)``, ``Client.errors()``).

Never in reply to a system capsule, so never about an error report: a report that cannot be
delivered is dropped and counted, and nothing is said about it. What leaves is bounded by
the node's limits (``[errors]``, ``ErrorReportConfig``): a token bucket for all reports and
one per destination, the buckets of at most ``destinations`` destinations kept (the least
recently used one forgotten first). A report that does not fit is counted
(``rate_limited``), not sent; a flood of refused capsules costs bounded reports.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import FLAG_SYSTEM, Capsule
from pan_runtime.data.errreport import ErrorReport, decode_report, encode_report
from pan_runtime.data.wire import ERROR_QUOTE_MAX
from pan_runtime.errors import CapsuleError, FaultReason
from pan_runtime.net.demand import TokenBucket

if TYPE_CHECKING:
    from pan_runtime.net.config import ErrorReportConfig
    from pan_runtime.net.demand import DemandLoader
    from pan_runtime.node.node import Node

__all__ = ["ErrorReporter", "advice", "summary"]

log = logging.getLogger("pan.reports")

_UNSPECIFIED = bytes(16)

#: drop reasons a sender can act on -> (what happened, in a few words; what to do)
_ACTIONABLE: dict[str, tuple[str, str]] = {
    "no_route": ("no route", "check the destination address, or give the node a route to it"),
    "no_link": ("no route", "the route's next hop is not a neighbour of the node; fix its routes"),
    "hop_limit": ("hop limit exceeded", "a routing loop, or a hop limit too low for the path"),
    "too_big": ("capsule too big", "the capsule is larger than a link's MTU on the way; send smaller capsules"),
    "no_code": ("no code", "the node could not find the code object; is its home node reachable from there?"),
    "no_code_recent": ("no code", "a fetch of this code failed a moment ago; the node drops its capsules for a while"),
    "fetch_timeout": ("code fetch failed", "the node asked for the code and got no answer; is the home node reachable from there?"),
    "fetch_limit": ("code fetch refused", "the node is fetching as many code objects as it may; try again later"),
    "park_full": ("code fetch refused", "too many capsules wait for code there; send fewer until the code is installed"),
    "dependency_failed": ("code refused", "a code object this one depends on could not be fetched or installed"),
    "code_refused": ("code refused", "the node could not install the code"),
    "install_error": ("code refused", "the node failed to install the code (its log has the cause)"),
    "quarantined": ("code quarantined", "the code faulted repeatedly there; it is quarantined for a while"),
    "no_port": ("port unreachable", "no application holds that port at the destination"),
    "portmap_lost": ("port unreachable", "the destination's portmapper is gone"),
    # the node's neighbour-fairness limits, when they drop a parsed capsule
    "neighbour_throttled": ("throttled", "the node limits what one neighbour sends it; send more slowly"),
    "neighbour_over_share": ("throttled", "the node limits each neighbour's share of its work; send more slowly"),
}
#: faults and load refusals of the code; not the node's own bugs (nothing a sender can do)
_FAULTS = {r.value for r in FaultReason} - {FaultReason.HOST_ERROR.value, FaultReason.RUNTIME_ERROR.value}


def summary(reason: str) -> str:
    """A few words for a drop reason: ``trust refused the code (rule network.none)``, ``no route``."""
    if reason.startswith("trust:"):
        return f"trust refused the code (rule {reason[6:]})"
    known = _ACTIONABLE.get(reason)
    if known is not None:
        return known[0]
    if reason in _FAULTS:
        return f"code fault or refusal: {reason}"
    return reason


def advice(reason: str) -> str | None:
    """What a sender can do about capsules dropped for ``reason``; None: not worth a report."""
    if reason.startswith("trust:"):
        return "sign the code with a key the node trusts (pan sign), or use a sandboxed runtime"
    known = _ACTIONABLE.get(reason)
    if known is not None:
        return known[1]
    if reason in _FAULTS:
        return "the code was refused or stopped there; see the reason and the code's limits"
    return None


class ErrorReporter:
    """Sends error reports for the node's drops (``Node.on_drop``) and delivers those that
    arrive for its applications (``DemandLoader.on_error_report``)."""

    def __init__(self, node: Node, config: ErrorReportConfig | None = None, demand: DemandLoader | None = None):
        from pan_runtime.net.config import ErrorReportConfig

        self.node = node
        self.cfg = config or ErrorReportConfig()
        self.demand = demand
        now = node.now_ns()
        self._all = TokenBucket(self.cfg.rate, self.cfg.burst, now)
        self._per: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self.counters: dict[str, int] = {
            "sent": 0,
            "rate_limited": 0,
            "not_sent": 0,
            "received": 0,
            "delivered": 0,
            "unclaimed": 0,
            "malformed": 0,
            "relayed": 0,
        }
        if self.cfg.enabled:
            node.on_drop = self.on_drop
        if demand is not None:
            demand.on_error_report = self.on_report

    # ------------------------------------------------------------------ sending
    def on_drop(self, cap: Capsule, reason: str, detail: str) -> None:
        """The node dropped ``cap`` for ``reason``: tell its home, if that helps and the limits allow."""
        if cap.flags & FLAG_SYSTEM:
            return  # never about a system capsule: above all, never about an error report
        hint = advice(reason)
        if hint is None:
            return
        home = cap.home_raw
        if home == _UNSPECIFIED:
            return
        node = self.node
        if not self._allow(home, node.now_ns()):
            self.counters["rate_limited"] += 1
            return
        try:
            body = cap.body
            n = min(body.length, ERROR_QUOTE_MAX) if body is not None else 0
            quote = bytearray(n)
            if n:
                body.read_into(0, memoryview(quote))
            text = f"{detail}; {hint}" if detail and not reason.startswith("trust:") else (detail or hint)
            if home == node.address.raw:
                self._deliver(ErrorReport(node.address, reason, text, cap.name, bytes(quote)))
                return
            data = encode_report(cap.name, node.address, NodeAddress(home), reason, text, bytes(quote), node.config.hop_limit)
            if self.demand is not None and self.demand.send_system(NodeAddress(home), data):
                self.counters["sent"] += 1
            else:
                self.counters["not_sent"] += 1
        except Exception:  # a report must never take the dispatch down
            log.exception("error report for a %s drop failed", reason)
            self.counters["not_sent"] += 1

    def _allow(self, dest: bytes, now: int) -> bool:
        per = self._per
        bucket = per.get(dest)
        if bucket is None:
            if len(per) >= self.cfg.destinations:
                per.popitem(last=False)
            bucket = per[dest] = TokenBucket(self.cfg.per_dest_rate, self.cfg.per_dest_burst, now)
        else:
            per.move_to_end(dest)
        return bucket.take(now) and self._all.take(now)

    # ------------------------------------------------------------------ receiving
    def on_report(self, cap: Capsule, item: Any, body: bytes, dest: NodeAddress) -> None:
        """An error report arrived: pass it on toward ``dest``, or hand it to the applications here."""
        node = self.node
        if dest != node.address:
            self.counters["relayed"] += 1
            if self.demand is not None:
                self.demand.relay(cap, dest)
            return
        self.counters["received"] += 1
        try:
            report = decode_report(cap.name, cap.home, body)
        except CapsuleError as exc:
            self.counters["malformed"] += 1
            node.count_drop("system_malformed", f"error report from {cap.home}: {exc}")
            return
        self._deliver(report)

    def _deliver(self, report: ErrorReport) -> None:
        node = self.node
        log.debug("%s: %s", node.name, report)
        to = [app for app in node.services.apps if report.code in app.sent_codes]
        delivered = sum(1 for app in to if app.report(report))
        if delivered:
            self.counters["delivered"] += delivered
        else:
            self.counters["unclaimed"] += 1

    def info(self) -> dict[str, Any]:
        return {**self.counters, "destinations": len(self._per)}
