"""Builds the bench's sender - middle - receiver line with Mininet and holds it until told to stop.

Run by the harness with a Python that has Mininet (Debian's ``mininet`` package installs it
for the system ``python3``), so it imports nothing from pan. It links hosts directly (veth
pairs, no switch, no controller), prints one JSON line ``{"pids": {...}}`` once the hosts are
up, and stops the network when its standard input closes or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import signal
import sys


def build():  # type: ignore[no-untyped-def]
    from mininet.log import setLogLevel
    from mininet.net import Mininet

    setLogLevel("error")
    net = Mininet(topo=None, controller=None, build=False, autoSetMacs=True)
    # each host's first link carries its default address (Mininet would otherwise put 10.0.0.x there)
    s = net.addHost("s", ip="10.201.1.1/24")
    m = net.addHost("m", ip="10.201.1.2/24")
    r = net.addHost("r", ip="10.201.2.2/24")
    net.addLink(s, m, params1={"ip": "10.201.1.1/24"}, params2={"ip": "10.201.1.2/24"})
    net.addLink(m, r, params1={"ip": "10.201.2.1/24"}, params2={"ip": "10.201.2.2/24"})
    net.addLink(s, r, params1={"ip": "10.201.3.1/24"}, params2={"ip": "10.201.3.2/24"})
    net.build()
    m.cmd("sysctl -qw net.ipv4.ip_forward=1")
    s.cmd("ip route add 10.201.2.0/24 via 10.201.1.2")
    r.cmd("ip route add 10.201.1.0/24 via 10.201.2.1")
    return net, {"sender": s.pid, "middle": m.pid, "receiver": r.pid}


def main() -> int:
    net = None

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        net, pids = build()
        print(json.dumps({"pids": pids}), flush=True)
        sys.stdin.read()
    finally:
        if net is not None:
            net.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
