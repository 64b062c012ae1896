"""Harness (not a test): does loading hostile code hold up forwarding? A ``pan node`` process
sits between two UDP sockets of this script (``src`` and ``dst``). Pings are capsules of a
forwarding code object (the null runtime's, installed through the application socket) sent
from ``src`` through the node to ``dst``, one at a time; their round trip through the node is
timed. First idle; then while the node demand-loads, from ``src``, a wasm module of 200,000
tiny functions (about 1.4 MB) and compiles it — the node's limits are raised so it accepts
the module for compiling (with the default ``limits.code_functions`` it is refused from its
headers at once). Prints the median and p99 round trip, idle and during the compile, their
ratio (target: at most 2), how the load ended, and the pings after that until the module is
installed (the node reads and deserializes the compiled artifact on its own thread).

    python benchmarks/load_while_forwarding.py [--pings 2000] [--interval-ms 2] [--functions 200000]
        [--compile-time-ms 60000] [--compile-memory 4294967296] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.client import Client
from pan_runtime.net.demand import REQ_FIELDS, REQUEST, SYS_HEADER, encode_chunk
from pan_runtime.net.lifetime import child_env
from pan_runtime.plugin.nullrt import null_code
from pan_runtime.testing.wasmgen import many_functions


def free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Peer:
    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.address = NodeAddress.from_endpoint("127.0.0.1", port)

    def recv(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(70000)
        except TimeoutError:
            return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pings", type=int, default=2000, help="idle pings (the same number at most during the load)")
    ap.add_argument("--functions", type=int, default=200_000)
    ap.add_argument("--compile-time-ms", type=int, default=60_000)
    ap.add_argument("--compile-memory", type=int, default=4 << 30)
    ap.add_argument("--interval-ms", type=float, default=2.0, help="pause between pings")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="pan-loadbench-"))
    node_port, src_port, dst_port = free_ports(3)
    src, dst = Peer(src_port), Peer(dst_port)
    cfg = folder / "node.toml"
    cfg.write_text(
        f'[node]\nlisten = ["127.0.0.1:{node_port}"]\napp_socket = "app.sock"\n'
        f'[[neighbors]]\naddress = "{src.address}"\n[[neighbors]]\naddress = "{dst.address}"\n'
        f"[limits]\ncode_functions = {args.functions + 1000}\ncompile_time_ms = {args.compile_time_ms}\n"
        f"compile_memory = {args.compile_memory}\n[demand]\ndeadline_ms = 60000\n"
    )
    log = open(folder / "node.log", "wb")
    node = subprocess.Popen(
        [sys.executable, "-m", "pan_runtime.cli.main", "node", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=child_env()
    )
    try:
        end = time.monotonic() + 30
        while b"ready" not in (folder / "node.log").read_bytes():
            if node.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"the node did not start:\n{(folder / 'node.log').read_text()}")
            time.sleep(0.05)
        app = Client.connect(str(folder / "app.sock"))
        fwd = null_code("forward")
        app.install(fwd)
        me = NodeAddress.from_endpoint("127.0.0.1", node_port)

        def ping(i: int) -> float | None:
            body = dst.address.raw + struct.pack(">HH", 7, 0) + struct.pack(">I", i)
            t0 = time.perf_counter_ns()
            src.sock.sendto(capsule_bytes(fwd, body, src.address), ("127.0.0.1", node_port))
            while True:
                got = dst.recv(1.0)
                if got is None:
                    return None
                if got.endswith(struct.pack(">I", i)):
                    return (time.perf_counter_ns() - t0) / 1000

        for i in range(50):  # warm up
            ping(i)
        idle = []
        for i in range(args.pings):
            r = ping(i)
            if r is not None:
                idle.append(r)
            time.sleep(args.interval_ms / 1000)

        code = CodeObject.create("wasm", many_functions(args.functions), meta={"label": "huge"})
        pco = code.to_pco()
        src.sock.sendto(capsule_bytes(code, b"load me", src.address), ("127.0.0.1", node_port))
        t_load = time.monotonic()
        request = None
        while request is None:
            data = src.recv(5.0)
            if data is None:
                raise SystemExit("the node never asked for the module")
            cap = Capsule.parse_bytes(data)
            body = cap.body.tobytes()
            if cap.is_system and body[0] == REQUEST and cap.name == code.name:
                request = REQ_FIELDS.unpack_from(body, SYS_HEADER.size)
            cap.release()
        size = request[0]
        count = (len(pco) + size - 1) // size
        for i in range(count):
            src.sock.sendto(encode_chunk(code.name, src.address, me, i, count, len(pco), pco[i * size : (i + 1) * size]), ("127.0.0.1", node_port))
            if i % 32 == 31:
                time.sleep(0.002)

        def compiling() -> tuple[bool, str]:
            st = app.stats()
            demand = st["demand"]
            stats_seen.update(demand["compiler"])
            if code.hex_name in st.get("code", {}):
                return False, "installed"
            if code.name.hex() not in demand["fetching"] and demand["chunks_received"] >= count:
                return False, "refused: " + ", ".join(f"{k}={v}" for k, v in st["drops"].items() if v)
            return bool(demand["compiler"]["running"]), "pending"

        stats_seen: dict = {}
        end = time.monotonic() + 30
        running, outcome = compiling()
        while not running and outcome == "pending" and time.monotonic() < end:
            time.sleep(0.01)
            running, outcome = compiling()
        during: list[float] = []
        lost = 0
        i = args.pings
        while running and len(during) < args.pings:
            batch = []
            for _ in range(50):
                r = ping(i)
                i += 1
                if r is None:
                    lost += 1
                else:
                    batch.append(r)
                time.sleep(args.interval_ms / 1000)
            running, outcome = compiling()
            if running:  # the whole batch ran while the compiler did
                during.extend(batch)
        # until the load ends (the artifact is read and deserialized on the node's thread)
        tail: list[float] = []
        while outcome == "pending" and time.monotonic() < t_load + args.compile_time_ms / 1000 + 30:
            for _ in range(50):
                r = ping(i)
                i += 1
                if r is not None:
                    tail.append(r)
                time.sleep(args.interval_ms / 1000)
            _, outcome = compiling()
        load_s = time.monotonic() - t_load
        app.close()
    finally:
        node.terminate()
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log.close()

    med_idle, med_during = statistics.median(idle), statistics.median(during) if during else float("nan")
    result = {
        "module_bytes": len(code.payload),
        "functions": args.functions,
        "idle": {"pings": len(idle), "median_us": med_idle, "p99_us": percentile(idle, 0.99)},
        "during": {"pings": len(during), "lost": lost, "median_us": med_during, "p99_us": percentile(during, 0.99) if during else None},
        "ratio_median": med_during / med_idle,
        "until_installed": {"pings": len(tail), "median_us": statistics.median(tail) if tail else None, "max_us": max(tail) if tail else None},
        "load": {"outcome": outcome, "seconds": round(load_s, 2), "compiler": stats_seen},
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
