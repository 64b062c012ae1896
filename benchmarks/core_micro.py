"""Micro-benchmark of the byte-level core (not a test): capsule parse + re-serialise and a
zero-copy forward of a chained segment through sendmsg, against a bare struct.unpack_from
+ bytes slice of the same data. Prints µs per capsule (median of repeated runs) and ratios.

    python benchmarks/core_micro.py [--rounds 7] [--n 50000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule, encode_header
from pan_runtime.data.segments import Segment, SegmentPool, chain

SIZE = 1500
HDR = struct.Struct(">BBBB32s16s")


def timed(fn, n: int) -> float:
    t0 = time.perf_counter_ns()
    fn(n)
    return (time.perf_counter_ns() - t0) / n / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=50_000)
    args = ap.parse_args()
    wire = encode_header(b"\x11" * 32, NodeAddress.from_int(1)) + bytes(SIZE - 52)
    pool = SegmentPool(2048, 8)
    seg = pool.allocate(len(wire))
    seg.view()[:] = wire
    view = seg.view()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink = bytearray(4096)

    def bare(n: int, view: memoryview = view) -> None:  # baseline: unpack the header, slice the body as bytes
        for _ in range(n):
            HDR.unpack_from(view, 0)
            bytes(view[52:])

    def parse_reserialize(n: int) -> None:
        for _ in range(n):
            cap = Capsule.parse(seg)
            cap.hop_limit = 63  # what a forwarding node writes back in place
            cap.buffers()
            cap.release()

    header = Segment.owned(wire[:52])
    body = pool.allocate(SIZE - 52)

    def forward_chain(n: int) -> None:  # header + body chained, sent without joining them
        head = chain([header, body])
        for _ in range(n):
            a.sendmsg(head.chain_buffers())
            b.recv_into(sink)
        header.next = None

    def bare_send(n: int) -> None:  # baseline for the send: join header and body, then send
        h, bd = header.view(), body.view()
        for _ in range(n):
            a.send(bytes(h) + bytes(bd))
            b.recv_into(sink)

    results: dict[str, list[float]] = {k: [] for k in ("bare", "parse", "bare_send", "forward")}
    for _ in range(args.rounds):
        results["bare"].append(timed(bare, args.n))
        results["parse"].append(timed(parse_reserialize, args.n))
        results["bare_send"].append(timed(bare_send, args.n // 5))
        results["forward"].append(timed(forward_chain, args.n // 5))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{SIZE}-byte capsule, median of {args.rounds} rounds (µs per capsule)")
    print(f"  bare struct.unpack_from + bytes slice   {med['bare']:.3f}")
    print(f"  Capsule.parse + re-serialise           {med['parse']:.3f}   ({med['parse'] / med['bare']:.2f}x bare)")
    print(f"  bare join + send + recv                {med['bare_send']:.3f}")
    print(f"  chained segments via sendmsg + recv    {med['forward']:.3f}   ({med['forward'] / med['bare_send']:.2f}x bare send)")
    a.close()
    b.close()
    # the pool's mapping goes with the process; views of it live in the closures above


if __name__ == "__main__":
    main()
