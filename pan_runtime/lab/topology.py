"""The ``pan lab`` topology file: nodes, links and their shaping, routes and shape generators.

A file is TOML (the format is in ``docs/lab.md``). Everything is checked before anything is
built; an error is a ``ConfigError`` naming the file, the line and the dotted key, as the
node's own configuration does. Generated shapes are expanded here, so the rest of ``pan lab``
only ever sees a list of nodes and a list of links.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pan_runtime.errors import ConfigError
from pan_runtime.net.config import SourceLines, read_toml_text

from .dvcode import DV_RUNTIMES
from .shapes import SHAPES, expand

__all__ = [
    "LabNode",
    "Link",
    "Route",
    "Topology",
    "load_topology",
    "parse_topology",
    "MAX_NODES",
    "MAX_LINKS",
    "ROUTINGS",
]

#: largest topology file read
MAX_TOPOLOGY_BYTES = 1 << 20
#: most nodes and links a lab may have (each node is a process, each link a veth pair)
MAX_NODES = 512
MAX_LINKS = 4096
ROUTINGS = ("static", "dv", "none")
#: the period of the distance-vector code (its ticks; a route expires after 3 unconfirmed): default and bounds, µs
DV_PERIOD_US = 1_000_000
DV_PERIOD_RANGE_US = (50_000, 10_000_000)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s)")
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)")
_SCALE = {"us": 1, "ms": 1000, "s": 1_000_000, "bit": 1, "kbit": 1000, "mbit": 1_000_000, "gbit": 1_000_000_000}
_SCHEMA: dict[str, set[str]] = {
    "": {"lab", "defaults", "nodes", "links", "generate", "routes"},
    "lab": {"name", "subnet", "port", "routing", "dv_period", "dv_runtime"},
    "defaults": {"runtimes", "install", "trust", "limits", "demand"},
    "nodes": {"name", "runtimes", "install", "trust", "limits", "demand"},
    "links": {"endpoints", "delay", "jitter", "loss", "rate"},
    "generate": {"shape", "n", "fanout", "rows", "cols", "extra", "seed", "prefix", "link"},
    "routes": {"node", "dest", "via"},
}
_LINK_KEYS = _SCHEMA["links"] - {"endpoints"}


@dataclass(frozen=True)
class Shaping:
    """What ``tc`` does to a link's traffic (both directions): netem delay/jitter/loss, tbf rate."""

    delay_us: int = 0
    jitter_us: int = 0
    loss_pct: float = 0.0
    rate_bit: int = 0

    @property
    def shaped(self) -> bool:
        return bool(self.delay_us or self.jitter_us or self.loss_pct or self.rate_bit)


@dataclass
class LabNode:
    """One ``pan node`` of the lab and what it is configured with."""

    name: str
    runtimes: list[str]
    #: code objects (``.pco`` paths, resolved against the file's folder) installed at start
    install: list[Path] = field(default_factory=list)
    #: the node configuration's ``[trust]`` rules, ``[limits]`` and ``[demand]`` tables
    trust: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    demand: dict[str, Any] = field(default_factory=dict)
    #: the dotted key this node came from (``nodes[2]``, ``generate[0]``): where its errors point
    origin: str = ""


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    shaping: Shaping = Shaping()
    origin: str = ""


@dataclass(frozen=True)
class Route:
    """A static route on ``node``: capsules for ``dest`` go to the neighbour ``via``."""

    node: str
    dest: str
    via: str


@dataclass
class Topology:
    """A checked topology: nodes by name (in file order), links, routing and addressing."""

    name: str
    path: str
    nodes: dict[str, LabNode]
    links: list[Link]
    routing: str = "static"
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.210.0.0/16")
    port: int = 7000
    routes: list[Route] = field(default_factory=list)
    #: how often the lab ticks the distance-vector code on every node (``lab.dv_period``)
    dv_period_us: int = DV_PERIOD_US
    #: the runtime of the dv code the lab runs for ``routing = "dv"`` (``lab.dv_runtime``)
    dv_runtime: str = "restricted_py"

    def neighbours(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for ln in self.links:
            out[ln.a].append(ln.b)
            out[ln.b].append(ln.a)
        return out

    def next_hops(self, src: str) -> dict[str, tuple[str, int]]:
        """Shortest-path first hop and distance from ``src`` to every node it reaches (BFS;
        ties go to the neighbour listed first)."""
        nbs = self.neighbours()
        out: dict[str, tuple[str, int]] = {}
        queue: deque[tuple[str, str, int]] = deque((nb, nb, 1) for nb in nbs[src])
        seen = {src}
        while queue:
            node, first, dist = queue.popleft()
            if node in seen:
                continue
            seen.add(node)
            out[node] = (first, dist)
            queue.extend((nb, first, dist + 1) for nb in nbs[node] if nb not in seen)
        return out

    def hops(self, src: str, dst: str) -> list[str]:
        """The nodes a capsule from ``src`` to ``dst`` visits under static routing (both ends)."""
        hops = [src]
        while hops[-1] != dst:
            nh = self.next_hops(hops[-1]).get(dst)
            if nh is None:
                return []
            hops.append(nh[0])
        return hops


def load_topology(path: str | Path) -> Topology:
    """Read and check a topology file."""
    p = Path(path)
    text = read_toml_text(p, MAX_TOPOLOGY_BYTES, "topology")
    return parse_topology(text, str(p), base=p.parent.resolve(), default_name=p.stem)


def parse_topology(text: str, path: str = "<topology>", base: Path | None = None, default_name: str = "lab") -> Topology:
    """Check a topology given as TOML text (``path`` names it in errors)."""
    ctx = SourceLines(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"{path}:{m.group(1) if m else '?'}: not valid TOML: {exc}") from None
    base = base or Path(".")
    _keys(ctx, data, "", "")
    lab = _table(ctx, data, "lab", "lab")
    name = lab.get("name", default_name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ctx.error("lab.name", "a letter, then up to 31 letters, digits, '-' or '_'")
    try:
        subnet = ipaddress.IPv4Network(_typed(ctx, "lab.subnet", lab.get("subnet", "10.210.0.0/16"), str))
    except ValueError as exc:
        raise ctx.error("lab.subnet", f"not an IPv4 network: {exc}") from None
    if subnet.prefixlen > 24 or not subnet.is_private:
        raise ctx.error("lab.subnet", "a private IPv4 network of /24 or larger (each link takes a /30 of it)")
    port = _typed(ctx, "lab.port", lab.get("port", 7000), int)
    if not 1 <= port <= 65535:
        raise ctx.error("lab.port", "a UDP port, 1..65535")
    routing = _typed(ctx, "lab.routing", lab.get("routing", "static"), str)
    if routing not in ROUTINGS:
        raise ctx.error("lab.routing", f"{routing!r} is not one of {', '.join(ROUTINGS)}")
    period = lab.get("dv_period", f"{DV_PERIOD_US}us")
    m = _DURATION.fullmatch(period.strip()) if isinstance(period, str) else None
    lo, hi = DV_PERIOD_RANGE_US
    dv_period_us = round(float(m.group(1)) * _SCALE[m.group(2)]) if m else 0
    if not lo <= dv_period_us <= hi:
        raise ctx.error("lab.dv_period", f'a duration from {lo // 1000} ms to {hi // 1_000_000} s, such as "500ms" or "1s"')
    dv_runtime = _typed(ctx, "lab.dv_runtime", lab.get("dv_runtime", "restricted_py"), str)
    if dv_runtime not in DV_RUNTIMES:
        raise ctx.error("lab.dv_runtime", f"{dv_runtime!r}: the dv code object is written for {', '.join(DV_RUNTIMES)}")

    defaults = _table(ctx, data, "defaults", "defaults")
    base_node = _node_settings(ctx, "defaults", defaults, base, LabNode("", ["native"]))

    nodes: dict[str, LabNode] = {}
    links: list[Link] = []

    def add_node(key: str, name: Any, settings: dict[str, Any]) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ctx.error(key, f"node name {name!r}: a letter, then up to 31 letters, digits, '-' or '_'")
        if name in nodes:
            raise ctx.error(key, f"node {name!r} is defined twice (first at {nodes[name].origin})")
        node = _node_settings(ctx, key.rsplit(".", 1)[0], settings, base, base_node)
        node.name, node.origin = name, key.rsplit(".", 1)[0]
        nodes[name] = node
        if len(nodes) > MAX_NODES:
            raise ctx.error(key, f"more than {MAX_NODES} nodes")

    for i, g in enumerate(_array(ctx, data, "generate")):
        key = f"generate[{i}]"
        shape = g.get("shape")
        if shape not in SHAPES:
            raise ctx.error(f"{key}.shape", f"{shape!r} is not one of {', '.join(SHAPES)}")
        params = {k: g[k] for k in ("n", "fanout", "rows", "cols", "extra", "seed") if k in g}
        for k, v in params.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ctx.error(f"{key}.{k}", "a whole number, 0 or more")
        prefix = _typed(ctx, f"{key}.prefix", g.get("prefix", "n"), str)
        try:
            names, pairs = expand(shape, prefix, **params)
        except ValueError as exc:
            raise ctx.error(f"{key}.shape", str(exc)) from None
        if len(names) > MAX_NODES:
            raise ctx.error(f"{key}.shape", f"{len(names)} nodes; at most {MAX_NODES}")
        for n in names:
            add_node(f"{key}.prefix", n, {})
        shaping = _shaping(ctx, f"{key}.link", _typed(ctx, f"{key}.link", g.get("link", {}), dict))
        links.extend(Link(a, b, shaping, key) for a, b in pairs)
    # generated nodes first (the shape's first node is the lab's first), then the listed ones
    for i, t in enumerate(_array(ctx, data, "nodes")):
        add_node(f"nodes[{i}].name", t.get("name"), t)
    for i, t in enumerate(_array(ctx, data, "links")):
        key = f"links[{i}]"
        ends = t.get("endpoints")
        if not isinstance(ends, list) or len(ends) != 2 or not all(isinstance(e, str) for e in ends):
            raise ctx.error(f"{key}.endpoints", 'two node names, e.g. endpoints = ["a", "b"]')
        for e in ends:
            if e not in nodes:
                raise ctx.error(f"{key}.endpoints", f"no node is named {e!r}")
        if ends[0] == ends[1]:
            raise ctx.error(f"{key}.endpoints", "a link joins two different nodes")
        links.append(Link(ends[0], ends[1], _shaping(ctx, key, t), key))
    seen: dict[frozenset[str], str] = {}
    for ln in links:
        pair = frozenset((ln.a, ln.b))
        if pair in seen:
            raise ctx.error(_endpoint_key(ln.origin), f"{ln.a} and {ln.b} are already linked ({seen[pair]})")
        seen[pair] = ln.origin
    if len(links) > MAX_LINKS or len(links) > subnet.num_addresses // 4:
        raise ctx.error("lab.subnet", f"{len(links)} links do not fit (at most {min(MAX_LINKS, subnet.num_addresses // 4)})")
    if not nodes:
        raise ctx.error("nodes", "the topology has no node: give [[nodes]] or a [[generate]] shape")

    topo = Topology(name, path, nodes, links, routing, subnet, port, dv_period_us=dv_period_us, dv_runtime=dv_runtime)
    if routing == "dv":
        for node in nodes.values():
            if dv_runtime not in node.runtimes:
                raise ctx.error("lab.routing", f"the dv code object runs on {dv_runtime} (lab.dv_runtime); node {node.name} does not enable it")
    _check_node_configs(ctx, topo, base_node)
    for i, t in enumerate(_array(ctx, data, "routes")):
        key = f"routes[{i}]"
        vals = {}
        for k in ("node", "dest", "via"):
            v = t.get(k)
            if v not in nodes:
                raise ctx.error(f"{key}.{k}", f"no node is named {v!r}")
            vals[k] = v
        if vals["via"] not in topo.neighbours()[vals["node"]]:
            raise ctx.error(f"{key}.via", f"{vals['via']} is not a neighbour of {vals['node']}")
        topo.routes.append(Route(vals["node"], vals["dest"], vals["via"]))
    return topo


def _endpoint_key(origin: str) -> str:
    return f"{origin}.endpoints" if origin.startswith("links") else f"{origin}.shape"


def _check_node_configs(ctx: SourceLines, topo: Topology, defaults: LabNode) -> None:
    """Each node's configuration as ``pan node`` will read it, so that a bad limit, trust rule
    or runtime is reported here, at its line, before anything starts: ``[defaults]`` first
    (a mistake there is reported there), then every node (at its ``[[nodes]]`` table)."""
    probe = LabNode("defaults", defaults.runtimes, defaults.install, defaults.trust, defaults.limits, defaults.demand, "defaults")
    alone = Topology(topo.name, topo.path, {"defaults": probe}, [], topo.routing, topo.subnet, topo.port)
    _check_node(ctx, alone, probe, "defaults")
    for node in topo.nodes.values():
        _check_node(ctx, topo, node, node.origin if node.origin.startswith("nodes") else "defaults")


def _check_node(ctx: SourceLines, topo: Topology, node: LabNode, origin: str) -> None:
    from pan_runtime.net.config import parse_config

    from .nodeconfig import node_toml

    try:
        parse_config(node_toml(topo, node, "/tmp/pan-lab-check.sock"), f"node {node.name}")
    except ConfigError as exc:
        msg = str(exc).split(": ", 1)[-1]  # "limits.queue: -4 is outside ..."
        raise ctx.error(f"{origin}.{msg.split(':', 1)[0].split('.', 1)[0]}", msg) from None
    for i, p in enumerate(node.install):
        if not p.is_file():
            raise ctx.error(f"{origin}.install", f"install[{i}]: {p} is not a file")


def _keys(ctx: SourceLines, data: dict[str, Any], section: str, prefix: str) -> None:
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in _SCHEMA[section]:
            raise ctx.error(key, f"unknown key; known here: {', '.join(sorted(_SCHEMA[section]))}")
        if section == "" and k in ("nodes", "links", "generate", "routes"):
            if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
                raise ctx.error(key, f"an array of tables: [[{k}]]")
            for i, t in enumerate(v):
                _keys(ctx, t, k, f"{k}[{i}].")
        elif section == "" and k in ("lab", "defaults"):
            if not isinstance(v, dict):
                raise ctx.error(key, f"a table: [{k}]")
            _keys(ctx, v, k, f"{k}.")


def _table(ctx: SourceLines, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ctx.error(where, "must be a table")
    return v


def _array(ctx: SourceLines, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(data.get(key, []))


def _typed(ctx: SourceLines, key: str, v: Any, kind: type) -> Any:
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ctx.error(key, f"must be a {'whole number' if kind is int else kind.__name__}")
    return v


def _node_settings(ctx: SourceLines, key: str, t: dict[str, Any], base: Path, inherit: LabNode) -> LabNode:
    runtimes = t.get("runtimes", inherit.runtimes)
    if not isinstance(runtimes, list) or not runtimes or not all(isinstance(r, str) for r in runtimes):
        raise ctx.error(f"{key}.runtimes", 'a non-empty list of runtime names, e.g. ["native", "wasm"]')
    install = inherit.install
    if "install" in t:
        raw = t["install"]
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise ctx.error(f"{key}.install", "a list of .pco paths")
        install = [base / p for p in raw]
    tables = {}
    for name in ("trust", "limits", "demand"):
        v = t.get(name, {})
        if not isinstance(v, dict):
            raise ctx.error(f"{key}.{name}", "must be a table")
        tables[name] = {**getattr(inherit, name), **v}
    for k, v in tables["trust"].items():
        if not isinstance(v, str):
            raise ctx.error(f"{key}.trust", f"rule {k!r}: a string such as \"signed\" or \"any\"")
    return LabNode("", list(runtimes), list(install), tables["trust"], tables["limits"], tables["demand"])


def _shaping(ctx: SourceLines, key: str, t: dict[str, Any]) -> Shaping:
    for k in t:
        if k not in _LINK_KEYS | {"endpoints"}:
            raise ctx.error(f"{key}.{k}", f"unknown key; known here: {', '.join(sorted(_LINK_KEYS))}")

    def duration(k: str) -> int:
        if k not in t:
            return 0
        m = _DURATION.fullmatch(str(t[k]).strip()) if isinstance(t[k], str) else None
        if not m:
            raise ctx.error(f"{key}.{k}", 'a duration such as "5ms", "200us" or "1s"')
        us = round(float(m.group(1)) * _SCALE[m.group(2)])
        if us > 60_000_000:
            raise ctx.error(f"{key}.{k}", "at most 60 s")
        return us

    delay, jitter = duration("delay"), duration("jitter")
    if jitter and not delay:
        raise ctx.error(f"{key}.jitter", "jitter needs a delay")
    loss = t.get("loss", 0.0)
    if not isinstance(loss, (int, float)) or isinstance(loss, bool) or not 0 <= loss <= 100:
        raise ctx.error(f"{key}.loss", "a percentage, 0..100")
    rate = 0
    if "rate" in t:
        m = _RATE.fullmatch(t["rate"].strip()) if isinstance(t["rate"], str) else None
        if not m:
            raise ctx.error(f"{key}.rate", 'a rate such as "100mbit", "512kbit" or "1gbit"')
        rate = round(float(m.group(1)) * _SCALE[m.group(2)])
        if not 8000 <= rate <= 100_000_000_000:
            raise ctx.error(f"{key}.rate", "between 8kbit and 100gbit")
    return Shaping(delay, jitter, float(loss), rate)
