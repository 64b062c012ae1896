"""Subcommands for nodes on a real network: ``pan node``, ``pan ping``, ``pan flood``, ``pan stats``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from pan_runtime.errors import PanError

__all__ = ["add_subcommands", "ping", "flood", "rtt_summary", "format_error_report", "format_stats", "report_info", "socket_of"]

DEFAULT_PORT = 7
#: the runtime of ``pan ping``/``pan flood``'s reference code unless ``--runtime`` says: its
#: isolation is ``sandboxed``, the one the default trust rules load unsigned from the
#: network (``network.sandboxed = any``), so the nodes on the way take the code they fetch
DEFAULT_RUNTIME = "wasm"


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
    s.add_argument("-W", "--timeout", type=float, default=2.0, metavar="SECONDS", help="seconds to wait for each reply (default 2)")
    s.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    s.set_defaults(fn=_cmd_ping)

    s = sub.add_parser("flood", help="push capsules to a node as fast as it keeps up; report capsules/s and Mbit/s like iperf")
    _common(s)
    s.add_argument("-n", "--count", type=int, default=10_000, help="data capsules to send (default 10000)")
    s.add_argument("-s", "--size", type=int, default=512, help="capsule body bytes (default 512)")
    s.add_argument("--rate", type=float, default=0.0, help="pace at this many capsules/s (default: receiver-paced)")
    s.add_argument("-i", "--interval", type=float, default=1.0, metavar="SECONDS", help="a report line per this many seconds of the flow (default 1; 0: none)")
    s.add_argument("--report-every", type=int, default=500, help="the receiver reports every N capsules (default 500)")
    s.add_argument("-W", "--timeout", type=float, default=5.0, metavar="SECONDS", help="seconds to wait for a report before giving up (default 5)")
    s.set_defaults(fn=_cmd_flood)

    s = sub.add_parser("stats", help="a running node's statistics (from its application socket)")
    s.add_argument("node", help="the node's application socket, or its configuration file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=_cmd_stats)


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument("node", help="application socket (or configuration file) of the node to start from")
    s.add_argument("--to", required=True, help="address of the destination node, e.g. 127.0.0.1:7003 or [::1]:7003")
    s.add_argument(
        "--runtime",
        help=f"runtime of the reference code (default {DEFAULT_RUNTIME}: sandboxed, so nodes with the default trust rules "
        "load it from the network unsigned; native, jvm and restricted_py code needs --key)",
    )
    s.add_argument("--code", type=Path, help="use this .pco instead of the reference code")
    s.add_argument("--key", type=Path, metavar="PRIVATE_KEY", help="sign the code with this key (from `pan keygen`) before installing it")
    s.add_argument("--portmapper", type=Path, help="portmapper .pco (default: the reference one for the runtime)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to bind for replies (default {DEFAULT_PORT})")
    s.add_argument("--json", action="store_true", help="print one JSON document at the end instead of lines")
    s.add_argument("--no-progress", action="store_true", help="no progress display")


def socket_of(arg: str) -> str:
    """The application socket a command names: the path itself, or the one a node's
    configuration file (``*.toml``) sets."""
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

    with Client(socket_of(args.node)) as c:
        st = c.stats()
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    print(format_stats(st))
    return 0


def known_endpoints(st: dict) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    """The UDP endpoints a node's statistics name (its own and its neighbours'), to print
    IPv6 endpoint addresses as ``[ip6]:port`` (``address_text``)."""
    from pan_runtime.data.address import parse_endpoint
    from pan_runtime.errors import AddressError

    links = st.get("links", {})
    out = []
    for text in [*links.get("listen", []), *(n.get("endpoint", "") for n in links.get("neighbors", {}).values())]:
        try:
            out.append(parse_endpoint(text))
        except AddressError:
            continue
    return out


def shown(address: str, endpoints: list[tuple[str, int]]) -> str:
    """An address from a node's statistics, in the form a user types (see ``known_endpoints``)."""
    from pan_runtime.data.address import NodeAddress, address_text
    from pan_runtime.errors import AddressError

    try:
        return address_text(NodeAddress.parse(address), endpoints)
    except AddressError:
        return address


def drop_rows(st: dict) -> list[list[str]]:  # type: ignore[type-arg]
    """Every drop a node counted, by reason: [reason, count, where] (the node, or a code object)."""
    rows = [[reason, str(n), "node"] for reason, n in st.get("drops", {}).items()]
    for c in st.get("code", {}).values():
        rows += [[reason, str(n), f"{c['label']} ({c['runtime']})"] for reason, n in c.get("drops", {}).items()]
    rows.sort(key=lambda r: (-int(r[1]), r[0], r[2]))
    return rows


def format_stats(st: dict) -> str:  # type: ignore[type-arg]
    from pan_runtime.node.stats import format_table, format_workers

    eps = known_endpoints(st)
    lines = [
        f"node {st.get('name', st['node'])} ({shown(st['node'], eps)}), up {st.get('uptime_s', 0):.0f} s",
        f"received {st['received']}, injected {st['injected']}, sent {st['sent']}, delivered {st['delivered']}, "
        f"queue {st['queue']}, free buffers {st['pool_free']}",
    ]
    drops = drop_rows(st)
    if drops:
        lines.append(format_table(drops, ["drop reason", "count", "where"]))
    else:
        lines.append("drops: none")
    if st.get("refused"):
        lines.append("refused to code: " + ", ".join(f"{k}={v}" for k, v in sorted(st["refused"].items())))
    rows = [
        [c["label"], c["runtime"], str(c["capsules_in"]), str(c["forwarded"]), str(c["delivered"]), str(c["done"]), str(c["dropped"]), str(c.get("errors", 0)), f"{c['time_us_mean']:.2f}"]
        for c in st.get("code", {}).values()
    ]
    if rows:
        lines.append(format_table(rows, ["code", "runtime", "in", "fwd", "dlv", "done", "drop", "err", "µs/cap"]))
    workers = format_workers(st.get("workers", {}))
    if workers:
        lines.append(workers)
    links = st.get("links", {}).get("neighbors", {})
    if links:
        accounts = st.get("neighbours", {})
        rows = []
        for n, v in links.items():
            a = accounts.get(n, {})
            rows.append(
                [shown(n, eps), v["endpoint"], str(v["mtu"]), str(v["sent"]), str(v["received"]), str(v["largest_sent"]),
                 str(v["errors"]), str(v.get("over_share", 0)), f"{a.get('run_us', 0) / 1000:.1f}",
                 str(a.get("exhaustions", 0)), f"{a['throttled_for_ms'] / 1000:.1f} s" if a.get("throttled_for_ms") else ""]
            )
        lines.append(format_table(rows, ["neighbour", "endpoint", "largest capsule", "sent", "received", "largest sent", "errors",
                                         "over share", "run ms", "exhausted", "throttled"]))
    routes = st.get("routes", [])
    if routes:
        rows = [[shown(r["dest"], eps), shown(r["via"], eps), str(r["metric"]), "static" if r.get("static") else "learned"] for r in routes]
        lines.append(format_table(rows, ["route to", "via", "metric", "kind"]))
    fast = st.get("links", {}).get("fast_path")
    if fast:
        if fast.get("on"):
            lines.append(
                f"fast path: on; carried out in C {fast['finished_in_c']}, run in Python {fast['python_runs']}, "
                f"handed to Python after the run {fast['handed_over']}, Python path {fast['slow']}, "
                f"dropped in C {fast.get('dropped_in_c', 0)}; runtime batch calls {fast.get('batch_calls', 0)} "
                f"({fast.get('batched', 0)} capsules)"
            )
            threads = fast.get("threads", [])
            if len(threads) > 1:
                lines.append("fast path threads: carried out in C " + " / ".join(str(t["finished_in_c"]) for t in threads)
                             + f"; neighbour sockets moved between them {fast.get('neighbour_moves', 0)}"
                             + ("; on CPUs " + " / ".join(str(t.get("cpu", "any")) for t in threads)
                                if any("cpu" in t for t in threads) else ""))
        else:
            lines.append(f"fast path: off ({fast.get('why_off', '')})")
    sc = st.get("links", {}).get("syscalls")
    if sc:
        lines.append(
            f"system calls: recv {sc['recv_calls']} ({sc['recv_datagrams']} datagrams), send {sc['send_calls']} "
            f"({sc['send_datagrams']} datagrams), peeks {sc['peeks']}, waits {sc['waits']}; "
            f"system calls per capsule {sc['per_capsule_x1000'] / 1000:.3f}"
            + (f"; UDP GSO {sc['gso_sends']} sends ({sc['gso_datagrams']} datagrams, {sc['gso_refused']} refused)"
               if sc.get("gso_sends") or sc.get("gso_refused") else "")
            + (f"; io_uring {sc['uring_enters']} enters ({sc['uring_sends']} sends with their waits)"
               if sc.get("uring_enters") else "")
        )
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


def resolve_runtime(runtime: str | None) -> str:
    """``--runtime``, or ``DEFAULT_RUNTIME`` when it is available here (else an error saying
    what to choose instead)."""
    if runtime is not None:
        return runtime
    from pan_runtime.plugin.plugins import default_plugins

    runtimes = default_plugins().runtimes
    why = runtimes.get(DEFAULT_RUNTIME).available() if DEFAULT_RUNTIME in runtimes else "not installed"
    if why:
        raise PanError(
            f"the default runtime {DEFAULT_RUNTIME} is unavailable here ({why}); choose one with --runtime, and sign "
            "its code with --key KEY using a key the nodes trust (see docs/trust.md)"
        )
    return DEFAULT_RUNTIME


def trust_note(code) -> str | None:  # type: ignore[no-untyped-def]
    """What nodes with the default trust rules will do with ``code`` fetched from the
    network, when they will refuse it (None when they load it)."""
    from pan_runtime.node.trust import CodeOrigin, Rule, TrustPolicy
    from pan_runtime.plugin.plugins import default_plugins

    runtimes = default_plugins().runtimes
    if code.runtime not in runtimes:
        return None
    isolation = runtimes.get(code.runtime).isolation
    rule = TrustPolicy().rules[(CodeOrigin.NETWORK, isolation)]
    if rule is Rule.ANY or (rule is Rule.SIGNED and code.signatures):
        return None
    name = TrustPolicy.rule_name(CodeOrigin.NETWORK, isolation)
    return (
        f"note: {code.short_name} is unsigned {code.runtime} code (isolation {isolation.value}); nodes with the default "
        f"trust rules refuse it from the network (trust rule {name} = {rule.value}). Sign it with --key KEY "
        f"(a key the nodes list in [trust] trusted_keys), or use --runtime {DEFAULT_RUNTIME}."
    )


def _setup(client, runtime: str, protocol: str, code_path: Path | None, pm_path: Path | None, port: int, key_path: Path | None = None):  # type: ignore[no-untyped-def]
    """Install the protocol's code (signed with ``key_path`` if given) and a portmapper on the
    client's node; bind ``port``. A portmapper that other applications' ports go through
    stays (the node refuses to replace it); the port is bound through it."""
    from pan_runtime.cli.protocols import has_reference_sources, reference_code
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.errors import OwnershipError

    code = CodeObject.read(code_path) if code_path else reference_code(runtime, protocol)
    if key_path is not None:
        from pan_runtime.data.keys import load_private_key

        code = code.signed(load_private_key(key_path))
    if pm_path is not None:
        pm = CodeObject.read(pm_path)
    else:  # the portmapper of the code's runtime where there is one
        pm = reference_code(code.runtime if has_reference_sources(code.runtime) else resolve_runtime(None), "portmapper")
    client.install(pm, pin=True)
    try:
        client.use_portmapper(pm)
    except OwnershipError:
        pass
    client.install(code)
    client.bind(port)
    return code


def _addresses(client, to: str):  # type: ignore[no-untyped-def]
    """(destination, its text as typed, the client's node as text, the endpoints that name
    IPv6 addresses) for the lines printed."""
    from pan_runtime.data.address import NodeAddress, address_text, parse_endpoint
    from pan_runtime.errors import AddressError

    dest = NodeAddress.parse(to)
    try:
        typed = [parse_endpoint(to)]
    except AddressError:
        typed = []
    known = known_endpoints(client.stats())
    return dest, address_text(dest, typed), address_text(client.address, known), [*typed, *known]


def _code_info(code) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"name": code.hex_name, "label": code.short_name, "runtime": code.runtime, "signed": bool(code.signatures)}


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
    from pan_runtime.net.client import Client
    from pan_runtime.protocol_headers import PingHdr

    runtime = resolve_runtime(args.runtime) if args.code is None else None
    prog = _Progress(not args.no_progress and not args.json)
    replies: list[dict[str, object]] = []
    with Client.connect(socket_of(args.node), timeout=5.0) as c:
        code = _setup(c, runtime or "", "ping", args.code, args.portmapper, args.port, args.key)
        dest, dest_text, src_text, endpoints = _addresses(c, args.to)
        body = max(args.size, PingHdr.SIZE)
        note = trust_note(code)
        if note:
            print(note, file=sys.stderr)
        if not args.json:
            print(f"PING {dest_text} from {src_text} with {code.runtime} code {code.short_name}: {body} body bytes")

        def on_reply(seq: int, rtt: float | None, n: int) -> None:
            replies.append({"seq": seq, "bytes": n, "rtt_us": rtt})
            if args.json:
                return
            if args.quiet:
                prog.show(f"ping {seq + 1}/{args.count}")
            elif rtt is None:
                print(f"seq={seq}: no reply within {args.timeout} s")
            else:
                print(f"{n} bytes from {dest_text}: seq={seq} time={rtt:.1f} µs")

        def on_error(seq: int, report) -> None:  # type: ignore[no-untyped-def]
            replies.append({"seq": seq, "bytes": 0, "rtt_us": None, "error": report_info(report, endpoints)})
            if not args.json and not args.quiet:
                print(format_error_report(report, code.runtime, seq, endpoints))

        rtts, sent = ping(
            c, code, dest, count=args.count, size=args.size, port=args.port, interval=args.interval, timeout=args.timeout,
            on_reply=on_reply, on_error=on_error,
        )
    prog.done()
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 0.0
    summary = rtt_summary(rtts) if rtts else None
    if args.json:
        doc = {
            "destination": dest_text,
            "source": src_text,
            "code": _code_info(code),
            "body_bytes": body,
            "timeout_s": args.timeout,
            "transmitted": sent,
            "received": len(rtts),
            "loss_percent": loss,
            "rtt_us": summary,
            "replies": replies,
        }
        print(json.dumps(doc, indent=2))
        return 0 if rtts else 1
    print(f"--- {dest_text} pan ping statistics ---")
    print(f"{sent} capsules transmitted, {len(rtts)} received, {loss:.1f}% loss")
    if summary:
        s = summary
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


def format_error_report(report, runtime: str | None = None, seq: int | None = None, endpoints=()) -> str:  # type: ignore[no-untyped-def]
    """An error report as ``ping`` prints "Destination Host Unreachable": who dropped the
    capsule (as typed: ``endpoints`` name the IPv6 ones), why, and what to do."""
    from pan_runtime.data.address import address_text
    from pan_runtime.net.reports import summary

    at = f" seq={seq}" if seq is not None else ""
    line = f"From {address_text(report.reporter, endpoints)}:{at} {summary(report.reason)}"
    if report.detail:
        line += f": {report.detail}"
    if report.reason.startswith("trust:") and runtime is not None and runtime != DEFAULT_RUNTIME:
        line += (
            f"\n  fix: sign the {runtime} code with a key that node trusts (--key KEY, or pan sign), "
            f"or use --runtime {DEFAULT_RUNTIME}"
        )
    return line


def report_info(report, endpoints=()) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """An error report as JSON-ready data: who (as typed), the reason and the detail."""
    from pan_runtime.data.address import address_text

    return {"from": address_text(report.reporter, endpoints), "reason": report.reason, "detail": report.detail}


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
    interval: float = 0.0,
    probe_timeout: float | None = None,
    endpoints=(),
    on_progress=None,
    on_interval=None,
) -> dict[str, object]:
    """Send a flow of ``count`` capsules; returns the receiver's last report as numbers, and
    the flow cut into intervals of about ``interval`` seconds of the receiver's clock (one
    per report that ends one; ``on_interval`` is called with each as it closes).

    Without ``rate``, at most two report intervals are in flight: the sender waits for the
    receiver's report before running further ahead, so it goes as fast as the receiver
    keeps up without loss. ``timeout`` bounds the wait for each report, not the flood;
    ``probe_timeout`` (default ``timeout``) the wait for the first, which may wait for the
    nodes on the way to fetch the code. An error report about the probe (a node dropped it)
    ends the flood with a ``PanError`` that names the node (``endpoints`` name IPv6 ones).
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
    first = timeout if probe_timeout is None else probe_timeout
    deadline = time.monotonic() + first
    while True:
        d = client.receive(max(0.0, deadline - time.monotonic()), reports=True)
        if d is None:
            raise PanError(f"flood: no report from {dest} for the probe capsule within {first} s")
        if _is_report(d):
            raise PanError(f"flood: the probe capsule was dropped on the way\n{format_error_report(d, code.runtime, endpoints=endpoints)}")
        if len(d.data) >= FloodHdr.SIZE and FloodHdr.unpack(d.data).flow == probe_flow:
            break
    start = FloodHdr(dest=dest.raw, port=port, kind=0, flow=flow, report_every=report_every)
    client.send(code, start.pack() + pad)
    data = FloodHdr(dest=dest.raw, port=port, kind=1, flow=flow, report_every=report_every)
    last = None
    reported = 0
    t0 = time.monotonic()
    gap = 1.0 / rate if rate else 0.0
    intervals: list[dict[str, float]] = []
    mark = (0, 0, 0)  # count, bytes, elapsed_ns where the open interval began
    step_ns = int(interval * 1e9)

    def close_interval(r) -> None:  # type: ignore[no-untyped-def]
        nonlocal mark
        n, b, ns = r.count - mark[0], r.bytes - mark[1], r.elapsed_ns - mark[2]
        secs = ns / 1e9
        row = {
            "start_s": mark[2] / 1e9,
            "end_s": r.elapsed_ns / 1e9,
            "capsules": n,
            "bytes": b,
            "capsules_per_s": n / secs if secs > 0 else 0.0,
            "mbit_per_s": b * 8 / secs / 1e6 if secs > 0 else 0.0,
        }
        intervals.append(row)
        mark = (r.count, r.bytes, r.elapsed_ns)
        if on_interval:
            on_interval(row)

    def take(wait: float) -> bool:
        nonlocal last, reported
        d = client.receive(wait)
        if d is None:
            return False
        if len(d.data) >= FloodHdr.SIZE:
            r = FloodHdr.unpack(d.data)
            if r.kind == 2 and r.flow == flow and r.count > reported:
                last, reported = r, r.count
                if step_ns and r.elapsed_ns - mark[2] >= step_ns:
                    close_interval(r)
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
    # the last reports: wait while they keep coming, up to ``timeout`` after the latest
    final = (count // report_every) * report_every
    end = time.monotonic() + timeout
    while reported < final and time.monotonic() < end:
        before = reported
        take(max(0.0, end - time.monotonic()))
        if reported > before:
            end = time.monotonic() + timeout
    if last is None:
        raise PanError(f"flood: the receiver {dest} sent no report")
    if step_ns and last.count > mark[0]:
        close_interval(last)
    secs = last.elapsed_ns / 1e9 if last.elapsed_ns else 0.0
    return {
        "sent": count,
        "received": last.count,
        "bytes": last.bytes,
        "seconds": secs,
        "capsules_per_s": last.count / secs if secs else 0.0,
        "mbit_per_s": last.bytes * 8 / secs / 1e6 if secs else 0.0,
        "sender_seconds": time.monotonic() - t0,
        "intervals": intervals,
    }


def _interval_line(row: dict[str, float]) -> str:
    return (
        f"{row['start_s']:.2f}-{row['end_s']:.2f} s".rjust(17) + f"  {int(row['capsules']):>9}  {_bytes(row['bytes']):>11}  "
        f"{row['capsules_per_s']:>12,.0f}  {row['mbit_per_s']:>9.2f}"
    )


def _bytes(n: float) -> str:
    for unit, size in (("GBytes", 1 << 30), ("MBytes", 1 << 20), ("KBytes", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} Bytes"


def _cmd_flood(args: argparse.Namespace) -> int:
    from pan_runtime.net.client import Client

    runtime = resolve_runtime(args.runtime) if args.code is None else None
    prog = _Progress(not args.no_progress and not args.json)
    header = f"{'interval':>17}  {'capsules':>9}  {'transfer':>11}  {'capsules/s':>12}  {'Mbit/s':>9}"
    shown_header = False

    def on_interval(row: dict[str, float]) -> None:
        nonlocal shown_header
        if args.json:
            return
        prog.done()
        if not shown_header:
            print(header)
            shown_header = True
        print(_interval_line(row), flush=True)

    with Client.connect(socket_of(args.node), timeout=5.0) as c:
        code = _setup(c, runtime or "", "flood", args.code, args.portmapper, args.port, args.key)
        dest, dest_text, src_text, endpoints = _addresses(c, args.to)
        note = trust_note(code)
        if note:
            print(note, file=sys.stderr)
        if not args.json:
            print(f"FLOOD {dest_text} from {src_text} with {code.runtime} code {code.short_name}: {args.count} capsules of {args.size} body bytes")
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
            interval=args.interval,
            endpoints=endpoints,
            on_progress=lambda n, total: prog.show(f"flood: receiver reports {n}/{total}"),
            on_interval=on_interval,
        )
    prog.done()
    lost = r["sent"] - r["received"]  # type: ignore[operator]
    if args.json:
        doc = {"destination": dest_text, "source": src_text, "code": _code_info(code), "body_bytes": args.size, "not_reported": lost, **r}
        print(json.dumps(doc, indent=2))
        return 0
    if shown_header:
        print("- " * 33)
        print(_interval_line({"start_s": 0.0, "end_s": r["seconds"], "capsules": r["received"], "bytes": r["bytes"],
                              "capsules_per_s": r["capsules_per_s"], "mbit_per_s": r["mbit_per_s"]}) + "  receiver")  # type: ignore[dict-item]
    print(
        f"receiver counted {r['received']} of {r['sent']} capsules ({lost} not reported) in {r['seconds']:.3f} s: "
        f"{r['capsules_per_s']:,.0f} capsules/s, {r['mbit_per_s']:.1f} Mbit/s"
    )
    return 0
