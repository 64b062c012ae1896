"""Fair share under a flood (not a test): does one neighbour's flood starve another's pings?

Two ``pan node`` processes on loopback, a middle M and a receiver R, and two neighbours of M
that are plain UDP sockets in this harness: a pinger P and a flooder F. P sends ping
capsules toward R through M (R bounces them back through M), one every ``--interval-ms``,
and measures each round trip from the ``sent_ns`` it stamped itself. F is ``--senders``
processes sharing F's source port (``SO_REUSEPORT``), each a tight loop of ``sendto`` of
one pre-built capsule of the forward protocol addressed to F itself, so M runs the code and
sends every capsule it serves back to F (whose sockets nobody reads).

Each run measures the pings with F idle, then with F flooding as fast as it can, and reports
loss and the median round trip of both, the ratio of the medians, how many flood capsules M
forwarded per second and M's drops by reason. The summary gives the median of the runs and
their min–max. Target: under the flood, at most 1 % of pings lost and the median RTT within
2× of the idle one.

    python benchmarks/fair_share.py [--runs 5] [--pings 300] [--senders 2] [--runtime native]
                                    [--size 200] [--limits "fast_path = false"] [--pin]
                                    [--target middle|sink] [--json out.json]

The processes share the host's CPUs: on a 2-core machine the flooders, the middle, the
receiver and the pinger compete for them, and a busy process answers later, whatever the
middle does. ``--pin`` puts the middle alone on the first CPU and everything else on the
last, the flooders under ``SCHED_IDLE`` (as if they were another machine); ``--target sink``
sends the same flood to a socket nobody reads, which shows the delay the load alone adds.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pan_runtime.bench.testbed import Proc
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.client import Client
from pan_runtime.net.lifetime import child_env
from pan_runtime.protocol_headers import PingHdr

LO = "127.0.0.1"
#: with --pin: the middle alone on the first CPU; the receiver, the pinger and the flooders
#: on the last, the flooders under SCHED_IDLE (standing in for another machine: on a 2-core
#: host they otherwise take the CPU the receiver and pinger need to answer)
_CPUS = sorted(os.sched_getaffinity(0))
_MIDDLE_CPU, _OTHER_CPU = str(_CPUS[0]), str(_CPUS[-1])
PORT = 7
SETTLE_S = 0.5
STRAGGLERS_S = 1.0


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((LO, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_toml(name: str, port: int, sock: Path, runtime: str, neighbors: list[int], routes: list[tuple[int, int]], limits: str) -> str:
    lines = [
        "[node]",
        f'name = "{name}"',
        f'listen = ["{LO}:{port}"]',
        f'app_socket = "{sock}"',
        'log_level = "error"',
        "[runtimes]",
        f'enabled = ["{runtime}", "restricted_py"]',
        "[limits]",
        "budget_time_ms = 1000",
        *[x.strip() for x in limits.split(";") if x.strip()],
    ]
    for n in neighbors:
        lines += ["[[neighbors]]", f'address = "{LO}:{n}"']
    for dest, via in routes:
        lines += ["[[routes]]", f'dest = "{LO}:{dest}"', f'via = "{LO}:{via}"']
    return "\n".join(lines) + "\n"


def _start_node(tmp: Path, name: str, toml: str, cpu: str | None) -> Proc:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(toml)
    cmd = [sys.executable, "-m", "pan_runtime.cli.main", "node", str(cfg)]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    popen = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp,
        env=child_env(),
    )
    proc = Proc(f"pan node {name}", popen)
    proc.wait_line("pan node", 60.0)
    return proc


#: one flooder process: ``sendto`` one capsule from a shared source port as fast as the loop
#: goes (a ``-c`` program: it starts in milliseconds, without pan's imports)
FLOODER = """
import os, socket, sys
src, dst, capsule = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
if os.environ.get("PAN_PARENT_PID"):  # die with the harness (pan_runtime.net.lifetime's rule)
    import ctypes, signal
    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", src))
print("ready", flush=True)
send, to = s.sendto, ("127.0.0.1", dst)
while True:
    try:
        send(capsule, to)
    except OSError:
        pass
"""


def _start_flooders(n: int, src_port: int, dst_port: int, capsule: bytes, pin: bool) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-c", FLOODER, str(src_port), str(dst_port), capsule.hex()]
    if pin:
        cmd = ["taskset", "-c", _OTHER_CPU, "chrt", "-i", "0", *cmd]
    procs = [subprocess.Popen(cmd, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) for _ in range(n)]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"ready":
            _stop(procs)
            raise RuntimeError("a flooder did not start")
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _pings(sock: socket.socket, code: bytes, me: NodeAddress, dest: NodeAddress, m_port: int, n: int, interval_s: float, size: int) -> list[float | None]:
    """Send ``n`` pings, one every ``interval_s``; the round trip of each (µs) or None if lost."""
    rtts: list[float | None] = [None] * n
    pad = bytes(max(0, size - HEADER_SIZE - PingHdr.SIZE))
    start = time.monotonic()
    sent = 0
    end = None
    while True:
        now = time.monotonic()
        if sent < n and now >= start + sent * interval_s:
            hdr = PingHdr(dest=dest.raw, port=PORT, phase=0, src=me.raw, seq=sent, sent_ns=time.monotonic_ns())
            try:
                sock.sendto(capsule_bytes(code, hdr.pack() + pad, me), (LO, m_port))
            except OSError:
                pass
            sent += 1
            if sent == n:
                end = time.monotonic() + STRAGGLERS_S
            continue
        if end is not None and now >= end:
            return rtts
        wake = start + sent * interval_s if sent < n else end
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if not ready:
            continue
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            t = time.monotonic_ns()
            if len(data) < HEADER_SIZE + PingHdr.SIZE:
                continue
            back = PingHdr.unpack(data[HEADER_SIZE:])
            if back.phase == 1 and 0 <= back.seq < n and rtts[back.seq] is None:
                rtts[back.seq] = (t - back.sent_ns) / 1000


def _summary(rtts: list[float | None]) -> dict[str, float]:
    got = [r for r in rtts if r is not None]
    return {
        "loss_pct": 100.0 * (len(rtts) - len(got)) / len(rtts),
        "median_us": statistics.median(got) if got else float("nan"),
    }


def one_run(args: argparse.Namespace, tmp: Path, codes: dict[str, Any]) -> dict[str, Any]:
    pm, pr, pp, pf = _free_ports(4)
    procs: list[Proc] = []
    flooders: list[subprocess.Popen[bytes]] = []
    clients: list[Client] = []
    pinger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        pinger.bind((LO, pp))
        pinger.setblocking(False)
        m_sock, r_sock = tmp / "m.sock", tmp / "r.sock"
        procs.append(_start_node(tmp, "middle", _node_toml("middle", pm, m_sock, args.runtime, [pr, pp, pf], [], args.limits), _MIDDLE_CPU if args.pin else None))
        procs.append(_start_node(tmp, "receiver", _node_toml("receiver", pr, r_sock, args.runtime, [pm], [(pp, pm), (pf, pm)], ""), _OTHER_CPU if args.pin else None))
        for path in (m_sock, r_sock):
            c = Client.connect(path, timeout=30.0, request_timeout=120.0)
            clients.append(c)
            for code in codes.values():
                c.install(code, pin=True)
        middle = clients[0]
        me, dest = NodeAddress.from_endpoint(LO, pp), NodeAddress.from_endpoint(LO, pr)
        flood_addr = NodeAddress.from_endpoint(LO, pf)
        ping = codes["ping"].name
        interval = args.interval_ms / 1000
        _pings(pinger, ping, me, dest, pm, 20, interval, args.size)  # warm up (JIT, caches)
        idle = _summary(_pings(pinger, ping, me, dest, pm, args.pings, interval, args.size))
        body = flood_addr.raw + bytes(max(4, args.size - HEADER_SIZE - 16))
        target = pm
        sink = None
        if args.target == "sink":  # the same load on the machine, aimed at a socket nobody reads
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind((LO, 0))
            target = sink.getsockname()[1]
        flooders = _start_flooders(args.senders, pf, target, capsule_bytes(codes["forward"], body, flood_addr), args.pin)
        time.sleep(SETTLE_S)
        before = middle.stats()
        t0 = time.monotonic()
        flood = _summary(_pings(pinger, ping, me, dest, pm, args.pings, interval, args.size))
        dt = time.monotonic() - t0
        after = middle.stats()
        _stop(flooders)
        flooders = []
        if sink is not None:
            sink.close()
        fwd_name = codes["forward"].hex_name
        fwd = after["code"].get(fwd_name, {}).get("forwarded", 0) - before["code"].get(fwd_name, {}).get("forwarded", 0)
        drops = {k: v - before["drops"].get(k, 0) for k, v in after["drops"].items() if v - before["drops"].get(k, 0)}
        return {
            "idle": idle,
            "flood": flood,
            "ratio": flood["median_us"] / idle["median_us"],
            "flood_forwarded_per_s": fwd / dt,
            "middle_drops": drops,
            "middle_links": {k: {f: v.get(f) for f in ("received", "over_share", "throttled") if f in v} for k, v in after.get("links", {}).get("neighbors", {}).items()},
        }
    finally:
        _stop(flooders)
        for c in clients:
            c.close()
        for p in procs:
            p.stop()
        pinger.close()


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--interval-ms", type=float, default=5.0)
    ap.add_argument("--senders", type=int, default=2, help="flooder processes sharing one source port")
    ap.add_argument("--runtime", default="native")
    ap.add_argument("--size", type=int, default=200, help="capsule size in bytes (header and body)")
    ap.add_argument("--limits", default="", help='extra [limits] lines for the middle, ";"-separated')
    ap.add_argument("--target", choices=("middle", "sink"), default="middle",
                    help="flood the middle, or (for the machine's own share of the effect) a socket nobody reads")
    ap.add_argument("--pin", action="store_true", help="the middle alone on the first CPU, everything else on the last")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {int(_OTHER_CPU)})
    codes = {p: reference_code(args.runtime, p) for p in ("ping", "forward")}
    runs = []
    with tempfile.TemporaryDirectory(prefix="pan-fair-", dir="/tmp") as d:
        for i in range(args.runs):
            r = one_run(args, Path(d), codes)
            runs.append(r)
            print(
                f"run {i + 1}: idle {r['idle']['median_us']:.0f} µs loss {r['idle']['loss_pct']:.1f} % | "
                f"flood {r['flood']['median_us']:.0f} µs loss {r['flood']['loss_pct']:.1f} % | "
                f"× {r['ratio']:.2f} | flood forwarded {r['flood_forwarded_per_s']:.0f}/s | drops {r['middle_drops']}",
                flush=True,
            )
    summary = {
        "idle_median_us": _spread([r["idle"]["median_us"] for r in runs]),
        "flood_median_us": _spread([r["flood"]["median_us"] for r in runs]),
        "flood_loss_pct": _spread([r["flood"]["loss_pct"] for r in runs]),
        "ratio": _spread([r["ratio"] for r in runs]),
        "flood_forwarded_per_s": _spread([r["flood_forwarded_per_s"] for r in runs]),
    }
    for k, v in summary.items():
        print(f"{k:24} median {v['median']:.2f}  (min {v['min']:.2f} – max {v['max']:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
