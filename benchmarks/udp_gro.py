"""Does UDP GRO pay on the links pan's capacity experiment uses? (not a test)

Two network namespaces joined by a veth pair; pan's compiled generator (``pan_runtime.bench
.traffic``) sends 1500-byte datagrams of one flow from one into a receiving socket in the
other, at ``--rate`` for ``--seconds``, with the receiving veth's GRO switch on (which gives a
veth a NAPI poll to coalesce in) and the socket's ``UDP_GRO`` option on, then both off. It
prints, per setting and run, how many datagrams one receive returned (the ``UDP_GRO`` control
message gives the segment size of a coalesced one) and the receiver's CPU per datagram, then
the medians. The sending veth's TSO is off: with it on, a veth hands its own host's datagrams
to the peer without GRO. If one receive returns one datagram with GRO on, the fast path has
nothing to gain from asking for it on such links. Needs root (namespaces).

    python benchmarks/udp_gro.py [--rate 100000] [--seconds 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from pan_runtime.bench.traffic import traffic_binary

NS_TX, NS_RX = "pangro-tx", "pangro-rx"
ADDR_TX, ADDR_RX, PORT = "10.231.0.1", "10.231.0.2", 9000
UDP_GRO = 104  # linux/udp.h
SIOCETHTOOL, ETHTOOL_GGRO, ETHTOOL_SGRO, ETHTOOL_STSO = 0x8946, 0x2B, 0x2C, 0x1F


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def _in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _ethtool(ifname: str, cmd: int, value: int) -> int:
    """One legacy ethtool ioctl with a value (``struct ethtool_value``); the value back."""
    s = socket.socket()
    try:
        buf = ctypes.create_string_buffer(struct.pack("II", cmd, value), 8)
        fcntl.ioctl(s, SIOCETHTOOL, struct.pack("16sP", ifname.encode(), ctypes.addressof(buf)).ljust(40, b"\0"))
        return struct.unpack("II", buf.raw[:8])[1]
    finally:
        s.close()


def set_gro(ifname: str, on: bool) -> bool:
    """Turn the device's GRO switch on or off; what it reads back."""
    _ethtool(ifname, ETHTOOL_SGRO, int(on))
    return bool(_ethtool(ifname, ETHTOOL_GGRO, 0))


def receive(gro: bool, rate: int, seconds: float, capsule: Path) -> tuple[float, float]:
    """Run in the receiving namespace: datagrams per receive call and CPU µs per datagram."""
    if set_gro("rx0", gro) != gro:
        raise SystemExit(f"the veth's GRO switch did not turn {'on' if gro else 'off'}")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_UDP, UDP_GRO, int(gro))
    s.bind((ADDR_RX, PORT))
    s.settimeout(1.0)
    gen = subprocess.Popen(_in(NS_TX, str(traffic_binary()), "gen", f"{ADDR_TX}:0", f"{ADDR_RX}:{PORT}", str(rate),
                               str(seconds), str(capsule)), stdout=subprocess.DEVNULL)
    calls = datagrams = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        while True:
            try:
                data, ancillary, _, _ = s.recvmsg(65535, socket.CMSG_SPACE(4))
            except TimeoutError:
                break
            segment = len(data)
            for level, kind, value in ancillary:
                if level == socket.SOL_UDP and kind == UDP_GRO:
                    segment = struct.unpack("i", value[:4])[0]
            calls += 1
            datagrams += -(-len(data) // max(segment, 1))
    finally:
        gen.wait()
        s.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return datagrams / max(calls, 1), cpu * 1e6 / max(datagrams, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--receive", choices=("on", "off"), help=argparse.SUPPRESS)
    ap.add_argument("--capsule", help=argparse.SUPPRESS)
    ap.add_argument("--no-tso", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.no_tso:
        _ethtool("tx0", ETHTOOL_STSO, 0)
        return
    if args.receive:
        per_call, cpu = receive(args.receive == "on", args.rate, args.seconds, Path(args.capsule))
        print(f"{per_call} {cpu}")
        return
    for ns in (NS_TX, NS_RX):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, check=False)
    results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        capsule = Path(tmp) / "datagram.bin"
        capsule.write_bytes(bytes(1472))  # 1500 bytes with the IP and UDP headers
        _run("ip", "netns", "add", NS_TX)
        try:
            _run("ip", "netns", "add", NS_RX)
            _run("ip", "link", "add", "tx0", "netns", NS_TX, "type", "veth", "peer", "name", "rx0", "netns", NS_RX)
            for ns, dev, addr in ((NS_TX, "tx0", ADDR_TX), (NS_RX, "rx0", ADDR_RX)):
                _run(*_in(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev))
                _run(*_in(ns, "ip", "link", "set", dev, "up"))
            # a veth sends its own host's datagrams through the peer's GRO only without TSO
            _run(*_in(NS_TX, sys.executable, __file__, "--no-tso"))
            for run in range(args.runs):
                for setting in ("on", "off"):
                    out = subprocess.run(_in(NS_RX, sys.executable, __file__, "--receive", setting, "--capsule", str(capsule),
                                             "--rate", str(args.rate), "--seconds", str(args.seconds)),
                                         check=True, capture_output=True, text=True).stdout.split()
                    per_call, cpu = float(out[0]), float(out[1])
                    results[setting].append((per_call, cpu))
                    print(f"run {run + 1} GRO {setting:3}: {per_call:.2f} datagrams per receive, {cpu:.2f} µs CPU per datagram")
        finally:
            for ns in (NS_RX, NS_TX):
                subprocess.run(["ip", "netns", "del", ns], check=True)
    for setting, rows in results.items():
        calls = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        print(f"GRO {setting:3}: median {calls:.2f} datagrams per receive, {cpu:.2f} µs CPU per datagram "
              f"({min(r[1] for r in rows):.2f}–{max(r[1] for r in rows):.2f})")


if __name__ == "__main__":
    main()
