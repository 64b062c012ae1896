"""A configuration (the paper's Figure 2) brought up on a socket testbed.

The sender and receiver are always ``pan node`` processes; what sits between them is the
configuration: ``none`` (linked directly), ``passive`` (the middle host's kernel forwards IP),
``cforw`` (a plain user-space UDP forwarder), ``active`` (a ``pan node``) or ``activecopy``
(a ``pan node`` that copies capsule data before sending). The harness is the application
on the sender (and installs code on every node before anything is timed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import PanError
from pan_runtime.net.client import Client

from .forwarder import SOCKET_BUFFER
from .testbed import Proc, Testbed

__all__ = ["Running", "copy_on_send_unsupported", "start_configuration", "START_LIMIT_S"]

#: how long a node or forwarder may take to start: a guard against a hang, not a measure (a
#: process that dies is noticed at once; a busy machine may take minutes to start a JVM)
START_LIMIT_S = 600.0


def copy_on_send_unsupported() -> str | None:
    """Why ``pan node`` cannot run ``activecopy`` (None when its configuration can say so)."""
    from pan_runtime.net.config import parse_config

    try:
        parse_config('[node]\nlisten = ["127.0.0.1:1"]\n[limits]\ncopy_on_send = true\n')
    except PanError:
        return "pan node's configuration has no limits.copy_on_send key (needed to run a copying middle node)"
    return None


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_toml(
    name: str,
    listen: str,
    address: str,
    app_socket: Path,
    neighbors: list[tuple[str, str]],
    routes: list[tuple[str, str]],
    runtimes: list[str],
    pool_buffer_size: int,
    copy_on_send: bool = False,
    threads: int = 1,
    accept_unknown_peers: bool = False,
    isolation: str = "in_process",
    worker_poll: tuple[int, int] | None = None,
    thread_cpus: Sequence[int] = (),
) -> str:
    """The TOML configuration of one bench node (``neighbors``: (address, endpoint) pairs;
    ``threads``: its fast-path threads; ``accept_unknown_peers``: it learns a neighbour from
    each new source, as the capacity generator's flows); ``isolation`` is how it runs every
    runtime's code (``process``: in worker processes, with no warm standbys: the bench
    measures capsules, not restarts, and a standby per code object would start a second
    runtime for each, a JVM too, while the cells run; ``worker_poll``: (CPU, µs): the workers
    run on that CPU and poll their rings that long after each batch)."""
    lines = [
        "[node]",
        f"name = {_toml_str(name)}",
        f"listen = [{_toml_str(listen)}]",
        f"address = {_toml_str(address)}",
        f"app_socket = {_toml_str(str(app_socket))}",
        'log_level = "error"',
        *(["accept_unknown_peers = true"] if accept_unknown_peers else []),
        "",
        "[runtimes]",
        "enabled = [" + ", ".join(_toml_str(r) for r in runtimes) + "]",
        "",
        "[limits]",
        "queue = 4096",
        "pool_buffers = 1024",
        f"pool_buffer_size = {pool_buffer_size}",
        "budget_time_ms = 1000",
        f"neighbour_buffer = {SOCKET_BUFFER}",  # as large as the baselines' sockets
    ]
    if copy_on_send:
        lines.append("copy_on_send = true")
    if threads > 1:
        lines.append(f"threads = {threads}")
    if thread_cpus:
        lines.append(f"thread_cpus = [{', '.join(map(str, thread_cpus))}]")
    if isolation == "process":
        lines.append("worker_standbys = 0")
        if worker_poll:
            lines += [f"worker_cpus = [{worker_poll[0]}]", f"worker_poll_us = {worker_poll[1]}"]
        for r in runtimes:
            lines += ["", f"[runtimes.{r}]", 'isolation = "process"']
    for addr, ep in neighbors:
        lines += ["", "[[neighbors]]", f"address = {_toml_str(addr)}", f"endpoint = {_toml_str(ep)}"]
    for dest, via in routes:
        lines += ["", "[[routes]]", f"dest = {_toml_str(dest)}", f"via = {_toml_str(via)}"]
    return "\n".join(lines) + "\n"


class Running:
    """The processes of one configuration, and the harness's application links to its nodes."""

    def __init__(self, bed: Testbed, config: str, procs: list[Proc], sockets: dict[str, Path], receiver_address: str,
                 workers_poll: bool = False):
        self.bed = bed
        self.config = config
        self.procs = procs
        self.sockets = sockets
        self.receiver_address = receiver_address
        #: the middle's workers poll on a CPU of their own (``--worker-poll-us``)
        self.workers_poll = workers_poll
        self.clients: dict[str, Client] = {}
        for role, path in sockets.items():
            self.clients[role] = Client.connect(path, timeout=START_LIMIT_S, request_timeout=120.0)

    @property
    def app(self) -> Client:
        """The application on the sender node."""
        return self.clients["sender"]

    def install_everywhere(self, codes: dict[str, CodeObject]) -> None:
        """Install (pinned) the code objects on every pan node of the configuration."""
        for c in self.clients.values():
            for code in codes.values():
                c.install(code, pin=True)

    def use_runtime(self, codes: dict[str, CodeObject], port: int) -> None:
        """Make ``codes``' portmapper current on every node and bind ``port`` to the harness."""
        for c in self.clients.values():
            c.use_portmapper(codes["portmapper"])
        self.app.bind(port)
        time.sleep(0.05)  # the bind capsule is evaluated on the node's next turn
        self.app.ping_node()

    def node_stats(self) -> dict[str, dict[str, object]]:
        return {role: c.stats() for role, c in self.clients.items()}

    def middle_workers(self, runtime: str) -> int | None:
        """Worker processes the middle ``pan node`` has up for ``runtime`` (None: no pan middle)."""
        client = self.clients.get("middle")
        if client is None:
            return None
        return int(client.stats().get("workers", {}).get(runtime, {}).get("workers", 0))

    def close(self) -> None:
        for c in self.clients.values():
            c.close()  # never raises: a link that is already gone is closed
        self.clients.clear()
        for p in self.procs:
            p.stop()
            if p in self.bed.procs:
                self.bed.procs.remove(p)
        for path in self.sockets.values():
            path.unlink(missing_ok=True)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pan_node(bed: Testbed, role: str, config: str, toml: str) -> Proc:
    cfg = bed.tmp / f"{config}-{role}.toml"
    cfg.write_text(toml)
    return bed.spawn(role, [sys.executable, "-m", "pan_runtime.cli.main", "node", str(cfg)], f"pan node ({config} {role})")


_SOCKET_TAGS = {"none": "n", "passive": "p", "cforw": "f", "active": "a", "activecopy": "ac"}


def start_configuration(bed: Testbed, config: str, runtimes: list[str], max_size: int, threads: int = 1,
                        isolation: str = "in_process", worker_poll: tuple[int, int] | None = None,
                        thread_cpus: Sequence[int] = ()) -> Running:
    """Bring ``config`` up on ``bed``: start the processes, wait until each is ready, connect.
    A ``pan node`` in the middle runs ``runtimes`` in ``isolation`` on ``threads`` fast-path
    threads (on ``thread_cpus`` in turn, when given); the ends run them in-process on one."""
    why = bed.config_unavailable(config)
    if why:
        raise PanError(f"configuration {config} on {bed.name}: {why}")
    s, m, r = bed.hosts["sender"], bed.hosts["middle"], bed.hosts["receiver"]
    ps, pm, pr = (bed.port(role, config) for role in ("sender", "middle", "receiver"))
    pool = max(9216, max_size)
    if config == "none":
        s_ip, r_ip = s.ip_toward("receiver"), r.ip_toward("sender")
    else:
        s_ip, r_ip = s.ip_toward("middle"), r.ip_toward("middle")
    s_addr, r_addr = f"{s_ip}:{ps}", f"{r_ip}:{pr}"
    m_addr = f"{m.ip_toward('sender')}:{pm}"  # the middle's name, as the sender sees it
    m_for_r = f"{m.ip_toward('receiver')}:{pm}"  # its endpoint, as the receiver sees it
    m_listen = f"0.0.0.0:{pm}" if m.isolated else m_addr
    if config in ("none", "passive"):
        s_nb, r_nb = [(r_addr, r_addr)], [(s_addr, s_addr)]
        s_rt: list[tuple[str, str]] = []
        r_rt: list[tuple[str, str]] = []
    else:
        s_nb, r_nb = [(m_addr, m_addr)], [(m_addr, m_for_r)]
        s_rt, r_rt = [(r_addr, m_addr)], [(s_addr, m_addr)]
    procs: list[Proc] = []
    # short names: a UNIX socket path must fit 107 bytes, and TMPDIR may already be long
    tag = _SOCKET_TAGS.get(config, config[:3])
    sockets = {role: bed.tmp / f"{tag}-{role[0]}.sock" for role in ("sender", "receiver")}
    try:
        if config == "cforw":
            fw = bed.spawn("middle", [sys.executable, "-m", "pan_runtime.bench.forwarder", m_listen, s_addr, r_addr], "cforw forwarder")
            procs.append(fw)
            fw.wait_line("ready", START_LIMIT_S)
        elif config in ("active", "activecopy"):
            sockets["middle"] = bed.tmp / f"{tag}-m.sock"
            toml = node_toml(
                f"{config}-middle", m_listen, m_addr, sockets["middle"], [(s_addr, s_addr), (r_addr, r_addr)], [], runtimes, pool,
                copy_on_send=config == "activecopy", threads=threads, isolation=isolation, worker_poll=worker_poll,
                thread_cpus=thread_cpus,
            )
            procs.append(_pan_node(bed, "middle", config, toml))
        toml = node_toml(f"{config}-receiver", r_addr, r_addr, sockets["receiver"], r_nb, r_rt, runtimes, pool)
        procs.append(_pan_node(bed, "receiver", config, toml))
        toml = node_toml(f"{config}-sender", s_addr, s_addr, sockets["sender"], s_nb, s_rt, runtimes, pool)
        procs.append(_pan_node(bed, "sender", config, toml))
        for p in procs:
            if p.name.startswith("pan node"):
                p.wait_line("pan node", START_LIMIT_S)
        polls = bool(worker_poll) and isolation == "process" and "middle" in sockets  # a pan node in the middle
        return Running(bed, config, procs, sockets, r_addr, workers_poll=polls)
    except BaseException:
        for p in procs:
            p.stop()
            if p in bed.procs:
                bed.procs.remove(p)
        raise
