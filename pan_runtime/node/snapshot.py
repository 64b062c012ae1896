"""What a node shows a compiled fast path: a frozen snapshot of its tables, with a generation.

A fast path (``pan_runtime.net.udp_fast``) finishes common capsules without the node: it
needs the node's address, neighbours (and which of them the ledger throttles), routes,
installed code and a few limits, and nothing else. ``snapshot`` builds that view; ``generation`` says cheaply whether it is stale (it
grows whenever a route, a neighbour or the code table changes). Every capsule the fast path
does not finish goes back through one door, ``Node.hand_over``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.node.cache import CacheEntry
    from pan_runtime.node.links import NetLink
    from pan_runtime.node.node import Node

__all__ = ["FastSnapshot", "generation", "queued", "snapshot"]


@dataclass(frozen=True, slots=True)
class FastSnapshot:
    """The node's tables as a fast path may copy them; valid while ``generation`` is current."""

    #: ``generation(node)`` when this was taken
    generation: int
    #: the node's own address (16 bytes)
    address: bytes
    #: neighbours and their links
    neighbors: tuple[tuple[NodeAddress, NetLink], ...]
    #: (destination address, next hop) of every route, best first as the table keeps them
    routes: tuple[tuple[bytes, NodeAddress], ...]
    #: the next hop of the default route, if any
    default: NodeAddress | None
    #: installed code objects the fast path may run: not quarantined
    codes: tuple[CacheEntry, ...]
    #: copy each capsule before sending it (``NodeConfig.copy_on_send``)
    copy_on_send: bool
    #: the hop limit capsules this node creates start with
    hop_limit: int
    #: (neighbour, ns of the node's clock left) of every neighbour throttled now
    throttled: tuple[tuple[NodeAddress, int], ...] = ()
    #: for each of ``codes``: what the fast path calls to write a batch of its capsules into
    #: its worker's ring (``Offload.admit``), or None for code that does not run in a worker
    doors: tuple[Any, ...] = ()


def generation(node: Node) -> int:
    """A number that grows whenever the routes, neighbours, code table or throttles change."""
    return node.routes.generation + node.cache.generation + node.ledger.generation


def queued(node: Node) -> bool:
    """True while capsules wait in the node's queue (a fast path then leaves new ones to it,
    so capsules are evaluated in arrival order)."""
    return bool(node.queue)


def snapshot(node: Node) -> FastSnapshot:
    """The node's tables now."""
    routes = node.routes
    codes = tuple(e for e in node.cache if not e.breaker.open_until)
    return FastSnapshot(
        doors=tuple(node.offload.door(e) for e in codes),
        generation=generation(node),
        address=node.address.raw,
        neighbors=tuple(node.neighbors.items()),
        routes=tuple((r.dest.raw, r.next_hop) for r in routes.routes()),
        default=routes.default,
        codes=codes,
        copy_on_send=node.config.copy_on_send,
        hop_limit=node.config.hop_limit,
        throttled=tuple(node.ledger.remaining_ns()),
    )
