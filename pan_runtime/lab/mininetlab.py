"""A lab on Mininet: the same topology file, its hosts and links built by Mininet.

Mininet (Debian's ``mininet`` package) builds one host per node and a veth pair per link,
linked directly: no switch, no controller. It runs in a helper (``mininet_hosts.py``, under
the Python that can import Mininet) that holds the network until its standard input closes,
so the hosts go when ``pan lab up`` goes, however it ends. The nodes are started inside the
hosts with Mininet's ``mnexec -a``; everything else (node configurations, addresses, the
record, the reaper, the experiments) is the network-namespace lab's. Interfaces are named
``<node>-eth0``, ``<node>-eth1``, ... (Mininet's names). One Mininet network on the machine at
a time (``MininetSession``: a lab waits for a bench on Mininet, and the other way round), and
the machine-wide limits Mininet raises are put back when the lab goes down.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
from collections.abc import Callable
from pathlib import Path

from pan_runtime.bench.mininet_session import MininetSession
from pan_runtime.bench.testbed import mininet_python, mininet_unavailable
from pan_runtime.errors import PanError

from .netns import NetnsLab
from .record import LabRecord
from .shaping import tc_commands
from .topology import Topology

__all__ = ["MininetLab", "BUILD_TIMEOUT"]

#: hang guard for Mininet building the hosts and links (many on a busy machine)
BUILD_TIMEOUT = 300.0
#: Mininet names a host's interfaces ``<host>-eth<i>``, and Linux allows 15 bytes
MAX_HOST_NAME = 10


class MininetLab(NetnsLab):
    """A topology brought up on Mininet hosts; a context manager that tears it down."""

    backend = "mininet"

    def __init__(self, topo: Topology, log_level: str = "warning", progress: Callable[[str], None] | None = None):
        super().__init__(topo, log_level, progress)
        self.helper: subprocess.Popen[str] | None = None
        self.host_pids: dict[str, int] = {}
        self.session: MininetSession | None = None

    def up(self) -> LabRecord:
        why = mininet_unavailable()
        if why:
            raise PanError(f"a lab on Mininet is unavailable: {why}")
        long = [n for n in self.topo.nodes if len(n) > MAX_HOST_NAME]
        if long:
            raise PanError(f"lab {self.topo.name}: on Mininet node names have at most {MAX_HOST_NAME} characters "
                           f"(its interfaces are <node>-eth<i>); too long: {', '.join(long[:5])}")
        self.session = MininetSession()
        try:
            return super().up()
        except BaseException:
            self._end_session()
            raise

    def _end_session(self) -> None:
        """Put back the machine-wide limits and let the next Mininet session in."""
        session, self.session = self.session, None
        failed = session.close() if session is not None else []
        if failed:
            raise PanError(f"lab {self.topo.name}: clean-up failed: " + "; ".join(failed))

    def ns(self, node: str) -> str:
        return f"mininet:{node}"

    def dev(self, node: str, i: int) -> str:
        return f"{node}-eth{i}"

    def enter(self, node: str) -> list[str]:
        return ["mnexec", "-a", str(self.host_pids[node])]

    def _spec(self) -> dict[str, object]:
        first: dict[str, str] = {}
        links = []
        commands: dict[str, list[list[str]]] = {n: [] for n in self.topo.nodes}
        ifaces = {n: 0 for n in self.topo.nodes}
        for ln, (ip_a, ip_b, plen) in zip(self.topo.links, self.addr.links, strict=True):
            ends = {}
            for side, node, ip in (("a", ln.a, ip_a), ("b", ln.b, ip_b)):
                dev = self.dev(node, ifaces[node])
                ifaces[node] += 1
                first.setdefault(node, f"{ip}/{plen}")
                ends[f"dev_{side}"], ends[f"ip_{side}"] = dev, f"{ip}/{plen}"
                commands[node] += tc_commands(None, dev, ln.shaping)
            links.append({"a": ln.a, "b": ln.b, **ends})
        hosts = [{"name": n, "ip": first.get(n)} for n in self.topo.nodes]
        return {"hosts": hosts, "links": links, "commands": {n: c for n, c in commands.items() if c}}

    def _build(self) -> None:
        rec = self.rec
        assert rec is not None
        rec.backend = self.backend
        spec = Path(rec.dir) / "mininet.json"
        spec.write_text(json.dumps(self._spec()))
        py = mininet_python()
        assert py is not None
        self.progress(f"lab {self.topo.name}: Mininet builds {len(self.topo.nodes)} hosts, {len(self.topo.links)} links")
        self.helper = subprocess.Popen(
            [py, str(Path(__file__).with_name("mininet_hosts.py")), str(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, cwd=rec.dir,
        )
        rec.helper = self.helper.pid
        rec.save()
        assert self.helper.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.helper.stdout, selectors.EVENT_READ)
            line = self.helper.stdout.readline() if sel.select(BUILD_TIMEOUT) else ""
        try:
            doc = json.loads(line) if line.startswith("{") else {}
        except ValueError:
            doc = {}
        if "pids" not in doc:
            self.helper.kill()
            err = self.helper.communicate(timeout=30)[1]
            raise PanError(f"Mininet did not build lab {self.topo.name}: {doc.get('error') or err.strip()[-800:] or 'no output'}")
        self.host_pids = {n: int(p) for n, p in doc["pids"].items()}
        rec.hosts = {n: {"pid": p, "netns": os.stat(f"/proc/{p}/ns/net").st_ino} for n, p in self.host_pids.items()}
        rec.save()

    def close(self) -> None:
        super().close()  # the record's teardown stops the helper
        h = self.helper
        if h is not None:
            for f in (h.stdin, h.stdout, h.stderr):
                if f is not None:
                    f.close()
            try:
                h.wait(30)
            except subprocess.TimeoutExpired:
                h.kill()
                h.wait(10)
            self.helper = None
        self._end_session()
