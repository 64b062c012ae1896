"""The routing table: next hop toward each node address, static routes before learned ones."""

from __future__ import annotations

from dataclasses import dataclass

from pan_runtime.data.address import NodeAddress

__all__ = ["Route", "RoutingTable"]


@dataclass(frozen=True)
class Route:
    dest: NodeAddress
    next_hop: NodeAddress
    metric: int
    static: bool
    learned_by: bytes = b""  # code object name that installed a dynamic route


class RoutingTable:
    """Static routes come from configuration; dynamic ones from routing code (``route_set``)."""

    def __init__(self, max_dynamic: int = 4096):
        self._routes: dict[NodeAddress, Route] = {}
        self._by_raw: dict[bytes, Route] = {}  # the same routes keyed by wire bytes, for the per-capsule lookup
        self.max_dynamic = max_dynamic
        self._default: NodeAddress | None = None
        #: bumped on every change, so copies of the table (the UDP fast path's) know to refresh
        self.generation = 0

    @property
    def default(self) -> NodeAddress | None:
        """Next hop for destinations without a route (None: no default route)."""
        return self._default

    @default.setter
    def default(self, hop: NodeAddress | None) -> None:
        self._default = hop
        self.generation += 1
        self.generation += 1

    def add_static(self, dest: NodeAddress, next_hop: NodeAddress, metric: int = 1) -> None:
        self._routes[dest] = self._by_raw[dest.raw] = Route(dest, next_hop, metric, True)
        self.generation += 1

    def set_dynamic(self, dest: NodeAddress, next_hop: NodeAddress, metric: int, by: bytes = b"") -> bool:
        """Install or update a learned route; never overrides a static one. False when refused."""
        cur = self._routes.get(dest)
        if cur is not None and cur.static:
            return False
        if cur is None and sum(1 for r in self._routes.values() if not r.static) >= self.max_dynamic:
            return False
        if cur is not None and cur.next_hop == next_hop and cur.metric == metric and cur.learned_by == by:
            return True  # a refresh: nothing changed
        self._routes[dest] = self._by_raw[dest.raw] = Route(dest, next_hop, metric, False, by)
        self.generation += 1
        return True

    def lookup(self, dest: NodeAddress) -> Route | None:
        r = self._routes.get(dest)
        if r is None and self.default is not None:
            return Route(dest, self.default, 0xFFFF, True)
        return r

    def lookup_raw(self, dest: bytes) -> Route | None:
        """``lookup`` by the 16 wire bytes of the address."""
        r = self._by_raw.get(dest)
        if r is None and self.default is not None:
            return Route(NodeAddress(dest), self.default, 0xFFFF, True)
        return r

    def remove(self, dest: NodeAddress) -> None:
        if self._routes.pop(dest, None) is not None:
            self.generation += 1
        self._by_raw.pop(dest.raw, None)

    def routes(self) -> list[Route]:
        return sorted(self._routes.values(), key=lambda r: r.dest.raw)

    def __len__(self) -> int:
        return len(self._routes)
