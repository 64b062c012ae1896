"""An in-process network: several nodes in one process joined by in-process links, with
static routes computed from the topology. The embedded default for tests, ``pan demo``
and the harness's ``inproc`` topology.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import LinkError
from pan_runtime.node.links import InprocLink, Scheduler
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.node.trust import CodeOrigin, TrustPolicy
from pan_runtime.plugin.plugins import Plugins

__all__ = ["ManualClock", "Network"]


class ManualClock:
    """A clock that moves only when told to (for delay and TTL tests)."""

    def __init__(self, start_ns: int = 1_000_000_000):
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


class Network:
    """Nodes, links and routes in one process. Close it (or use ``with``) to free the nodes."""

    def __init__(
        self,
        *,
        config: NodeConfig | None = None,
        trust: TrustPolicy | None = None,
        plugins: Plugins | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        seed: int = 0,
    ):
        self.config = config
        self.trust = trust
        self.plugins = plugins
        self.clock = clock
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.links: list[InprocLink] = []
        self.edges: set[tuple[int, int]] = set()
        self.scheduler = Scheduler()
        self.rng = random.Random(seed)

    # -- building ---------------------------------------------------------------------
    def add_node(self, name: str | None = None, address: NodeAddress | None = None) -> Node:
        index = len(self.nodes) + 1
        addr = address or NodeAddress.from_int(index)
        node = Node(addr, config=self.config, trust=self.trust, plugins=self.plugins, clock=self.clock, name=name or f"n{index}")
        # capsules for workers (process isolation) are handed over and their verdicts polled
        # while ``run`` has nothing else to do: one node's worker never holds up the others
        node.offload.asynchronous = True
        node.background.append(node.offload.poll)
        self.nodes.append(node)
        self.by_name[node.name] = node
        return node

    def connect(self, a: Node | str, b: Node | str, *, loss: float = 0.0, delay_ns: int = 0, mtu: int = 65507) -> None:
        na, nb = self._node(a), self._node(b)
        if na is nb:
            raise LinkError("cannot link a node to itself")
        for src, dst in ((na, nb), (nb, na)):
            link = InprocLink(src, dst, mtu=mtu, loss=loss, delay_ns=delay_ns, scheduler=self.scheduler, rng=self.rng)
            src.add_neighbor(dst.address, link)
            self.links.append(link)
        ia, ib = self.nodes.index(na), self.nodes.index(nb)
        self.edges.add((min(ia, ib), max(ia, ib)))

    def _node(self, n: Node | str) -> Node:
        if isinstance(n, Node):
            return n
        try:
            return self.by_name[n]
        except KeyError:
            raise LinkError(f"no node named {n!r} in this network") from None

    def compute_routes(self) -> None:
        """Static shortest-path routes between every pair of nodes (BFS over the links)."""
        adj: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for a, b in sorted(self.edges):
            adj[a].append(b)
            adj[b].append(a)
        for src in range(len(self.nodes)):
            first: dict[int, int] = {}
            dist = {src: 0}
            q = deque([src])
            while q:
                u = q.popleft()
                for v in adj[u]:
                    if v not in dist:
                        dist[v] = dist[u] + 1
                        first[v] = v if u == src else first[u]
                        q.append(v)
            node = self.nodes[src]
            for dst, hop in first.items():
                node.add_route(self.nodes[dst].address, self.nodes[hop].address, dist[dst])

    @classmethod
    def line(cls, n: int, **kw: object) -> Network:
        """``n`` nodes in a row: n1 - n2 - ... - nN."""
        net = cls(**kw)  # type: ignore[arg-type]
        nodes = [net.add_node() for _ in range(n)]
        for a, b in zip(nodes, nodes[1:], strict=False):
            net.connect(a, b)
        net.compute_routes()
        return net

    @classmethod
    def star(cls, leaves: int, **kw: object) -> Network:
        """A hub (n1) with ``leaves`` nodes around it."""
        net = cls(**kw)  # type: ignore[arg-type]
        hub = net.add_node()
        for _ in range(leaves):
            net.connect(hub, net.add_node())
        net.compute_routes()
        return net

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str]], **kw: object) -> Network:
        """Nodes named in ``edges`` (pairs of names), linked as listed."""
        net = cls(**kw)  # type: ignore[arg-type]
        for a, b in edges:
            for name in (a, b):
                if name not in net.by_name:
                    net.add_node(name)
            net.connect(a, b)
        net.compute_routes()
        return net

    # -- code -------------------------------------------------------------------------
    def install(self, code: CodeObject, nodes: Sequence[Node] | None = None, *, pin: bool = False) -> None:
        """Install ``code`` on the given nodes (default: all) as local code."""
        for node in nodes or self.nodes:
            node.install(code, origin=CodeOrigin.LOCAL, pin=pin)

    # -- running ----------------------------------------------------------------------
    def pending(self) -> int:
        return sum(len(n.queue) for n in self.nodes) + len(self.scheduler)

    def run(self, *, max_capsules: int | None = None, timeout_s: float = 30.0) -> int:
        """Process capsules until every queue is empty and nothing is in flight (or a limit)."""
        done = 0
        deadline = time.monotonic() + timeout_s
        while True:
            self.scheduler.due(self.clock())
            progressed = 0
            for node in self.nodes:
                if node.queue:
                    left = None if max_capsules is None else max_capsules - done
                    n = node.process(left)
                    progressed += n
                    done += n
                    if max_capsules is not None and done >= max_capsules:
                        return done
            if progressed:
                continue
            nxt = self.scheduler.next_time()
            if nxt is None:
                # work finishing in other processes (demand-loaded code compiling) may queue more
                pending = [b() for n in self.nodes for b in n.background]
                if self.pending():
                    continue
                if any(pending) and time.monotonic() <= deadline:
                    time.sleep(0.002)
                    continue
                return done
            if isinstance(self.clock, ManualClock):
                self.clock.now = max(self.clock.now, nxt)
            elif time.monotonic() > deadline:
                return done
            else:
                time.sleep(max(0.0, (nxt - self.clock()) / 1e9))

    def close(self) -> None:
        for n in self.nodes:
            n.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
