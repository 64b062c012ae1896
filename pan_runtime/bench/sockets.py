"""``ping`` and ``flood`` through a configuration running on a socket testbed.

The harness is the sender's application. Ping sends one capsule at a time and takes the
round trip as its receive time minus the ``sent_ns`` the sender node's ping code stamped
(``CLOCK_MONOTONIC``, shared by the processes of one host); the application link's own
cost is in every configuration alike, so it cancels in the middle node's added latency.
Flood keeps at most two report intervals in flight, so a slower middle is measured at the
rate it sustains rather than by the datagrams it loses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pan_runtime.cli.protocols import ping_body, ping_rtt_us
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.udp_fast import PATHS
from pan_runtime.protocol_headers import FloodHdr

from .configuration import Running
from .inproc import PORT, Trial, body_length

__all__ = ["socket_ping", "socket_flood", "jvm_gc_count", "fast_share", "woke_share"]

#: a ping not back by then is lost (one at a time, so only a dropped datagram or a stall takes this long)
PING_TIMEOUT_S = 5.0
#: the flood waits for a report this long after the receiver last made progress: a busy
#: machine (a JVM compiling, a loaded CPU) slows the receiver, which is not a lost report
REPORT_TIMEOUT_S = 2.0


def jvm_gc_count(run: Running) -> int | None:
    """Collections the JVMs of the configuration's nodes ran, if the nodes report them."""
    total = 0
    seen = False
    for stats in run.node_stats().values():
        rt = stats.get("runtimes", {})
        jvm = rt.get("jvm") if isinstance(rt, dict) else None
        if isinstance(jvm, dict) and isinstance(jvm.get("gc_pauses"), int):
            total += jvm["gc_pauses"]
            seen = True
    return total if seen else None


#: the middle's counters of its worker lanes read beside its fast path's (``pan stats --json``)
_LANE_KEYS = ("fast_lane_admitted", "fast_lane_woke")


def _fast_paths(run: Running) -> dict[str, int] | None:
    """The middle pan node's fast-path counters, and its worker lanes' where its workers poll
    (None: no pan node in the middle, or no fast path)."""
    client = run.clients.get("middle")
    if client is None:
        return None
    stats = client.stats()
    fast = stats.get("links", {}).get("fast_path", {})
    if not fast.get("on"):
        return None
    out = {k: int(v) for k, v in fast.items() if k != "on" and isinstance(v, int)}
    if run.workers_poll:
        out.update({k: int(stats[k]) for k in _LANE_KEYS if isinstance(stats.get(k), int)})
    return out


def fast_share(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """Share of the datagrams the middle read between two readings that its fast path carried out
    in C: finished there, or written into the ring of their code object's worker."""
    if before is None or after is None:
        return None
    total = sum(after[p] for p in PATHS) - sum(before[p] for p in PATHS)
    in_c = sum(after.get(p, 0) - before.get(p, 0) for p in ("finished_in_c", "to_worker"))
    return in_c / total if total > 0 else None


def woke_share(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """Share of the batches the middle's worker lanes handed over between two readings whose
    worker was not polling and had to be woken (None: no batches, or no lane counters read)."""
    if before is None or after is None or not all(k in before and k in after for k in _LANE_KEYS):
        return None
    batches = after["fast_lane_admitted"] - before["fast_lane_admitted"]
    return (after["fast_lane_woke"] - before["fast_lane_woke"]) / batches if batches > 0 else None


def _ping_once(run: Running, ping: CodeObject, body: bytes, seq: int) -> float | None:
    """One round trip (µs), or None when no answer came within ``PING_TIMEOUT_S``."""
    app = run.app
    app.send(ping, body)
    deadline = time.monotonic() + PING_TIMEOUT_S
    while True:
        d = app.receive(timeout=max(0.0, deadline - time.monotonic()))
        if d is None:
            return None
        rtt = ping_rtt_us(d.data, seq, time.monotonic_ns())
        if rtt is not None:
            return rtt


def socket_ping(
    runs: list[Running],
    runtime: str,
    codes: dict[str, CodeObject],
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, list[Trial]], dict[str, str]]:
    """Ping through every configuration in ``runs``, one capsule to each in turn, so drift of
    the machine hits all of them alike. Returns trials and failures, by configuration."""
    ping = codes["ping"]
    dests = {run.config: NodeAddress.parse(run.receiver_address).raw for run in runs}
    out: dict[str, list[Trial]] = {run.config: [] for run in runs}
    failed: dict[str, str] = {}
    live = list(runs)
    for t in range(warmup + trials):
        gc0 = {run.config: jvm_gc_count(run) for run in live} if runtime == "jvm" else {}
        paths0 = {run.config: _fast_paths(run) for run in live}
        rtts: dict[str, list[float]] = {run.config: [] for run in live}
        lost = dict.fromkeys(rtts, 0)
        for seq in range(count):
            for run in list(live):
                rtt = _ping_once(run, ping, ping_body(dests[run.config], PORT, seq, body_length(size)), seq)
                if rtt is not None:
                    rtts[run.config].append(rtt)
                    continue
                lost[run.config] += 1
                if lost[run.config] >= max(3, count // 2):
                    failed[run.config] = f"ping {runtime} {size}B: {lost[run.config]} pings did not come back"
                    live.remove(run)
        if progress:
            progress(f"ping {runs[0].bed.name} {runtime} {size}B trial {t + 1}/{warmup + trials}")
        if t >= warmup:
            for run in live:
                gcs = None
                if runtime == "jvm":
                    g0, g1 = gc0.get(run.config), jvm_gc_count(run)
                    gcs = g1 - g0 if g0 is not None and g1 is not None else None
                before, after = paths0.get(run.config), _fast_paths(run)
                out[run.config].append(Trial(rtts[run.config], None, gcs, fast_share=fast_share(before, after),
                                             woke_share=woke_share(before, after)))
    return {k: v for k, v in out.items() if k not in failed}, failed


def socket_flood(
    runs: list[Running],
    runtime: str,
    codes: dict[str, CodeObject],
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    flow_base: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, list[Trial]], dict[str, str]]:
    """Flood through every configuration in ``runs``, a trial of each in turn."""
    out: dict[str, list[Trial]] = {run.config: [] for run in runs}
    failed: dict[str, str] = {}
    for t in range(warmup + trials):
        for run in runs:
            if run.config in failed:
                continue
            try:
                trial = _flood_once(run, runtime, codes, size, count, flow_base + t + 1)
            except PanError as exc:
                failed[run.config] = str(exc)
                continue
            if t >= warmup:
                out[run.config].append(trial)
        if progress:
            progress(f"flood {runs[0].bed.name} {runtime} {size}B trial {t + 1}/{warmup + trials}")
    return {k: v for k, v in out.items() if k not in failed}, failed


def _flood_once(run: Running, runtime: str, codes: dict[str, CodeObject], size: int, count: int, flow: int) -> Trial:
    app = run.app
    dest = NodeAddress.parse(run.receiver_address).raw
    pad = bytes(body_length(size) - FloodHdr.SIZE)
    flood = codes["flood"]
    every = max(10, count // 20)
    window = 2 * every
    gc0 = jvm_gc_count(run) if runtime == "jvm" else None
    paths0 = _fast_paths(run)
    app.deliveries()  # nothing old may count for this flow
    app.send(flood, FloodHdr(dest=dest, port=PORT, kind=0, flow=flow, report_every=every).pack() + pad)
    wire = capsule_bytes(flood, FloodHdr(dest=dest, port=PORT, kind=1, flow=flow, report_every=every).pack() + pad, app.address)
    acked = 0
    last: FloodHdr | None = None
    sent = 0

    receiver = run.clients.get("receiver")

    def ran() -> int:
        """Capsules the receiver node has run, in all."""
        if receiver is None:
            return 0
        return sum(int(c.get("capsules_in", 0)) for c in receiver.stats().get("code", {}).values())

    seen = [ran()]

    def progressed() -> bool:
        """Whether the receiver ran more capsules since the last look."""
        n = ran()
        moved, seen[0] = n > seen[0], n
        return moved

    def take(timeout: float) -> bool:
        """One delivery; waits ``timeout`` s after the receiver last made progress."""
        nonlocal acked, last
        d = app.receive(timeout=timeout)
        while d is None and timeout > 0 and progressed():
            d = app.receive(timeout=timeout)
        if d is None:
            return False
        if len(d.data) >= FloodHdr.SIZE:
            rep = FloodHdr.unpack(d.data)
            if rep.kind == 2 and rep.flow == flow and (last is None or rep.count > last.count):
                last, acked = rep, rep.count
        return True

    while sent < count:
        if sent - acked >= window:
            if not take(REPORT_TIMEOUT_S):
                break  # reports stopped: capsules were lost
            continue
        app.send_raw(wire)
        sent += 1
        if sent % 64 == 0:
            while app.pending:
                take(0.0)
    while acked < (sent // every) * every:
        if not take(REPORT_TIMEOUT_S):
            break
    if last is None or not last.elapsed_ns:
        raise PanError(f"flood {runtime} {run.config} {size}B: the receiver sent no report")
    gc1 = jvm_gc_count(run) if runtime == "jvm" else None
    gcs = gc1 - gc0 if gc0 is not None and gc1 is not None else None
    paths1 = _fast_paths(run)
    return Trial([last.count / (last.elapsed_ns / 1e9)], None, gcs, 1.0 - last.count / sent, fast_share(paths0, paths1),
                 woke_share(paths0, paths1))
