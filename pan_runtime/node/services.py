"""The services a node offers its PNI host (``pni.NodeServices``): sending, delivering to
applications, link tokens, routes, soft state and calls into dependencies.

The host checks the code's arguments and turns handles into segments; these methods do what
the call asks of the node and answer with a PNI status. They also own the node's neighbours,
its routing table, its application links and the one route-to-link lookup (``next_hop``)
that forwarding, sending and ``node_mtu`` share.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import HEADER_SIZE, Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment
from pan_runtime.errors import CodeObjectError, RuntimeFault
from pan_runtime.node import pni
from pan_runtime.node.env import Environment
from pan_runtime.node.links import AppLink, Delivery, NetLink
from pan_runtime.node.routing import RoutingTable
from pan_runtime.node.softstate import SoftState

if TYPE_CHECKING:
    from pan_runtime.node.node import Node

__all__ = ["Services"]


class Services:
    """What the PNI host asks of one node; implements ``pan_runtime.node.pni.NodeServices``."""

    def __init__(self, node: Node):
        self._node = node
        self.address = node.address
        self.now_ns = node.now_ns
        #: the node's configuration and pool, for runtimes that size themselves from them
        self.config = node.config
        self.pool = node.pool
        self.routes = RoutingTable()
        self.neighbors: dict[NodeAddress, NetLink] = {}
        self.apps: list[AppLink] = []
        self._tokens: dict[tuple[bytes, int], weakref.ref[AppLink]] = {}
        self._link_tokens: dict[tuple[bytes, int], int] = {}

    def close(self) -> None:
        """Close every application link and netlink (the node is closing)."""
        for app in list(self.apps):
            app.close()
        for link in set(self.neighbors.values()):
            link.close()

    # ------------------------------------------------------------------ routes and links
    def add_neighbor(self, address: NodeAddress, link: NetLink) -> None:
        """Reach neighbour ``address`` over ``link`` (with a route to it unless one exists)."""
        self.neighbors[address] = link
        self.routes.generation += 1  # what a route's next hop reaches changed (see snapshot.generation)
        if self.routes.lookup(address) is None:
            self.routes.add_static(address, address, 1)

    def next_hop(self, dest_raw: bytes) -> tuple[NodeAddress, NetLink | None] | None:
        """The next hop toward ``dest_raw`` and the link to it (None: no such link), or None
        when no route leads there."""
        route = self.routes.lookup_raw(dest_raw)
        if route is None:
            return None
        hop = route.next_hop
        return hop, self.neighbors.get(hop)

    def mtu_toward(self, dest: NodeAddress) -> int:
        found = self.next_hop(dest.raw)
        if found is None or found[1] is None:
            return pni.NO_ROUTE
        return max(0, found[1].mtu - HEADER_SIZE)

    def neighbor_addresses(self) -> list[NodeAddress]:
        return sorted(self.neighbors)

    def route_lookup(self, dest: NodeAddress) -> tuple[NodeAddress, int] | None:
        r = self.routes.lookup(dest)
        return None if r is None else (r.next_hop, r.metric)

    def route_set(self, code: CodeObject, dest: NodeAddress, next_hop: NodeAddress, metric: int) -> int:
        if next_hop not in self.neighbors:
            return pni.NOT_FOUND
        if dest == self.address:
            return pni.DENIED
        return pni.OK if self.routes.set_dynamic(dest, next_hop, metric, code.name) else pni.DENIED

    # ------------------------------------------------------------------ sending
    def send_toward(self, env: Environment, dest: NodeAddress, body: Segment) -> int:
        """Send a new capsule of the running code toward ``dest`` (to this node: queue it)."""
        return self._send_new(env, body, dest, direct=False)

    def send_neighbor(self, env: Environment, neighbor: NodeAddress, body: Segment) -> int:
        """Send a new capsule of the running code straight to the neighbour ``neighbor``."""
        return self._send_new(env, body, neighbor, direct=True)

    def _send_new(self, env: Environment, body: Segment, dest: NodeAddress, direct: bool) -> int:
        cap_src = env.capsule
        code = env.code
        if cap_src is None or code is None:
            return pni.DENIED
        if not direct and dest == self.address:
            return self._queue_here(code, cap_src, body)
        if direct:
            hop, link = dest, self.neighbors.get(dest)
            if link is None:
                return pni.NOT_FOUND
        else:
            found = self.next_hop(dest.raw)
            if found is None or found[1] is None:
                return pni.NO_ROUTE
            hop, link = found
        cap = Capsule(cap_src.name, cap_src.home, body.retain(), hop_limit=self.config.hop_limit)
        try:
            buffers = cap.buffers()
            if sum(len(b) for b in buffers) > link.mtu:
                return pni.TOO_BIG
            # a link that loses it is like any lost datagram: the send itself succeeded
            return self._sent(code, 1 if link.send(buffers, hop) else 0)
        finally:
            cap.release()

    def _queue_here(self, code: CodeObject, cap_src: Capsule, body: Segment) -> int:
        """Queue a capsule the running code sends to this node, as if it arrived. It waits in a
        pool buffer the code object holds until it is evaluated: over the code object's quota,
        or with only the pool's reserve free, the code gets ``NO_SPACE`` (counted)."""
        node = self._node
        entry = node.cache.peek(code.name)
        if entry is None:
            return pni.DENIED
        cap = Capsule(cap_src.name, cap_src.home, body.retain(), hop_limit=self.config.hop_limit)
        try:
            buffers = cap.buffers()
            size = sum(len(b) for b in buffers)
            if size > node.pool.buffer_size:
                # as a datagram that size would be: counted and lost, the send itself succeeded
                node.stats.received += 1
                node.count_drop("too_big", f"{size} bytes > pool buffer {node.pool.buffer_size}")
                return self._sent(code, 0)
            seg = node.buffers.allocate(entry.buffers, size)
            if not isinstance(seg, Segment):
                node.count_refusal(entry, seg)
                return pni.NO_SPACE
            view = seg.view()
            pos = 0
            for b in buffers:
                view[pos : pos + len(b)] = b
                pos += len(b)
        finally:
            cap.release()
        node.queue.receive_segment(seg, self.address)
        return self._sent(code, 0)

    def _sent(self, code: CodeObject, on_wire: int) -> int:
        self._node.stats.sent += on_wire
        entry = self._node.cache.peek(code.name)
        if entry is not None:
            entry.stats.sent += 1
        return pni.OK

    # ------------------------------------------------------------------ applications
    def attach(self, name: str, sink: Callable[[Delivery], None] | None, uid: int | None = None, pid: int | None = None) -> AppLink:
        """A new application link on the node (``uid``/``pid``: its peer; default this process)."""
        link = AppLink(self._node, name, sink, uid=uid, pid=pid)
        self.apps.append(link)
        return link

    def detach(self, link: AppLink) -> None:
        """Forget an application link; tokens that named it die with it."""
        link.closed = True
        if link in self.apps:
            self.apps.remove(link)
        self.forget_link(link)

    def link_token(self, code: CodeObject, link: Any) -> int:
        """The unforgeable token that names application ``link`` to ``code`` (made once)."""
        key = (code.name, id(link))
        tok = self._link_tokens.get(key)
        if tok is None:
            tok = secrets.randbits(63) or 1
            self._link_tokens[key] = tok
            self._tokens[(code.name, tok)] = weakref.ref(link)
        return tok

    def resolve_token(self, code_name: bytes, token: int) -> AppLink | None:
        """The open application link ``token`` names for the code object ``code_name``."""
        ref = self._tokens.get((code_name, token))
        link = ref() if ref is not None else None
        if link is None or link.closed:
            return None
        return link

    def deliver(self, env: Environment, token: int, port: int, body: Segment) -> int:
        code = env.code
        if code is None:
            return pni.DENIED
        link = self.resolve_token(code.name, token)
        if link is None:
            return pni.DENIED
        name = env.capsule.name if env.capsule is not None else code.name
        if not link.deliver(Delivery(port, body.tobytes(), name)):
            return pni.DENIED
        node = self._node
        node.stats.delivered += 1
        entry = node.cache.peek(code.name)
        if entry is not None:
            entry.stats.delivered += 1
        return pni.OK

    def forget_code(self, code_name: bytes) -> None:
        """Drop every token a code object held (it was unloaded)."""
        for key in [k for k in self._tokens if k[0] == code_name]:
            del self._tokens[key]
        for key in [k for k in self._link_tokens if k[0] == code_name]:
            del self._link_tokens[key]

    def forget_link(self, link: AppLink) -> None:
        """Drop every token naming ``link`` (it was detached) and those of dead links."""
        for key in [k for k, ref in self._tokens.items() if ref() is link or ref() is None]:
            del self._tokens[key]
        for key in [k for k in self._link_tokens if k[1] == id(link)]:
            del self._link_tokens[key]

    # ------------------------------------------------------------------ state and dependencies
    def refused(self, code: CodeObject, reason: str) -> None:
        """Count a resource the host refused ``code`` (``pan_runtime.node.quota.Refusal``)."""
        self._node.count_refusal(self._node.cache.peek(code.name), reason)

    def soft_state(self, code: CodeObject) -> SoftState:
        entry = self._node.cache.peek(code.name)
        if entry is None:
            raise CodeObjectError(f"code object {code.short_name} is not installed")
        return entry.state

    def dep_call(self, code: CodeObject, dep: int, export: str, a0: int, a1: int) -> int:
        """Call ``export`` of the code's ``dep``-th dependency; its fault is counted against it."""
        deps = code.manifest.dependencies
        if not 0 <= dep < len(deps):
            return pni.NOT_FOUND
        node = self._node
        entry = node.cache.peek(deps[dep])
        if entry is None:
            return pni.NOT_FOUND
        try:
            return node.codes.call_export(entry, export, a0, a1)
        except RuntimeFault as fault:
            node.count_fault(entry, fault)
            return pni.NOT_FOUND
