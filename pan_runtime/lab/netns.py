"""A lab on network namespaces: one namespace per node, a veth pair per link, ``tc`` shaping,
and a ``pan node`` process in each namespace.

Needs only root and ``ip``/``tc`` (iproute2). Inside a namespace a node's interfaces are
``eth0``, ``eth1``, ... in the order of its links in the topology. Everything made is in the
lab's record before it is made (``record``), and ``close()`` (or the reaper, when this
process was killed) removes it all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pan_runtime.bench.testbed import netns_unavailable, run_command
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.keys import generate_keypair, load_private_key
from pan_runtime.errors import PanError
from pan_runtime.net.client import Client
from pan_runtime.net.lifetime import child_env

from .dvcode import dv_code
from .nodeconfig import addressing, node_toml
from .record import NS_PREFIX, LabRecord, holder_alive, record_path, teardown
from .shaping import tc_commands
from .topology import Topology

__all__ = ["NetnsLab"]

#: how long a node may take to open its application socket (many start at once on few CPUs)
NODE_START_TIMEOUT = 300.0
#: the body of the capsule that tells the dv code a period has passed (protocols/dv.*)
DV_TICK = b"\x00\x00\x00\x00"


class NetnsLab:
    """A topology brought up on network namespaces; a context manager that tears it down."""

    def __init__(self, topo: Topology, log_level: str = "warning", progress: Callable[[str], None] | None = None):
        self.topo = topo
        self.log_level = log_level
        self.progress = progress or (lambda _m: None)
        self.addr = addressing(topo)
        self.rec: LabRecord | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.clients: dict[str, Client] = {}
        self.reaper: subprocess.Popen[bytes] | None = None
        self.key: object = None
        #: the lab's dv code (``routing = "dv"``) and the nodes known to have it
        self.dv: CodeObject | None = None
        self._dv_at: set[str] = set()

    def ns(self, node: str) -> str:
        return f"{NS_PREFIX}{self.topo.name}-{node}"

    # ------------------------------------------------------------------ bring up
    def up(self) -> LabRecord:
        why = netns_unavailable()
        if why:
            raise PanError(f"a lab on network namespaces is unavailable: {why}")
        path = record_path(self.topo.name)
        if path.exists():
            old = LabRecord.load(path)
            if holder_alive(old) and old.holder != os.getpid():
                raise PanError(f"lab {self.topo.name} is already up (held by process {old.holder}); `pan lab down {self.topo.name}` first")
            teardown(old)  # left by a holder that is gone
        self.rec = LabRecord(self.topo.name, self.topo.path, os.getpid(), dir=tempfile.mkdtemp(prefix=f"pan-lab-{self.topo.name}-"))
        self.rec.save()
        self._start_reaper()
        try:
            self._build()
            self._start_nodes()
            self.rec.ready = True
            self.rec.save()
        except BaseException:
            self.close()
            raise
        return self.rec

    def _start_reaper(self) -> None:
        assert self.rec is not None
        env = dict(os.environ)
        env.pop("PAN_PARENT_PID", None)
        self.reaper = subprocess.Popen(
            [sys.executable, "-m", "pan_runtime.lab.reaper", str(self.rec.path), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
        self.rec.reaper = self.reaper.pid
        self.rec.save()

    def _build(self) -> None:
        rec = self.rec
        assert rec is not None
        self.progress(f"lab {self.topo.name}: {len(self.topo.nodes)} namespaces")
        for node in self.topo.nodes:
            ns = self.ns(node)
            rec.namespaces.append(ns)
            rec.save()
            run_command(["ip", "netns", "add", ns])
            run_command(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.progress(f"lab {self.topo.name}: {len(self.topo.links)} links")
        ifaces = {n: 0 for n in self.topo.nodes}
        for ln, (ip_a, ip_b, plen) in zip(self.topo.links, self.addr.links, strict=True):
            ends = []
            for node, ip in ((ln.a, ip_a), (ln.b, ip_b)):
                ends.append((self.ns(node), self.dev(node, ifaces[node]), ip))
                ifaces[node] += 1
            (na, da, _), (nb, db, _) = ends
            run_command(["ip", "link", "add", da, "netns", na, "type", "veth", "peer", "name", db, "netns", nb])
            for ns, dev, ip in ends:
                run_command(["ip", "-n", ns, "addr", "add", f"{ip}/{plen}", "dev", dev])
                run_command(["ip", "-n", ns, "link", "set", dev, "up"])
                for cmd in tc_commands(ns, dev, ln.shaping):
                    try:
                        run_command(cmd)
                    except PanError as exc:
                        kind = "netem" if "netem" in cmd else "tbf"
                        raise PanError(f"{ln.origin}: shaping {ln.a} - {ln.b} needs the kernel's {kind} qdisc "
                                       f"(module sch_{kind}): {exc}") from None

    def _start_nodes(self) -> None:
        rec = self.rec
        assert rec is not None
        folder = Path(rec.dir)
        priv, pub = generate_keypair(folder / "lab-key")
        self.key = load_private_key(priv)
        rec.key = str(priv)
        self.progress(f"lab {self.topo.name}: starting {len(self.topo.nodes)} nodes")
        for name, node in self.topo.nodes.items():
            sock = folder / f"{name}.sock"
            cfg = folder / f"{name}.toml"
            log = folder / f"{name}.log"
            cfg.write_text(node_toml(self.topo, node, str(sock), self.addr, self.log_level, [str(pub)]))
            with open(log, "wb") as out:
                p = subprocess.Popen(
                    [*self.enter(name), sys.executable, "-m", "pan_runtime.cli.main", "node", str(cfg)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    cwd=folder, env=child_env(),
                )
            self.procs[name] = p
            rec.nodes[name] = {"ns": self.ns(name), "pid": p.pid, "socket": str(sock), "address": self.addr.node[name],
                               "config": str(cfg), "log": str(log), "enter": self.enter(name)}
        rec.save()
        deadline = time.monotonic() + NODE_START_TIMEOUT
        for name, p in self.procs.items():
            self.clients[name] = self._connect(name, p, deadline)
        self.progress(f"lab {self.topo.name}: installing code")
        for name, node in self.topo.nodes.items():
            for path in node.install:
                self.clients[name].install(CodeObject.read(path), pin=True)
        if self.topo.routing == "dv":
            self._start_dv()

    def _start_dv(self) -> None:
        """Install the distance-vector code object (``lab.dv_runtime``) at the first node and
        tick it: the code spreads to every node by demand loading and fills their routing
        tables; ``tick_dv`` keeps it going."""
        first = next(iter(self.topo.nodes))
        self.dv = self.sign(dv_code(self.topo.dv_runtime))
        self.clients[first].install(self.dv, pin=True)
        self._dv_at = {first}
        self.tick_dv()

    def tick_dv(self) -> None:
        """Tell every node that has the lab's dv code that a period has passed (``routing =
        "dv"``; the PNI has no timer). A node that does not have it yet gets it from a neighbour's
        advertisement; one that is gone is skipped (``status`` shows it down)."""
        if self.dv is None:
            return
        for name, c in self.clients.items():
            try:
                if name not in self._dv_at:
                    if not any(e["name"] == self.dv.hex_name for e in c.list_code()):
                        continue
                    self._dv_at.add(name)
                c.send(self.dv, DV_TICK)
            except PanError:
                continue

    def _connect(self, name: str, p: subprocess.Popen[bytes], deadline: float) -> Client:
        assert self.rec is not None
        sock = Path(str(self.rec.nodes[name]["socket"]))
        while True:
            if p.poll() is not None:
                log = Path(str(self.rec.nodes[name]["log"])).read_text(errors="replace")
                raise PanError(f"node {name} exited ({p.returncode}) while starting: {log.strip()[-800:] or 'no output'}")
            if sock.exists():
                try:
                    return Client.connect(sock, timeout=5.0, request_timeout=60.0)
                except PanError:
                    pass
            if time.monotonic() > deadline:
                raise PanError(f"node {name} did not open its application socket within {NODE_START_TIMEOUT:.0f} s")
            time.sleep(0.1)

    # ------------------------------------------------------------------ use
    def dev(self, node: str, i: int) -> str:
        """The name of ``node``'s ``i``-th interface (its links in file order)."""
        return f"eth{i}"

    def enter(self, node: str) -> list[str]:
        """The command prefix that runs a command in ``node``'s network namespace."""
        return ["ip", "netns", "exec", self.ns(node)]

    def link_ends(self, index: int) -> tuple[tuple[str, str], tuple[str, str]]:
        """(node, interface) of both ends of link ``index`` (file order)."""
        if not 0 <= index < len(self.topo.links):
            raise PanError(f"lab {self.topo.name} has no link {index}")
        ifaces = {n: 0 for n in self.topo.nodes}
        for i, ln in enumerate(self.topo.links):
            ends = ((ln.a, self.dev(ln.a, ifaces[ln.a])), (ln.b, self.dev(ln.b, ifaces[ln.b])))
            if i == index:
                return ends
            ifaces[ln.a] += 1
            ifaces[ln.b] += 1
        raise AssertionError("unreachable")

    def set_link(self, index: int, up: bool) -> None:
        """Take link ``index`` down (both interfaces; nothing crosses it) or bring it back up."""
        for node, dev in self.link_ends(index):
            run_command([*self.enter(node), "ip", "link", "set", dev, "up" if up else "down"])

    def sign(self, code: CodeObject) -> CodeObject:
        """``code`` signed with the lab's key, which every node trusts."""
        return code.signed(self.key)

    def stats(self) -> dict[str, dict[str, object]]:
        return {name: c.stats() for name, c in self.clients.items()}

    # ------------------------------------------------------------------ tear down
    def close(self) -> None:
        for c in self.clients.values():
            c.close()  # never raises: a link that is already gone is closed
        self.clients.clear()
        if self.rec is not None:
            teardown(self.rec)
            self.rec = None
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()
        if self.reaper is not None:
            try:
                self.reaper.wait(10)  # it exits within a second of the record going
            except subprocess.TimeoutExpired:
                pass
            self.reaper = None

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
