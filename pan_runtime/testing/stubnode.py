"""A stand-in for the node, for testing a runtime alone: the real ``PniServer`` over a small
in-memory ``NodeServices`` that records what code sends and keeps soft state per code object.

    node = StubNode()
    host = PniServer(node)
    env = make_env(code, b"body bytes")
    host.current = env
    loaded.accept(env)
"""

from __future__ import annotations

from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.pni import NOT_FOUND
from pan_runtime.node.softstate import SoftState

__all__ = ["HERE", "HOME", "PREV", "StubNode", "make_env"]

HERE = NodeAddress.from_int(0x0A000001)
HOME = NodeAddress.from_int(0x0A000002)
PREV = NodeAddress.from_int(0x0A000003)


class StubNode:
    """Just enough of ``NodeServices`` to run code: records sends and refusals, serves soft
    state and deps.

    ``deps[(code name, index)]`` maps a code object's dependency number to a ``LoadedCode``.
    """

    def __init__(self, address: NodeAddress = HERE, neighbors: list[NodeAddress] | None = None) -> None:
        self.address = address
        self.neighbors = [PREV] if neighbors is None else neighbors
        self.sent: list[tuple[str, NodeAddress, bytes]] = []
        self.delivered: list[tuple[int, int, bytes]] = []
        self.states: dict[bytes, SoftState] = {}
        self.refusals: list[tuple[bytes, str]] = []
        self.deps: dict[tuple[bytes, int], Any] = {}
        self.clock = 1_000_000

    def now_ns(self) -> int:
        self.clock += 1
        return self.clock

    def soft_state(self, code: CodeObject) -> SoftState:
        return self.states.setdefault(code.name, SoftState())

    def refused(self, code: CodeObject, reason: str) -> None:
        self.refusals.append((code.name, reason))

    def send_toward(self, env: Environment, dest: NodeAddress, body: Segment) -> int:
        self.sent.append(("toward", dest, body.tobytes()))
        return 0

    def send_neighbor(self, env: Environment, neighbor: NodeAddress, body: Segment) -> int:
        self.sent.append(("neighbor", neighbor, body.tobytes()))
        return 0

    def deliver(self, env: Environment, token: int, port: int, body: Segment) -> int:
        self.delivered.append((token, port, body.tobytes()))
        return 0

    def link_token(self, code: CodeObject, link: Any) -> int:
        return 0x1234

    def mtu_toward(self, dest: NodeAddress) -> int:
        return 1400

    def neighbor_addresses(self) -> list[NodeAddress]:
        return list(self.neighbors)

    def route_lookup(self, dest: NodeAddress) -> tuple[NodeAddress, int] | None:
        return (self.neighbors[0], 1) if self.neighbors else None

    def route_set(self, code: CodeObject, dest: NodeAddress, next_hop: NodeAddress, metric: int) -> int:
        return 0

    def dep_call(self, code: CodeObject, dep: int, export: str, a0: int, a1: int) -> int:
        loaded = self.deps.get((code.name, dep))
        if loaded is None:
            return NOT_FOUND
        return loaded.call_export(export, a0, a1)


def make_env(
    code: CodeObject,
    body: bytes | Segment,
    budget: Budget | None = None,
    origin: Origin = Origin.NETWORK,
    link: Any = None,
    prev_hop: NodeAddress | None = PREV,
) -> Environment:
    """An environment set up as the node would for a capsule of ``code`` carrying ``body``."""
    seg = body if isinstance(body, Segment) else Segment.owned(body)
    capsule = Capsule(code.name, HOME, seg)
    return Environment().setup(code, capsule, origin, link, prev_hop, budget or Budget())
