"""How long one code object's runaway delays another's capsules (not a test).

A real node (``NodeDaemon`` in a child process, UDP on loopback) and this harness, all pinned to
one CPU (``os.sched_setaffinity``; the node's workers inherit it). The harness is the node's
neighbour: it sends capsules of a plain forwarder (code object B) whose destination is the
harness itself and times each one's round trip. With the runaway on, it also keeps capsules of
code object A coming, each of which loops until the node's budget stops it (``spin``). Both
code objects run in ``--runtime``, in process isolation (each in its worker) and, for
comparison, in the node's process. Prints p50/p99 of B's round trip with and without A.

    python benchmarks/isolation_runaway.py [--runtime wasm] [--n 2000] [--budget-ms 20]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.lifetime import child_env
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins

SOURCES = Path(__file__).resolve().parent.parent / "tests" / "isolation_sources"
_MARK = b"B-sample"
SPIN = {"native": "spin.c", "wasm": "spin.c", "restricted_py": "spin.py", "jvm": "Spin.java"}

_CHILD = """
import sys
from pan_runtime.net.lifetime import die_with_parent
die_with_parent()
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.config import parse_config
from pan_runtime.net.daemon import NodeDaemon
from pan_runtime.node.trust import CodeOrigin
cfg, *codes = sys.argv[1:]
d = NodeDaemon(parse_config(open(cfg).read(), cfg))
for c in codes:
    d.node.install(CodeObject.read(c), origin=CodeOrigin.LOCAL)
print("ready", flush=True)
d.serve()
print(d.node.format_statistics(), file=sys.stderr, flush=True)
d.close()
"""


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _spin(runtime: str):
    src = SOURCES / SPIN[runtime]
    return default_plugins().builders.find(runtime, src.suffix).build(BuildRequest([src], runtime, [], [], f"spin-{runtime}"))


def run(runtime: str, mechanism: str, runaway: bool, n: int, budget_ms: int, gap_ms: float, nice: int, limits: str = "") -> list[float]:
    """B's round trips (µs) with or without A's runaway."""
    fwd, spin = reference_code(runtime, "forward"), _spin(runtime)
    me_port, node_port = _free_port(), _free_port()
    me = NodeAddress.parse(f"127.0.0.1:{me_port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", me_port))
    sock.setblocking(False)
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "node.toml"
        cfg.write_text(
            f'[node]\nname = "runaway"\nlisten = ["127.0.0.1:{node_port}"]\n'
            f'[[neighbors]]\naddress = "127.0.0.1:{me_port}"\n'
            f'[runtimes.{runtime}]\nisolation = "{mechanism}"\n'
            f"[limits]\nbudget_time_ms = {budget_ms}\nbudget_steps = 1000000000000\nbudget_fuel = 10000000000000\n"
            f"worker_spares = 0\nworker_nice = {nice}\nneighbour_exhaustions = 1000000\n"
            + "".join(f"{kv.strip()}\n" for kv in limits.split(",") if kv.strip())
        )
        paths = []
        for c in (fwd, spin):
            p = Path(d) / f"{c.short_name}.pco"
            c.write(p)
            paths.append(str(p))
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(cfg), *paths], stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"the node did not start: {line!r}")
            dest = (("127.0.0.1", node_port))
            a_wire = capsule_bytes(spin, bytes(32), me)
            rtts: list[float] = []
            sent: dict[int, int] = {}
            next_a = time.monotonic()
            seq = 0
            warm = 50
            guard = time.monotonic() + 60 + n * gap_ms / 100  # a hang guard: give up on a node that forwards nothing
            while len(rtts) < n and time.monotonic() < guard:
                now = time.monotonic()
                if runaway and now >= next_a:
                    sock.sendto(a_wire, dest)
                    next_a = now + budget_ms / 1000 / 2  # A's worker never idles
                body = me.raw + b"\0\0" + _MARK + struct.pack("<QQ", seq, time.monotonic_ns()) + bytes(38)
                sock.sendto(capsule_bytes(fwd, body, me), dest)
                sent[seq] = time.monotonic_ns()
                seq += 1
                end = time.monotonic() + gap_ms / 1000
                while True:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    r, _, _ = select.select([sock], [], [], left)
                    if not r:
                        continue
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    # the capsule's body starts after its header: find our sequence number
                    at = data.find(_MARK)
                    if at < 0 or at + 24 > len(data):
                        continue
                    got, stamp = struct.unpack_from("<QQ", data, at + 8)
                    if got in sent:
                        del sent[got]
                        if got >= warm:
                            rtts.append((time.monotonic_ns() - stamp) / 1000)
                for s in [s for s, t in sent.items() if time.monotonic_ns() - t > 2e9]:
                    del sent[s]  # lost (counted by the node): not a latency
            return rtts
        finally:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            sock.close()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="wasm")
    ap.add_argument("--mechanism", default="process,in_process")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--budget-ms", type=int, default=20)
    ap.add_argument("--gap-ms", type=float, default=2.0, help="between two of B's capsules")
    ap.add_argument("--cpu", type=int, default=None, help="the CPU for everything (default: the last allowed)")
    ap.add_argument("--nice", type=int, default=0, help="limits.worker_nice")
    ap.add_argument("--limits", default="", help="more [limits], as key = value pairs separated by commas")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variants", default="", help="[limits] variants to compare with the runaway on, separated by ';' "
                    "(each as --limits); measured in the same rounds")
    args = ap.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(f"one CPU ({cpu}); load average {os.getloadavg()[0]:.2f}; B every {args.gap_ms} ms; A's budget {args.budget_ms} ms")
    print(f"{'runtime':14s} {'mechanism':11s} {'runaway':8s} {'p50 µs':>9s} {'p99 µs':>9s} {'p99 range µs':>15s} "
          f"{'p99 - p99 alone':>16s} {'samples':>8s}  (medians of {args.rounds} rounds)")
    variants = [v.strip() for v in args.variants.split(";")] if args.variants else [args.limits]
    for rt in args.runtime.split(","):
        for mech in args.mechanism.split(","):
            # the rounds interleave the runs (alone, then each variant with the runaway), so
            # that the machine's other load falls on all of them alike
            runs: dict[str, tuple[list[float], list[float], list[int]]] = {}
            for _ in range(args.rounds):
                for key, runaway, limits in [("off", False, variants[0])] + [(f"on {v}", True, v) for v in variants]:
                    xs = run(rt, mech, runaway, args.n, args.budget_ms, args.gap_ms, args.nice, limits)
                    p50s, p99s, counts = runs.setdefault(key, ([], [], []))
                    p50s.append(_pct(xs, 0.5))
                    p99s.append(_pct(xs, 0.99))
                    counts.append(len(xs))
            base = statistics.median(runs["off"][1])
            for key, (p50s, p99s, counts) in runs.items():
                p50, p99 = statistics.median(p50s), statistics.median(p99s)
                spread = f"{min(p99s):.0f}-{max(p99s):.0f}"
                print(f"{rt:14s} {mech:11s} {key[:8]:8s} {p50:9.0f} {p99:9.0f} {spread:>15s} "
                      f"{p99 - base:16.0f} {sum(counts):8d}  {key[3:]}", flush=True)

if __name__ == "__main__":
    main()
