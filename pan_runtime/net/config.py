"""Node configuration from TOML: listen addresses, neighbours, routes, trust, cache, runtimes,
limits and demand loading (the format is in ``docs/network.md``).

Every key is checked; an error is a ``ConfigError`` whose message names the file, the line
of the offending key (found in the source text, since ``tomllib`` keeps no positions) and
the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.files import read_bounded
from pan_runtime.errors import ConfigError, PanError
from pan_runtime.isolation.mechanism import parse_mechanisms
from pan_runtime.net.demand import largest_pco
from pan_runtime.node.config import MAX_CPU, MAX_POLL_US, MAX_THREADS
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.node.trust import TrustPolicy
from pan_runtime.plugin.loadlimits import BOUNDS as LOAD_BOUNDS
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = [
    "DemandConfig", "Endpoint", "ErrorReportConfig", "NeighborConfig", "NodeFileConfig", "SourceLines", "load_config", "read_toml_text",
    "parse_config", "parse_endpoint",
]

Endpoint = tuple[str, int]

_LEVELS = ("debug", "info", "warning", "error")
#: largest configuration file read
MAX_CONFIG_BYTES = 1 << 20
#: longest path a UNIX socket binds to on Linux (sun_path is 108 bytes with the NUL)
_MAX_SOCKET_PATH = 107
#: most memory the receive pool may take (pool_buffers x pool_buffer_size)
MAX_POOL_BYTES = 1 << 30


def parse_endpoint(text: str) -> Endpoint:
    """``a.b.c.d:port`` or ``[ip6]:port`` -> (host, port); raises ``PanError`` if malformed."""
    import ipaddress

    t = text.strip()
    if t.startswith("["):
        host, sep, port = t[1:].partition("]:")
        if not sep:
            raise PanError(f"{text!r} is not an endpoint: expected [ip6]:port")
    else:
        host, sep, port = t.rpartition(":")
        if not sep:
            raise PanError(f"{text!r} is not an endpoint: expected a.b.c.d:port or [ip6]:port")
    if not port.isdigit() or not 0 <= int(port) <= 0xFFFF:
        raise PanError(f"{text!r}: port must be 0..65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise PanError(f"{text!r}: {host!r} is not an IPv4 or IPv6 address") from None
    return str(ip), int(port)


@dataclass
class NeighborConfig:
    address: NodeAddress
    endpoint: Endpoint
    mtu: int


@dataclass
class DemandConfig:
    """Bounds and timing of demand loading (``pan_runtime.net.demand``)."""

    park_per_code: int = 64
    park_total: int = 512
    max_fetches: int = 32
    deadline_ms: int = 5000
    retry_ms: int = 100
    request_rate: float = 200.0
    serve_rate: float = 2000.0
    chunk_size: int = 0
    #: bytes all fetches together may hold (each reserves its declared total at its first chunk)
    inflight_bytes: int = 32 << 20


@dataclass
class ErrorReportConfig:
    """Bounds on the error reports a node sends (``pan_runtime.net.reports``)."""

    #: send error reports at all (reports that arrive are delivered either way)
    enabled: bool = True
    #: reports per second the node sends in all, and how many it may send at once
    rate: float = 100.0
    burst: int = 100
    #: reports per second to one destination (a capsule's home node), and at once
    per_dest_rate: float = 10.0
    per_dest_burst: int = 10
    #: destinations whose rate the node keeps track of (the least recently used is forgotten)
    destinations: int = 1024


#: (lowest, highest) of each [errors] value; a rate's lowest is excluded
_ERRORS_RANGES: dict[str, tuple[int, int]] = {
    "rate": (0, 1_000_000),
    "burst": (1, 1_000_000),
    "per_dest_rate": (0, 1_000_000),
    "per_dest_burst": (1, 1_000_000),
    "destinations": (1, 1 << 20),
}


@dataclass
class NodeFileConfig:
    """Everything ``pan node`` needs, parsed and checked."""

    path: str
    address: NodeAddress
    listen: list[Endpoint]
    name: str
    app_socket: str | None = None
    log_level: str = "warning"
    accept_unknown_peers: bool = False
    neighbors: list[NeighborConfig] = field(default_factory=list)
    routes: list[tuple[NodeAddress, NodeAddress, int]] = field(default_factory=list)
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    node: NodeConfig = field(default_factory=NodeConfig)
    demand: DemandConfig = field(default_factory=DemandConfig)
    errors: ErrorReportConfig = field(default_factory=ErrorReportConfig)
    rx_burst: int = 64
    rx_batch: int = 64
    #: send forwards toward one next hop with one size as UDP GSO messages where the kernel can
    udp_gso: bool = True
    #: "auto": the fast path's wait sends a visit's last forwards and waits in one io_uring_enter
    #: where the kernel has io_uring with IORING_OP_EPOLL_WAIT (Linux 6.15); "off": epoll_wait + sendmmsg
    io_uring: str = "auto"
    app_max_frame: int = 16 << 20
    app_out_bytes: int = 4 << 20
    app_in_bytes: int = 32 << 20
    app_connections: int = 64


#: (lowest, highest) of each [demand] value; a rate's lowest is excluded
_DEMAND_RANGES: dict[str, tuple[int, int]] = {
    "park_per_code": (1, 1 << 16),
    "park_total": (1, 1 << 18),
    "max_fetches": (1, 4096),
    "deadline_ms": (1, 600_000),
    "retry_ms": (1, 60_000),
    "request_rate": (0, 1_000_000),
    "serve_rate": (0, 1_000_000),
    "chunk_size": (0, 65507),
    "inflight_bytes": (1, 1 << 32),
}

_SCHEMA: dict[str, set[str]] = {
    "": {"node", "neighbors", "routes", "trust", "cache", "runtimes", "limits", "demand", "errors"},
    "node": {"name", "listen", "address", "app_socket", "log_level", "accept_unknown_peers"},
    "neighbors": {"address", "endpoint", "mtu"},
    "routes": {"dest", "via", "metric"},
    "trust": {"trusted_keys", "rules"},
    "cache": {"dir", "max_bytes"},
    "runtimes": {"enabled", "options"},
    "limits": {
        "queue",
        "batch",
        "pool_buffers",
        "pool_buffer_size",
        "hop_limit",
        "rx_burst",
        "rx_batch",
        "udp_gso",
        "io_uring",
        "state_entries",
        "state_bytes",
        "state_ttl_ms",
        "state_total_bytes",
        "pool_reserve",
        "code_buffers",
        "budget_time_ms",
        "budget_steps",
        "budget_fuel",
        "app_max_frame",
        "app_out_bytes",
        "app_in_bytes",
        "app_connections",
        "app_ports",
        "copy_on_send",
        "fast_path",
        *(f.name for f in dataclasses.fields(LoadLimits)),
        "fair_quantum_us",
        "neighbour_sockets",
        "neighbour_buffer",
        "neighbour_exhaustions",
        "neighbour_window_ms",
        "neighbour_backoff_ms",
        "neighbour_max_backoff_ms",
        "workers",
        "worker_memory",
        "worker_grace_ms",
        "worker_start_ms",
        "worker_init_ms",
        "worker_backoff_ms",
        "threads",
        "worker_spares",
        "worker_standbys",
        "worker_inflight",
        "worker_queue",
        "worker_nice",
        "worker_demote_ms",
        "worker_cpus",
        "worker_poll_us",
        "thread_cpus",
    },
    "demand": set(DemandConfig.__dataclass_fields__),
    "errors": set(ErrorReportConfig.__dataclass_fields__),
}


class _Ctx:
    """Error reporting: the file and its text, to find the line a key is on."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, key: str) -> int | None:
        """The line of ``key`` (dotted; list items as ``name[i]``) in the source, best effort."""
        parts = key.split(".")
        section_idx: dict[str, int] = {}
        start = 0
        # walk into the table the key lives in
        for part in parts[:-1]:
            m = re.fullmatch(r"(\w+)\[(\d+)\]", part)
            base, idx = (m.group(1), int(m.group(2))) if m else (part, None)
            hdr = re.compile(rf"^\s*\[\[?\s*(?:[\w.]*\.)?{re.escape(base)}\s*\]\]?\s*(#.*)?$")
            count = -1
            found = None
            for i in range(start, len(self.lines)):
                if hdr.match(self.lines[i]):
                    count += 1
                    if idx is None or count == idx:
                        found = i
                        break
            if found is None:
                break
            start = found
            section_idx[part] = found
        leaf = re.sub(r"\[\d+\]$", "", parts[-1])
        pat = re.compile(rf"^\s*\"?{re.escape(leaf)}\"?\s*=")
        for i in range(start, len(self.lines)):
            if pat.match(self.lines[i]) or re.search(rf"[{{,]\s*\"?{re.escape(leaf)}\"?\s*=", self.lines[i]):
                return i + 1
        if section_idx:
            return max(section_idx.values()) + 1
        # dotted forms: `network.none = ...` under [trust.rules], or the header [trust.rules]
        segs = re.sub(r"\[\d+\]", "", key).split(".")
        for i in range(1, len(segs)):
            dotted = re.compile(rf"^\s*{re.escape('.'.join(segs[i:]))}\s*=")
            for n, text in enumerate(self.lines):
                if dotted.match(text):
                    return n + 1
        header = re.compile(rf"^\s*\[\s*{re.escape('.'.join(segs))}\s*\]")
        for n, text in enumerate(self.lines):
            if header.match(text):
                return n + 1
        return None

    def error(self, key: str, message: str) -> ConfigError:
        line = self.line_of(key)
        where = f"{self.path}:{line}" if line else self.path
        return ConfigError(f"{where}: {key}: {message}")


#: the error reporter, for other TOML formats of the same kind (the ``pan lab`` topology file)
SourceLines = _Ctx


def read_toml_text(p: Path, limit: int, what: str) -> str:
    """The text of the TOML file ``p`` (a regular file of at most ``limit`` bytes, UTF-8);
    ``ConfigError`` naming the file, and the line of a byte that is not UTF-8."""
    try:
        raw = read_bounded(p, limit, ConfigError, what)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{p}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x}); TOML files are UTF-8") from None


def load_config(path: str | Path) -> NodeFileConfig:
    """Read and check a node configuration file."""
    p = Path(path)
    text = read_toml_text(p, MAX_CONFIG_BYTES, "configuration")
    return parse_config(text, str(p), base=p.parent.resolve())


def parse_config(text: str, path: str = "<config>", base: Path | None = None) -> NodeFileConfig:
    """Check a configuration given as TOML text (``path`` names it in errors)."""
    ctx = _Ctx(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"line (\d+)", msg)
        where = f"{path}:{m.group(1)}" if m else path
        raise ConfigError(f"{where}: not valid TOML: {msg}") from None
    base = base or Path(".")
    _check_keys(ctx, data, "", "")

    node_t = _table(ctx, data, "node")
    listen_raw = node_t.get("listen")
    if listen_raw is None:
        raise ctx.error("node.listen", "missing: give at least one UDP address to listen on, e.g. listen = [\"127.0.0.1:7001\"]")
    if isinstance(listen_raw, str):
        listen_raw = [listen_raw]
    listen = [_endpoint(ctx, f"node.listen[{i}]", v) for i, v in enumerate(_list(ctx, "node.listen", listen_raw))]
    if not listen:
        raise ctx.error("node.listen", "empty: give at least one UDP address")
    families = [":" in h for h, _ in listen]
    if len(set(families)) != len(families):
        raise ctx.error("node.listen", "at most one IPv4 and one IPv6 address (one socket per address family)")
    if "address" in node_t:
        address = _address(ctx, "node.address", node_t["address"])
    else:
        address = NodeAddress.from_endpoint(*listen[0])
    name = _str(ctx, "node.name", node_t.get("name", str(address)))
    if not 0 < len(name.encode()) <= 255 or not name.isprintable():
        raise ctx.error("node.name", "must be 1..255 bytes of printable text")
    app_socket = node_t.get("app_socket")
    if app_socket is not None:
        app_socket = str(base / _path(ctx, "node.app_socket", app_socket))
        n = len(os.fsencode(app_socket))
        if n > _MAX_SOCKET_PATH:
            raise ctx.error("node.app_socket", f"{app_socket} is {n} bytes; UNIX socket paths are limited to {_MAX_SOCKET_PATH}")
    level = _str(ctx, "node.log_level", node_t.get("log_level", "warning")).lower()
    if level not in _LEVELS:
        raise ctx.error("node.log_level", f"{level!r} is not one of {', '.join(_LEVELS)}")
    accept_unknown = _bool(ctx, "node.accept_unknown_peers", node_t.get("accept_unknown_peers", False))

    limits = _table(ctx, data, "limits")

    def lim(key: str, default: int, lo: int = 1, hi: int | None = None) -> int:
        return _int(ctx, f"limits.{key}", limits.get(key, default), lo, hi)

    pool_size = lim("pool_buffer_size", 9216, 128, 65535)
    pool_buffers = lim("pool_buffers", 2048, 16, 1 << 18)
    if pool_buffers * pool_size > MAX_POOL_BYTES:
        raise ctx.error("limits.pool_buffers", f"{pool_buffers} buffers of {pool_size} bytes exceed {MAX_POOL_BYTES} bytes of receive pool")
    # the per-capsule budget: time for every runtime, steps for restricted_py, fuel for wasm
    # in fuel mode (each runtime enforces what it counts; see env.Budget)
    default = Budget()
    budget = Budget(
        time_ms=lim("budget_time_ms", int(default.time_ms), 1, 60_000),
        steps=lim("budget_steps", default.steps, 1, 1 << 40),
        fuel=lim("budget_fuel", default.fuel, 1, 1 << 48),
    )
    cache_t = _table(ctx, data, "cache")
    cache_dir = cache_t.get("dir")
    if cache_dir is not None:
        cache_dir = str(base / _path(ctx, "cache.dir", cache_dir))
    rt_t = _table(ctx, data, "runtimes")
    enabled = rt_t.get("enabled")
    if enabled is not None:
        enabled = [_str(ctx, f"runtimes.enabled[{i}]", v) for i, v in enumerate(_list(ctx, "runtimes.enabled", enabled))]
    options = rt_t.get("options", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ctx.error("runtimes.options", "must be tables [runtimes.options.RUNTIME] of runtime options")
    # [runtimes.NAME] isolation = "in_process" | "process" (pan_runtime.isolation)
    isolation: dict[str, str] = {}
    for rt_name, table in rt_t.items():
        if rt_name in ("enabled", "options"):
            continue
        if not isinstance(table, dict):
            raise ctx.error(f"runtimes.{rt_name}", "must be a table [runtimes.RUNTIME] (isolation = ...), or enabled/options")
        for k in table:
            if k != "isolation":
                raise ctx.error(f"runtimes.{rt_name}.{k}", "unknown key; expected isolation")
        value = _str(ctx, f"runtimes.{rt_name}.isolation", table.get("isolation", "in_process"))
        try:
            parse_mechanisms({rt_name: value}, "isolation")
        except ConfigError as exc:
            raise ctx.error(f"runtimes.{rt_name}.isolation", str(exc).partition(": ")[2]) from None
        isolation[rt_name] = value
    # what code objects may hold (pan_runtime.node.quota): checked here to name the key and line
    state_bytes = lim("state_bytes", 4 << 20, 1, 1 << 30)
    state_total = lim("state_total_bytes", max(64 << 20, state_bytes), 1, 1 << 34)
    if state_bytes > state_total:
        raise ctx.error("limits.state_bytes", f"{state_bytes} is more than limits.state_total_bytes ({state_total}), the soft state of every code object together")
    reserve = _int(ctx, "limits.pool_reserve", limits.get("pool_reserve", pool_buffers // 4), 0, pool_buffers - 1)
    code_buffers = _int(
        ctx, "limits.code_buffers", limits.get("code_buffers", max(1, pool_buffers // 16)), 0, pool_buffers - reserve
    )
    defaults = LoadLimits()
    load_limits = LoadLimits(**{f.name: lim(f.name, getattr(defaults, f.name), *LOAD_BOUNDS[f.name]) for f in dataclasses.fields(LoadLimits)})
    backoff_ms = lim("neighbour_backoff_ms", 1_000, 1, 86_400_000)
    node_cfg = NodeConfig(
        queue_limit=lim("queue", 4096, 1, 1 << 20),
        batch=lim("batch", 1, 1, 1024),
        budget=budget,
        cache_bytes=_int(ctx, "cache.max_bytes", cache_t.get("max_bytes", 256 << 20), 1024, 1 << 40),
        cache_dir=cache_dir,
        state_entries=lim("state_entries", 4096, 1, 1 << 20),
        state_bytes=state_bytes,
        state_ttl_ms=lim("state_ttl_ms", 60_000, 1, 7 * 86_400_000),
        state_total_bytes=state_total,
        pool_buffers=pool_buffers,
        pool_buffer_size=pool_size,
        pool_reserve=reserve,
        code_buffers=code_buffers,
        hop_limit=lim("hop_limit", 64, 1, 255),
        app_ports=lim("app_ports", 256, 1, 65536),
        runtime_options=options,
        runtimes=enabled,
        copy_on_send=_bool(ctx, "limits.copy_on_send", limits.get("copy_on_send", False)),
        fast_path=_bool(ctx, "limits.fast_path", limits.get("fast_path", True)),
        load_limits=load_limits,
        fair_quantum_us=lim("fair_quantum_us", 100, 1, 1_000_000),
        neighbour_sockets=lim("neighbour_sockets", 256, 0, 65_536),
        neighbour_buffer=lim("neighbour_buffer", 1 << 20, 4096, 1 << 30),
        neighbour_exhaustions=lim("neighbour_exhaustions", 5, 1, 1_000_000),
        neighbour_window_ms=lim("neighbour_window_ms", 10_000, 1, 86_400_000),
        neighbour_backoff_ms=backoff_ms,
        neighbour_max_backoff_ms=lim("neighbour_max_backoff_ms", max(60_000, backoff_ms), backoff_ms, 86_400_000),
        isolation=isolation,
        workers=lim("workers", 16, 1, 4096),
        worker_memory=lim("worker_memory", 256 << 20, 16 << 20, 1 << 40),
        worker_grace_ms=lim("worker_grace_ms", 100, 1, 60_000),
        worker_start_ms=lim("worker_start_ms", 30_000, 100, 600_000),
        worker_init_ms=lim("worker_init_ms", 1_000, 1, 600_000),
        worker_backoff_ms=lim("worker_backoff_ms", 10, 0, 5_000),
        worker_spares=lim("worker_spares", 1, 0, 16),
        threads=lim("threads", 1, 1, MAX_THREADS),
        worker_standbys=lim("worker_standbys", 4, 0, 4096),
        worker_inflight=lim("worker_inflight", 256, 1, 1 << 16),
        worker_queue=lim("worker_queue", 4096, 0, 1 << 20),
        worker_nice=lim("worker_nice", 0, 0, 19),
        worker_demote_ms=lim("worker_demote_ms", 2, 0, 60_000),
        worker_cpus=[_int(ctx, f"limits.worker_cpus[{i}]", c, 0, MAX_CPU)
                     for i, c in enumerate(_list(ctx, "limits.worker_cpus", limits.get("worker_cpus", [])))],
        worker_poll_us=lim("worker_poll_us", 0, 0, MAX_POLL_US),
        thread_cpus=[_int(ctx, f"limits.thread_cpus[{i}]", c, 0, MAX_CPU)
                     for i, c in enumerate(_list(ctx, "limits.thread_cpus", limits.get("thread_cpus", [])))],
    )

    neighbors: list[NeighborConfig] = []
    for i, n in enumerate(_list(ctx, "neighbors", data.get("neighbors", []))):
        key = f"neighbors[{i}]"
        if isinstance(n, str):
            n = {"address": n}
        if not isinstance(n, dict):
            raise ctx.error(key, "a neighbour is a table {address = ..., endpoint = ..., mtu = ...} or an address string")
        if "address" not in n:
            raise ctx.error(f"{key}.address", "missing: the neighbour's node address")
        addr = _address(ctx, f"{key}.address", n["address"])
        if "endpoint" in n:
            ep = _endpoint(ctx, f"{key}.endpoint", n["endpoint"])
        else:
            ep4 = addr.ipv4_endpoint()
            if ep4 is None:
                raise ctx.error(f"{key}.endpoint", f"missing: address {addr} is not an IPv4 endpoint address, so give its UDP endpoint")
            ep = ep4
        mtu = _int(ctx, f"{key}.mtu", n.get("mtu", pool_size), 128, 65507)
        if ":" in ep[0] and not any(":" in h for h, _ in listen):
            raise ctx.error(f"{key}.endpoint", f"{ep[0]} is IPv6 but the node listens on no IPv6 address")
        if ":" not in ep[0] and not any(":" not in h for h, _ in listen):
            raise ctx.error(f"{key}.endpoint", f"{ep[0]} is IPv4 but the node listens on no IPv4 address")
        if addr == address:
            raise ctx.error(f"{key}.address", "a node cannot be its own neighbour")
        neighbors.append(NeighborConfig(addr, ep, mtu))

    routes: list[tuple[NodeAddress, NodeAddress, int]] = []
    known = {n.address for n in neighbors}
    for i, r in enumerate(_list(ctx, "routes", data.get("routes", []))):
        key = f"routes[{i}]"
        if not isinstance(r, dict):
            raise ctx.error(key, "a route is a table {dest = ..., via = ..., metric = ...}")
        for k in ("dest", "via"):
            if k not in r:
                raise ctx.error(f"{key}.{k}", "missing")
        dest = _address(ctx, f"{key}.dest", r["dest"])
        via = _address(ctx, f"{key}.via", r["via"])
        if via not in known:
            raise ctx.error(f"{key}.via", f"{via} is not a configured neighbour")
        routes.append((dest, via, _int(ctx, f"{key}.metric", r.get("metric", 1), 0, 0xFFFF)))

    trust_t = _table(ctx, data, "trust")
    keys: list[bytes] = []
    from pan_runtime.data.keys import load_public_key

    for i, k in enumerate(_list(ctx, "trust.trusted_keys", trust_t.get("trusted_keys", []))):
        k = _path(ctx, f"trust.trusted_keys[{i}]", k)
        candidate = base / k
        try:
            keys.append(load_public_key(candidate if candidate.exists() else k))
        except PanError as exc:
            raise ctx.error(f"trust.trusted_keys[{i}]", str(exc)) from None
    rules = trust_t.get("rules", {})
    if not isinstance(rules, dict):
        raise ctx.error("trust.rules", "must be a table of ORIGIN.ISOLATION = any|signed|process|never")
    flat: dict[str, str] = {}
    for k, v in rules.items():  # `network.none = "any"` unquoted is a nested table in TOML
        for sub, rule in (v.items() if isinstance(v, dict) else [("", v)]):
            rule_key = f"{k}.{sub}" if sub else k
            flat[rule_key] = _str(ctx, f"trust.rules.{rule_key}", rule)
    try:
        trust = TrustPolicy.from_config(flat, keys)
    except ConfigError as exc:
        raise ctx.error("trust.rules", str(exc)) from None

    demand_t = _table(ctx, data, "demand")
    dc = DemandConfig()
    for k, default in vars(DemandConfig()).items():
        if k in demand_t:
            v = demand_t[k]
            lo, hi = _DEMAND_RANGES[k]
            if isinstance(default, float):
                if not isinstance(v, int | float) or isinstance(v, bool) or not (math.isfinite(v) and lo < v <= hi):
                    raise ctx.error(f"demand.{k}", f"must be a number above {lo} and at most {hi}, got {v!r}")
                setattr(dc, k, float(v))
            else:
                setattr(dc, k, _int(ctx, f"demand.{k}", v, lo, hi))
    ec = _errors(ctx, _table(ctx, data, "errors"))
    app_max_frame = lim("app_max_frame", 16 << 20, 1024, 1 << 28)
    app_in_bytes = lim("app_in_bytes", 32 << 20, 1024, 1 << 32)
    if app_in_bytes < app_max_frame:
        raise ctx.error("limits.app_in_bytes", f"{app_in_bytes} is below limits.app_max_frame ({app_max_frame}): the largest frame could never arrive")
    if dc.park_total >= node_cfg.pool_buffers:
        raise ctx.error("demand.park_total", f"{dc.park_total} must be below limits.pool_buffers ({node_cfg.pool_buffers}): parked capsules hold receive buffers")
    if dc.inflight_bytes < largest_pco(load_limits.code_bytes):
        raise ctx.error(
            "demand.inflight_bytes",
            f"{dc.inflight_bytes} must be at least {largest_pco(load_limits.code_bytes)} (limits.code_bytes and "
            "a signature block): a code object of the largest size allowed could never be fetched",
        )

    return NodeFileConfig(
        path=path,
        address=address,
        listen=listen,
        name=name,
        app_socket=app_socket,
        log_level=level,
        accept_unknown_peers=accept_unknown,
        neighbors=neighbors,
        routes=routes,
        trust=trust,
        node=node_cfg,
        demand=dc,
        errors=ec,
        rx_burst=lim("rx_burst", 64, 1, 4096),
        rx_batch=lim("rx_batch", 64, 1, 1024),
        udp_gso=_bool(ctx, "limits.udp_gso", limits.get("udp_gso", True)),
        io_uring=_choice(ctx, "limits.io_uring", limits.get("io_uring", "auto"), ("auto", "off")),
        app_max_frame=app_max_frame,
        app_out_bytes=lim("app_out_bytes", 4 << 20, 1024, 1 << 30),
        app_in_bytes=app_in_bytes,
        app_connections=lim("app_connections", 64, 1, 4096),
    )


# ---------------------------------------------------------------------- value checkers
def _errors(ctx: _Ctx, table: dict[str, Any]) -> ErrorReportConfig:
    """``[errors]``: every value in its range (``_ERRORS_RANGES``)."""
    ec = ErrorReportConfig()
    if "enabled" in table:
        ec.enabled = _bool(ctx, "errors.enabled", table["enabled"])
    for k, (lo, hi) in _ERRORS_RANGES.items():
        if k not in table:
            continue
        v = table[k]
        if isinstance(getattr(ec, k), float):
            if not isinstance(v, int | float) or isinstance(v, bool) or not (math.isfinite(v) and lo < v <= hi):
                raise ctx.error(f"errors.{k}", f"must be a number above {lo} and at most {hi}, got {v!r}")
            setattr(ec, k, float(v))
        else:
            setattr(ec, k, _int(ctx, f"errors.{k}", v, lo, hi))
    return ec


def _check_keys(ctx: _Ctx, data: dict[str, Any], section: str, prefix: str) -> None:
    allowed = _SCHEMA[section]
    for k, v in data.items():
        dotted = f"{prefix}{k}"
        if k not in allowed and section == "runtimes" and isinstance(v, dict):
            continue  # [runtimes.NAME]: checked where it is read
        if k not in allowed:
            also = " or a table [runtimes.RUNTIME] (isolation = ...)" if section == "runtimes" else ""
            raise ctx.error(dotted, f"unknown key; expected one of {', '.join(sorted(allowed))}{also}")
        if section == "" and k in _SCHEMA and k not in ("runtimes",):
            if isinstance(v, dict):
                _check_keys(ctx, v, k, f"{k}.")
            elif isinstance(v, list):
                for i, item in enumerate(v):
                    if isinstance(item, dict):
                        _check_keys(ctx, item, k, f"{k}[{i}].")
            elif k not in ("neighbors", "routes"):
                raise ctx.error(dotted, f"must be a table [{k}]")
        elif section == "" and k == "runtimes":
            if not isinstance(v, dict):
                raise ctx.error(dotted, "must be a table [runtimes]")
            _check_keys(ctx, v, "runtimes", "runtimes.")


def _table(ctx: _Ctx, data: dict[str, Any], key: str) -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ctx.error(key, f"must be a table [{key}]")
    return v


def _list(ctx: _Ctx, key: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise ctx.error(key, f"must be a list, got {type(v).__name__}")
    return v


def _str(ctx: _Ctx, key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ctx.error(key, f"must be a string, got {v!r}")
    return v


def _path(ctx: _Ctx, key: str, v: Any) -> str:
    s = _str(ctx, key, v)
    if not s or "\0" in s or len(s) > 4096:
        raise ctx.error(key, "must be a path: 1..4096 characters, no NUL")
    return s


def _bool(ctx: _Ctx, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ctx.error(key, f"must be true or false, got {v!r}")
    return v


def _choice(ctx: _Ctx, key: str, v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ctx.error(key, f"must be one of {', '.join(repr(c) for c in choices)}, got {v!r}")
    return str(v)


def _int(ctx: _Ctx, key: str, v: Any, lo: int = 0, hi: int | None = None) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ctx.error(key, f"must be an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        raise ctx.error(key, f"{v} is outside {lo}..{hi if hi is not None else 'any'}")
    return v


def _address(ctx: _Ctx, key: str, v: Any) -> NodeAddress:
    try:
        return NodeAddress.parse(_str(ctx, key, v))
    except PanError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ctx.error(key, str(exc)) from None


def _endpoint(ctx: _Ctx, key: str, v: Any) -> Endpoint:
    try:
        return parse_endpoint(_str(ctx, key, v))
    except PanError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ctx.error(key, str(exc)) from None
