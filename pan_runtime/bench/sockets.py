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

from pan_runtime.address import NodeAddress
from pan_runtime.application import capsule_bytes
from pan_runtime.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.pni_api import FloodHdr, PingHdr

from .configuration import Running
from .inproc import PORT, Trial, body_length

__all__ = ["socket_ping", "socket_flood", "jvm_gc_count"]

PING_TIMEOUT_S = 1.0
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


def socket_ping(
    run: Running,
    runtime: str,
    codes: dict[str, CodeObject],
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> list[Trial]:
    app = run.app
    dest = NodeAddress.parse(run.receiver_address).raw
    pad = bytes(body_length(size) - PingHdr.SIZE)
    hdr = PingHdr(dest=dest, port=PORT)
    ping = codes["ping"]
    out: list[Trial] = []
    lost = 0
    for t in range(warmup + trials):
        gc0 = jvm_gc_count(run) if runtime == "jvm" else None
        rtts: list[float] = []
        for seq in range(count):
            hdr.seq = seq
            app.send(ping, hdr.pack() + pad)
            deadline = time.monotonic() + PING_TIMEOUT_S
            while True:
                d = app.receive(timeout=max(0.0, deadline - time.monotonic()))
                now = time.monotonic_ns()
                if d is None:
                    lost += 1
                    if not rtts and lost >= 3:
                        raise PanError(f"ping {runtime} {run.config} {size}B: the first {lost} pings did not come back")
                    break
                if len(d.data) < PingHdr.SIZE:
                    continue
                back = PingHdr.unpack(d.data)
                if back.seq == seq and back.phase == 1:
                    rtts.append((now - back.sent_ns) / 1000)
                    break
        if len(rtts) < count // 2:
            raise PanError(f"ping {runtime} {run.config} {size}B: {count - len(rtts)} of {count} pings did not come back")
        if progress:
            progress(f"ping {run.bed.name} {run.config} {runtime} {size}B trial {t + 1}/{warmup + trials}")
        if t >= warmup:
            gc1 = jvm_gc_count(run) if runtime == "jvm" else None
            gcs = gc1 - gc0 if gc0 is not None and gc1 is not None else None
            out.append(Trial(rtts, None, gcs))
    return out


def socket_flood(
    run: Running,
    runtime: str,
    codes: dict[str, CodeObject],
    size: int,
    *,
    count: int,
    trials: int,
    warmup: int,
    flow_base: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[Trial]:
    app = run.app
    dest = NodeAddress.parse(run.receiver_address).raw
    pad = bytes(body_length(size) - FloodHdr.SIZE)
    flood = codes["flood"]
    every = max(10, count // 20)
    window = 2 * every
    home = app.address
    out: list[Trial] = []
    for t in range(warmup + trials):
        flow = flow_base + t + 1
        gc0 = jvm_gc_count(run) if runtime == "jvm" else None
        app.deliveries()  # nothing old may count for this flow
        app.send(flood, FloodHdr(dest=dest, port=PORT, kind=0, flow=flow, report_every=every).pack() + pad)
        wire = capsule_bytes(flood, FloodHdr(dest=dest, port=PORT, kind=1, flow=flow, report_every=every).pack() + pad, home)
        acked = 0
        last: FloodHdr | None = None
        sent = 0

        def take(timeout: float, flow: int = flow) -> bool:
            nonlocal acked, last
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
        deadline = time.monotonic() + REPORT_TIMEOUT_S
        while acked < (sent // every) * every and time.monotonic() < deadline:
            take(max(0.0, deadline - time.monotonic()))
        if last is None or not last.elapsed_ns:
            raise PanError(f"flood {runtime} {run.config} {size}B: the receiver sent no report")
        if progress:
            progress(f"flood {run.bed.name} {run.config} {runtime} {size}B trial {t + 1}/{warmup + trials}")
        if t >= warmup:
            gc1 = jvm_gc_count(run) if runtime == "jvm" else None
            gcs = gc1 - gc0 if gc0 is not None and gc1 is not None else None
            out.append(Trial([last.count / (last.elapsed_ns / 1e9)], None, gcs, 1.0 - last.count / sent))
    return out
