"""``pan lab``: bring a topology of ``pan node`` processes up on network namespaces, look at
it, run commands inside its nodes, and tear it down (``docs/lab.md``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from pan_runtime.errors import PanError

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="a topology of pan nodes from a file, on network namespaces (see docs/lab.md)")
    lab = p.add_subparsers(dest="lab_command", metavar="up|down|status|exec|check")
    s = lab.add_parser("up", help="build the lab and hold it until Ctrl-C, SIGTERM, `pan lab down` or this process's parent ends")
    s.add_argument("topology", help="the topology file")
    s.add_argument("--log-level", default="warning", help="the nodes' log level (default warning)")
    s.add_argument("--backend", choices=("netns", "mininet"), default="netns",
                   help="network namespaces made with ip (default), or hosts built by Mininet")
    s.set_defaults(fn=_cmd_up)
    s = lab.add_parser("down", help="tear a lab down: its nodes, namespaces, links and files")
    s.add_argument("lab", help="the lab's name or its topology file")
    s.set_defaults(fn=_cmd_down)
    s = lab.add_parser("status", help="every node of a running lab with its counters")
    s.add_argument("lab", help="the lab's name or its topology file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=_cmd_status)
    s = lab.add_parser("exec", help="run a command in a node's namespace: pan lab exec LAB NODE -- CMD ...")
    s.add_argument("lab", help="the lab's name or its topology file")
    s.add_argument("node")
    s.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    s.set_defaults(fn=_cmd_exec)
    s = lab.add_parser("check", help="check a topology file and print its nodes, links and addresses")
    s.add_argument("topology")
    s.set_defaults(fn=_cmd_check)
    p.set_defaults(fn=lambda _a: p.print_help() or 0)


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _cmd_up(args: argparse.Namespace) -> int:
    from pan_runtime.lab.mininetlab import MininetLab
    from pan_runtime.lab.netns import NetnsLab
    from pan_runtime.lab.topology import load_topology
    from pan_runtime.net.lifetime import die_with_parent

    die_with_parent()
    topo = load_topology(args.topology)
    # SIGINT too: started from a script's background it is inherited ignored, and Ctrl-C or
    # `kill -INT` must still take the lab down
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    kind = MininetLab if args.backend == "mininet" else NetnsLab
    lab = kind(topo, args.log_level, progress=lambda m: print(m, file=sys.stderr, flush=True))
    try:
        rec = lab.up()
        print(f"lab {topo.name} up: {len(topo.nodes)} nodes, {len(topo.links)} links, record {rec.path}", flush=True)
        for name, n in rec.nodes.items():
            print(f"  {name:<12} {n['address']:<22} netns {n['ns']}  socket {n['socket']}", flush=True)
        print("Ctrl-C or `pan lab down` tears it down", flush=True)
        while True:
            if lab.dv is None:
                signal.pause()
            else:
                time.sleep(topo.dv_period_us / 1e6)
                lab.tick_dv()
    except KeyboardInterrupt:
        return 0
    finally:
        lab.close()
        print(f"lab {topo.name} down", file=sys.stderr, flush=True)


def _cmd_down(args: argparse.Namespace) -> int:
    from pan_runtime.lab.record import find_record, holder_alive, teardown

    rec = find_record(args.lab)
    if holder_alive(rec) and rec.holder != os.getpid():
        os.kill(rec.holder, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while rec.path.exists() and holder_alive(rec) and time.monotonic() < deadline:
            time.sleep(0.1)
    removed = teardown(rec)  # whatever the holder did not get to
    print(f"lab {rec.lab} down" + (f" (removed {len(removed)} left-overs)" if removed else ""))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from pan_runtime.lab.record import find_record, holder_alive
    from pan_runtime.net.client import Client
    from pan_runtime.node.stats import format_table

    rec = find_record(args.lab)
    rows: dict[str, dict[str, Any]] = {}
    for name, n in rec.nodes.items():
        row: dict[str, Any] = {"address": n["address"], "netns": n["ns"], "pid": n["pid"]}
        try:
            with Client.connect(str(n["socket"]), timeout=2.0, request_timeout=10.0) as c:
                st = c.stats()
            row |= {"state": "up", "received": st["received"], "sent": st["sent"], "delivered": st["delivered"],
                    "drops": sum(st["drops"].values()), "code": len(st.get("code", {})),
                    "demand_fetched": st.get("demand", {}).get("fetched", 0)}
        except (PanError, OSError) as exc:
            row |= {"state": f"down ({exc})"}
        rows[name] = row
    if args.json:
        print(json.dumps({"lab": rec.lab, "holder": rec.holder, "holder_alive": holder_alive(rec), "ready": rec.ready,
                          "nodes": rows}, indent=2))
        return 0
    print(f"lab {rec.lab} ({rec.topology}), held by process {rec.holder}" + ("" if holder_alive(rec) else " (gone)"))
    keys = ["address", "netns", "state", "received", "sent", "delivered", "drops", "code", "demand_fetched"]
    print(format_table([[name] + [str(r.get(k, "-")) for k in keys] for name, r in rows.items()], ["node", *keys]))
    return 0 if all(r["state"] == "up" for r in rows.values()) else 1


def _cmd_exec(args: argparse.Namespace) -> int:
    from pan_runtime.lab.record import find_record

    rec = find_record(args.lab)
    node = rec.nodes.get(args.node)
    if node is None:
        raise PanError(f"lab {rec.lab} has no node {args.node!r}; nodes: {', '.join(rec.nodes)}")
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise PanError("no command: pan lab exec LAB NODE -- CMD ...")
    if cmd[0] == "pan":  # this pan, whatever PATH says
        cmd = [sys.executable, "-m", "pan_runtime.cli.main", *cmd[1:]]
    # this pan first on PATH, so that `sh -c 'pan ping "$PAN_NODE" ...'` finds it too
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, PAN_LAB=rec.lab, PAN_NODE=str(node["socket"]), PAN_NODE_ADDRESS=str(node["address"]))
    sys.stdout.flush()
    enter = [str(a) for a in node.get("enter") or ["ip", "netns", "exec", str(node["ns"])]]  # type: ignore[union-attr]
    os.execvpe(enter[0], [*enter, *cmd], env)
    return 127  # pragma: no cover - execvpe does not return


def _cmd_check(args: argparse.Namespace) -> int:
    from pan_runtime.lab.nodeconfig import addressing
    from pan_runtime.lab.topology import load_topology

    topo = load_topology(args.topology)
    addr = addressing(topo)
    dv = f" ({topo.dv_runtime} code, ticked every {topo.dv_period_us / 1000:g} ms)" if topo.routing == "dv" else ""
    print(f"lab {topo.name}: {len(topo.nodes)} nodes, {len(topo.links)} links, routing {topo.routing}{dv}")
    for name, n in topo.nodes.items():
        print(f"  node {name:<12} {addr.node[name]:<22} runtimes {', '.join(n.runtimes)}")
    for ln, (a, b, plen) in zip(topo.links, addr.links, strict=True):
        s = ln.shaping
        shaped = ", ".join(x for x in (
            f"delay {s.delay_us} us" if s.delay_us else "", f"jitter {s.jitter_us} us" if s.jitter_us else "",
            f"loss {s.loss_pct}%" if s.loss_pct else "", f"rate {s.rate_bit} bit/s" if s.rate_bit else "") if x)
        print(f"  link {ln.a}({a}/{plen}) - {ln.b}({b}/{plen})" + (f"  {shaped}" if shaped else ""))
    return 0
