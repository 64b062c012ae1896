"""Addresses of a lab and the ``pan node`` configuration of each of its nodes.

Link ``i`` of the topology gets the ``i``-th /30 of ``lab.subnet``: its first endpoint the
first host address, its second the second. A node is named by its address on its first link
(with ``lab.port``), listens on every address of its namespace, and knows each neighbour by
that neighbour's name and its address on the shared link. With ``routing = "static"`` every
node gets a route to every node it reaches (shortest path); with ``"dv"`` only its
neighbours, the rest being learnt by the distance-vector code object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .topology import LabNode, Topology

__all__ = ["Addressing", "addressing", "node_toml"]


@dataclass
class Addressing:
    #: node name -> its node address ("ip:port")
    node: dict[str, str]
    #: per link (in topology order): (address of end a, address of end b, prefix length)
    links: list[tuple[str, str, int]]
    #: (node, neighbour) -> the neighbour's endpoint on their shared link ("ip:port")
    endpoint: dict[tuple[str, str], str]


def addressing(topo: Topology) -> Addressing:
    subnets = topo.subnet.subnets(new_prefix=30)
    links = []
    node: dict[str, str] = {}
    endpoint: dict[tuple[str, str], str] = {}
    for ln in topo.links:
        hosts = list(next(subnets).hosts())
        a, b = str(hosts[0]), str(hosts[1])
        links.append((a, b, 30))
        node.setdefault(ln.a, f"{a}:{topo.port}")
        node.setdefault(ln.b, f"{b}:{topo.port}")
        endpoint[(ln.a, ln.b)] = f"{b}:{topo.port}"
        endpoint[(ln.b, ln.a)] = f"{a}:{topo.port}"
    for name in topo.nodes:
        node.setdefault(name, f"127.0.0.1:{topo.port}")  # a node without links
    return Addressing(node, links, endpoint)


def _value(v: Any) -> str:
    """A TOML value (strings, numbers, booleans and lists of them; tables inline)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def node_toml(
    topo: Topology,
    node: LabNode,
    app_socket: str,
    addr: Addressing | None = None,
    log_level: str = "warning",
    trusted_keys: list[str] | None = None,
) -> str:
    """The configuration file ``pan node`` runs ``node`` from (``trusted_keys``: the lab's key,
    whose signature makes code the lab itself spreads acceptable under any trust rules)."""
    addr = addr or addressing(topo)
    me = node.name
    lines = [
        "[node]",
        f"name = {_value(me)}",
        f"listen = [{_value('0.0.0.0:' + str(topo.port))}]",
        f"address = {_value(addr.node[me])}",
        f"app_socket = {_value(app_socket)}",
        f"log_level = {_value(log_level)}",
        "",
        "[runtimes]",
        f"enabled = {_value(node.runtimes)}",
    ]
    for table in ("limits", "demand"):
        values = getattr(node, table)
        if values:
            lines += ["", f"[{table}]"] + [f"{json.dumps(k)} = {_value(v)}" for k, v in values.items()]
    if node.trust or trusted_keys:
        lines += ["", "[trust]"]
        if trusted_keys:
            lines.append(f"trusted_keys = {_value(trusted_keys)}")
        if node.trust:
            lines.append(f"rules = {_value(node.trust)}")
    nbs = topo.neighbours()[me]
    for nb in nbs:
        lines += ["", "[[neighbors]]", f"address = {_value(addr.node[nb])}", f"endpoint = {_value(addr.endpoint[(me, nb)])}"]
    routes: dict[str, tuple[str, int]] = {}
    if topo.routing == "static":
        routes = {d: nh for d, nh in topo.next_hops(me).items() if d not in nbs}
    for r in topo.routes:
        if r.node == me and r.dest != me:
            routes[r.dest] = (r.via, 1)
    for dest, (via, metric) in routes.items():
        lines += ["", "[[routes]]", f"dest = {_value(addr.node[dest])}", f"via = {_value(addr.node[via])}", f"metric = {metric}"]
    return "\n".join(lines) + "\n"
