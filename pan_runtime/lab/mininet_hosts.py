"""Builds a lab's hosts and links with Mininet and holds them until told to stop.

Run by ``pan lab`` with a Python that has Mininet (Debian's ``mininet`` package installs it for
the system ``python3``), so it imports nothing from pan. Its one argument is a JSON file:
``{"hosts": [{"name", "ip"}], "links": [{"a", "b", "dev_a", "dev_b", "ip_a", "ip_b"}],
"commands": {host: [[argv], ...]}}`` (``ip_*`` with their prefix length; ``commands`` run in
each host once the links are up: the links' ``tc`` shaping). Hosts are linked directly (veth
pairs; no switch, no controller). It prints one JSON line ``{"pids": {host: pid}}`` once
everything is up (or ``{"error": ...}``), and stops the network when its standard input
closes (its holder ended, however it ended) or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys


def build(spec, made):  # type: ignore[no-untyped-def]
    """Build the network of ``spec``; ``made`` gets it first, so a failure midway is stopped too."""
    from mininet.log import setLogLevel
    from mininet.net import Mininet

    setLogLevel("error")
    net = Mininet(topo=None, controller=None, build=False, autoSetMacs=False, autoStaticArp=False)
    made.append(net)
    hosts = {h["name"]: net.addHost(h["name"], ip=h["ip"]) for h in spec["hosts"]}
    for ln in spec["links"]:
        net.addLink(hosts[ln["a"]], hosts[ln["b"]], intfName1=ln["dev_a"], intfName2=ln["dev_b"],
                    params1={"ip": ln["ip_a"]}, params2={"ip": ln["ip_b"]})
    net.build()
    for name, cmds in spec.get("commands", {}).items():
        for argv in cmds:
            out = hosts[name].cmd(" ".join(shlex.quote(a) for a in argv) + " 2>&1; echo rc=$?")
            if not out.rstrip().endswith("rc=0"):
                raise RuntimeError(f"{name}: {' '.join(argv)}: {out.strip()}")
    return {name: h.pid for name, h in hosts.items()}


def main(argv: list[str]) -> int:
    made: list = []

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with open(argv[0]) as f:
            spec = json.load(f)
        try:
            pids = build(spec, made)
        except Exception as exc:  # reported to the holder, which raises it as a PanError
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            return 1
        print(json.dumps({"pids": pids}), flush=True)
        sys.stdin.read()
    finally:
        for net in made:
            net.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
