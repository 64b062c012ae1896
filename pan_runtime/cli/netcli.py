"""Subcommands for nodes on a real network: ``pan node``, ``pan ping``, ``pan flood``, ``pan stats``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from pan_runtime.errors import PanError

__all__ = ["add_subcommands", "ping", "flood", "rtt_summary", "format_error_report"]

DEFAULT_PORT = 7


def add_subcommands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the network subcommands on the ``pan`` parser."""
    s = sub.add_parser("node", help="run a node from a TOML configuration (see docs/network.md)")
    s.add_argument("config", help="the node's configuration file")
    s.add_argument("--metrics-port", type=int, help="serve Prometheus text on this TCP port (0: any free port)")
    s.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)")
    s.set_defaults(fn=_cmd_node)

    s = sub.add_parser("ping", help="round trips of ping capsules from a node to another, like UNIX ping")
    _common(s)
    s.add_argument("-c", "--count", type=int, default=10, help="capsules to send (default 10)")
    s.add_argument("-s", "--size", type=int, default=128, help="capsule body bytes (default 128; at least the ping header)")
    s.add_argument("-i", "--interval", type=float, default=0.0, help="seconds between pings (default: back to back)")
    s.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each reply (default 2)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    s.set_defaults(fn=_cmd_ping)

    s = sub.add_parser("flood", help="push capsules to a node as fast as it keeps up; report capsules/s and Mbit/s")
    _common(s)
    s.add_argument("-n", "--count", type=int, default=10_000, help="data capsules to send (default 10000)")
    s.add_argument("-s", "--size", type=int, default=512, help="capsule body bytes (default 512)")
    s.add_argument("--rate", type=float, default=0.0, help="pace at this many capsules/s (default: receiver-paced)")
    s.add_argument("--report-every", type=int, default=500, help="the receiver reports every N capsules (default 500)")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a report before giving up")
    s.set_defaults(fn=_cmd_flood)

    s = sub.add_parser("stats", help="a running node's statistics (from its application socket)")
    s.add_argument("node", help="the node's application socket, or its configuration file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=_cmd_stats)


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument("node", help="application socket (or configuration file) of the node to start from")
    s.add_argument("--to", required=True, help="address of the destination node, e.g. 127.0.0.1:7003")
    s.add_argument("--runtime", default="native", help="runtime of the reference code to use (default native)")
    s.add_argument("--code", type=Path, help="use this .pco instead of the reference code")
    s.add_argument("--portmapper", type=Path, help="portmapper .pco (default: the reference one for --runtime)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to bind for replies (default {DEFAULT_PORT})")
    s.add_argument("--no-progress", action="store_true", help="no progress display")


def _socket_of(arg: str) -> str:
    if arg.endswith(".toml"):
        from pan_runtime.net.config import load_config

        cfg = load_config(arg)
        if not cfg.app_socket:
            raise PanError(f"{arg} configures no node.app_socket; `pan stats/ping/flood` need one")
        return cfg.app_socket
    return arg


def _cmd_node(args: argparse.Namespace) -> int:
    from pan_runtime.net.daemon import run_node

    return run_node(args.config, args.metrics_port, args.metrics_host, args.verbose)


def _cmd_stats(args: argparse.Namespace) -> int:
    from pan_runtime.net.client import Client

    with Client(_socket_of(args.node)) as c:
        st = c.stats()
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    print(format_stats(st))
    return 0


def format_stats(st: dict) -> str:  # type: ignore[type-arg]
    from pan_runtime.node.stats import format_table

    lines = [
        f"node {st.get('name', st['node'])} ({st['node']}), up {st.get('uptime_s', 0):.0f} s",
        f"received {st['received']}, injected {st['injected']}, sent {st['sent']}, delivered {st['delivered']}, "
        f"queue {st['queue']}, free buffers {st['pool_free']}",
        "drops: " + (", ".join(f"{k}={v}" for k, v in sorted(st["drops"].items())) or "none"),
    ]
    if st.get("refused"):
        lines.append("refused to code: " + ", ".join(f"{k}={v}" for k, v in sorted(st["refused"].items())))
    rows = [
        [c["label"], c["runtime"], str(c["capsules_in"]), str(c["forwarded"]), str(c["delivered"]), str(c["done"]), str(c["dropped"]), f"{c['time_us_mean']:.2f}"]
        for c in st.get("code", {}).values()
    ]
    if rows:
        lines.append(format_table(rows, ["code", "runtime", "in", "fwd", "dlv", "done", "drop", "µs/cap"]))
    links = st.get("links", {}).get("neighbors", {})
    if links:
        accounts = st.get("neighbours", {})
        rows = []
        for n, v in links.items():
            a = accounts.get(n, {})
            rows.append(
                [n, v["endpoint"], str(v["mtu"]), str(v["sent"]), str(v["received"]), str(v["largest_sent"]), str(v["errors"]),
                 str(v.get("over_share", 0)), f"{a.get('run_us', 0) / 1000:.1f}", str(a.get("exhaustions", 0)),
                 f"{a['throttled_for_ms'] / 1000:.1f} s" if a.get("throttled_for_ms") else ""]
            )
        lines.append(format_table(rows, ["neighbour", "endpoint", "largest capsule", "sent", "received", "largest sent", "errors",
                                         "over share", "run ms", "exhausted", "throttled"]))
    fast = st.get("links", {}).get("fast_path")
    if fast:
        if fast.get("on"):
            lines.append(
                f"fast path: on; carried out in C {fast['finished_in_c']}, run in Python {fast['python_runs']}, "
                f"handed to Python after the run {fast['handed_over']}, Python path {fast['slow']}, "
                f"dropped in C {fast.get('dropped_in_c', 0)}"
            )
        else:
            lines.append(f"fast path: off ({fast.get('why_off', '')})")
    d = st.get("demand")
    if d:
        lines.append(
            f"demand loading: fetched {d['fetched']}, failed {d['failed']}, parked now {d['parked_now']}, "
            f"requests {d['requests_sent']}, chunks served {d['chunks_served']}, hash mismatches {d['hash_mismatch']}"
        )
    return "\n".join(lines)


class _Progress:
    def __init__(self, on: bool):
        self.on = on and sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.on and (force or now - self.last > 0.1):
            self.last = now
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()

    def done(self) -> None:
        if self.on:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _setup(client, runtime: str, protocol: str, code_path: Path | None, pm_path: Path | None, port: int):  # type: ignore[no-untyped-def]
    """Install the protocol's code and a portmapper on the client's node; bind ``port``. A
    portmapper that other applications' ports go through stays (the node refuses to replace
    it); the port is bound through it."""
    from pan_runtime.cli.protocols import reference_code
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.errors import OwnershipError

    code = CodeObject.read(code_path) if code_path else reference_code(runtime, protocol)
    pm = CodeObject.read(pm_path) if pm_path else reference_code(runtime, "portmapper")
    client.install(pm, pin=True)
    try:
        client.use_portmapper(pm)
    except OwnershipError:
        pass
    client.install(code)
    client.bind(port)
    return code


def rtt_summary(rtts_us: list[float]) -> dict[str, float]:
    """min/median/mean/p99/max of round trips in µs."""
    s = sorted(rtts_us)
    return {
        "min": s[0],
        "median": statistics.median(s),
        "mean": statistics.fmean(s),
        "p99": s[min(len(s) - 1, int(0.99 * len(s)))],
        "max": s[-1],
    }


def ping(
    client,  # type: ignore[no-untyped-def]
    code,
    dest,
    *,
    count: int,
    size: int,
    port: int = DEFAULT_PORT,
    interval: float = 0.0,
    timeout: float = 2.0,
    on_reply=None,
    on_error=None,
) -> tuple[list[float], int]:
    """Send ``count`` pings of ``size`` body bytes one at a time; returns (RTTs in µs, sent).

    An error report about a ping (a node on the way dropped it) ends the wait for its reply:
    ``on_error(seq, report)`` is called with it instead of ``on_reply``."""
    from pan_runtime.cli.protocols import ping_body, ping_rtt_us

    rtts: list[float] = []
    for seq in range(count):
        client.send(code, ping_body(dest.raw, port, seq, size))
        deadline = time.monotonic() + timeout
        while True:
            d = client.receive(max(0.0, deadline - time.monotonic()), reports=True)
            if d is None:
                if on_reply:
                    on_reply(seq, None, 0)
                break
            if _is_report(d):
                if _report_seq(d) in (None, seq):
                    if on_error:
                        on_error(seq, d)
                    break
                continue
            rtt = ping_rtt_us(d.data, seq, time.monotonic_ns())
            if rtt is not None:
                rtts.append(rtt)
                if on_reply:
                    on_reply(seq, rtt, len(d.data))
                break
        if interval:
            time.sleep(interval)
    return rtts, count


def _cmd_ping(args: argparse.Namespace) -> int:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.net.client import Client
    from pan_runtime.protocol_headers import PingHdr

    dest = NodeAddress.parse(args.to)
    prog = _Progress(not args.no_progress)
    with Client.connect(_socket_of(args.node), timeout=5.0) as c:
        code = _setup(c, args.runtime, "ping", args.code, args.portmapper, args.port)
        print(f"PING {dest} from {c.address} with {args.runtime} code {code.short_name}: {max(args.size, PingHdr.SIZE)} body bytes")

        def on_reply(seq: int, rtt: float | None, n: int) -> None:
            if args.quiet:
                prog.show(f"ping {seq + 1}/{args.count}")
                return
            if rtt is None:
                print(f"seq={seq}: no reply within {args.timeout} s")
            else:
                print(f"{n} bytes from {dest}: seq={seq} time={rtt:.1f} µs")

        def on_error(seq: int, report) -> None:  # type: ignore[no-untyped-def]
            print(format_error_report(report, code.runtime, seq))

        rtts, sent = ping(
            c, code, dest, count=args.count, size=args.size, port=args.port, interval=args.interval, timeout=args.timeout,
            on_reply=on_reply, on_error=on_error,
        )
    prog.done()
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 0.0
    print(f"--- {dest} pan ping statistics ---")
    print(f"{sent} capsules transmitted, {len(rtts)} received, {loss:.1f}% loss")
    if rtts:
        s = rtt_summary(rtts)
        print(f"rtt min/median/mean/p99/max = {s['min']:.1f}/{s['median']:.1f}/{s['mean']:.1f}/{s['p99']:.1f}/{s['max']:.1f} µs")
    return 0 if rtts else 1


def _is_report(d) -> bool:  # type: ignore[no-untyped-def]
    from pan_runtime.data.errreport import ErrorReport

    return isinstance(d, ErrorReport)


def _report_seq(report) -> int | None:  # type: ignore[no-untyped-def]
    """The sequence number of the ping an error report quotes, if its quote holds one."""
    from pan_runtime.protocol_headers import PingHdr

    if len(report.quote) < PingHdr.SIZE:
        return None
    return PingHdr.unpack(report.quote[: PingHdr.SIZE]).seq


def format_error_report(report, runtime: str | None = None, seq: int | None = None) -> str:  # type: ignore[no-untyped-def]
    """An error report as ``ping`` prints "Destination Host Unreachable": who dropped the
    capsule, why, and what to do."""
    from pan_runtime.net.reports import summary

    at = f" seq={seq}" if seq is not None else ""
    line = f"From {report.reporter}:{at} {summary(report.reason)}"
    if report.detail:
        line += f": {report.detail}"
    if report.reason.startswith("trust:") and runtime is not None and runtime != "wasm":
        line += f"\n  fix: sign the {runtime} code with a key that node trusts (pan sign), or use --runtime wasm"
    return line


def flood(
    client,  # type: ignore[no-untyped-def]
    code,
    dest,
    *,
    count: int,
    size: int,
    port: int = DEFAULT_PORT,
    rate: float = 0.0,
    report_every: int = 500,
    timeout: float = 5.0,
    flow: int = 1,
    on_progress=None,
) -> dict[str, float]:
    """Send a flow of ``count`` capsules; returns the receiver's last report as numbers.

    Without ``rate``, at most two report intervals are in flight: the sender waits for the
    receiver's report before running further ahead, so it goes as fast as the receiver
    keeps up without loss.
    """
    from pan_runtime.protocol_headers import FloodHdr

    report_every = max(1, min(report_every, count))
    body = max(size, FloodHdr.SIZE)
    pad = bytes(body - FloodHdr.SIZE)
    # a probe flow of one capsule first: its report proves every node on the path has the
    # code (demand loading parks only a bounded number of capsules per code object)
    probe_flow = (flow ^ 0x80000000) & 0xFFFFFFFF
    probe = FloodHdr(dest=dest.raw, port=port, kind=1, flow=probe_flow, report_every=1)
    client.send(code, probe.pack() + pad)
    deadline = time.monotonic() + timeout
    while True:
        d = client.receive(max(0.0, deadline - time.monotonic()), reports=True)
        if d is None:
            raise PanError(f"flood: no report from {dest} for the probe capsule within {timeout} s")
        if _is_report(d):
            raise PanError(f"flood: the probe capsule was dropped on the way\n{format_error_report(d, code.runtime)}")
        if len(d.data) >= FloodHdr.SIZE and FloodHdr.unpack(d.data).flow == probe_flow:
            break
    start = FloodHdr(dest=dest.raw, port=port, kind=0, flow=flow, report_every=report_every)
    client.send(code, start.pack() + pad)
    data = FloodHdr(dest=dest.raw, port=port, kind=1, flow=flow, report_every=report_every)
    last = None
    reported = 0
    t0 = time.monotonic()
    gap = 1.0 / rate if rate else 0.0

    def take(wait: float) -> bool:
        nonlocal last, reported
        d = client.receive(wait)
        if d is None:
            return False
        if len(d.data) >= FloodHdr.SIZE:
            r = FloodHdr.unpack(d.data)
            if r.kind == 2 and r.flow == flow and r.count >= reported:
                last, reported = r, r.count
                if on_progress:
                    on_progress(reported, count)
        return True

    for seq in range(count):
        if rate:
            ahead = t0 + seq * gap - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        else:
            while seq - reported >= 2 * report_every:
                if not take(timeout):
                    raise PanError(f"flood: no report from {dest} within {timeout} s after {reported} capsules")
        data.seq = seq
        client.send(code, data.pack() + pad)
        if seq % 64 == 63:
            while take(0.0):
                pass
    end = time.monotonic() + timeout
    final = (count // report_every) * report_every
    while reported < final and time.monotonic() < end:
        take(max(0.0, end - time.monotonic()))
    if last is None:
        raise PanError(f"flood: the receiver {dest} sent no report")
    secs = last.elapsed_ns / 1e9 if last.elapsed_ns else 0.0
    return {
        "sent": count,
        "received": last.count,
        "bytes": last.bytes,
        "seconds": secs,
        "capsules_per_s": last.count / secs if secs else 0.0,
        "mbit_per_s": last.bytes * 8 / secs / 1e6 if secs else 0.0,
        "sender_seconds": time.monotonic() - t0,
    }


def _cmd_flood(args: argparse.Namespace) -> int:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.net.client import Client

    dest = NodeAddress.parse(args.to)
    prog = _Progress(not args.no_progress)
    with Client.connect(_socket_of(args.node), timeout=5.0) as c:
        code = _setup(c, args.runtime, "flood", args.code, args.portmapper, args.port)
        print(f"FLOOD {dest} from {c.address} with {args.runtime} code {code.short_name}: {args.count} capsules of {args.size} body bytes")
        r = flood(
            c,
            code,
            dest,
            count=args.count,
            size=args.size,
            port=args.port,
            rate=args.rate,
            report_every=args.report_every,
            timeout=args.timeout,
            on_progress=lambda n, total: prog.show(f"flood: receiver reports {n}/{total}"),
        )
    prog.done()
    lost = r["sent"] - r["received"]
    print(
        f"receiver counted {r['received']} of {r['sent']} capsules ({lost} not reported) in {r['seconds']:.3f} s: "
        f"{r['capsules_per_s']:,.0f} capsules/s, {r['mbit_per_s']:.1f} Mbit/s"
    )
    return 0
