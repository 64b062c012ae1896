"""Helpers for the wasm runtime tests: a small in-memory node, WAT code objects, environments."""

from __future__ import annotations

from typing import Any

import wasmtime

from pan_runtime.address import NodeAddress
from pan_runtime.capsule import Capsule
from pan_runtime.codeobj import CodeObject
from pan_runtime.env import Budget, Environment, Origin
from pan_runtime.pni import NOT_FOUND
from pan_runtime.segments import Segment
from pan_runtime.softstate import SoftState

HERE = NodeAddress.from_int(0x0A000001)
HOME = NodeAddress.from_int(0x0A000002)
PREV = NodeAddress.from_int(0x0A000003)

FORWARD_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32) i32.const 2))
"""


class FakeNode:
    """Just enough of ``NodeServices`` to run code: records sends, serves soft state."""

    def __init__(self) -> None:
        self.address = HERE
        self.sent: list[tuple[str, NodeAddress, bytes]] = []
        self.states: dict[bytes, SoftState] = {}
        self.deps: dict[tuple[bytes, int], Any] = {}
        self.clock = 1_000_000

    def now_ns(self) -> int:
        self.clock += 1
        return self.clock

    def soft_state(self, code: CodeObject) -> SoftState:
        return self.states.setdefault(code.name, SoftState())

    def send_toward(self, env: Environment, dest: NodeAddress, body: Segment) -> int:
        self.sent.append(("toward", dest, body.tobytes()))
        return 0

    def send_neighbor(self, env: Environment, neighbor: NodeAddress, body: Segment) -> int:
        self.sent.append(("neighbor", neighbor, body.tobytes()))
        return 0

    def deliver(self, env: Environment, token: int, port: int, body: Segment) -> int:
        return 0

    def link_token(self, code: CodeObject, link: Any) -> int:
        return 0x1234

    def mtu_toward(self, dest: NodeAddress) -> int:
        return 1400

    def neighbor_addresses(self) -> list[NodeAddress]:
        return [PREV]

    def route_lookup(self, dest: NodeAddress) -> tuple[NodeAddress, int] | None:
        return (PREV, 1)

    def route_set(self, code: CodeObject, dest: NodeAddress, next_hop: NodeAddress, metric: int) -> int:
        return 0

    def dep_call(self, code: CodeObject, dep: int, export: str, a0: int, a1: int) -> int:
        loaded = self.deps.get((code.name, dep))
        if loaded is None:
            return NOT_FOUND
        return loaded.call_export(export, a0, a1)


def wat_code(text: str, **kw: Any) -> CodeObject:
    return CodeObject.create("wasm", bytes(wasmtime.wat2wasm(text)), **kw)


def make_env(
    code: CodeObject, body: bytes, budget: Budget | None = None, origin: Origin = Origin.NETWORK
) -> Environment:
    env = Environment()
    capsule = Capsule(code.name, HOME, Segment.owned(body))
    return env.setup(code, capsule, origin, None, PREV, budget or BUDGET)


BUDGET = Budget(time_ms=20.0, fuel=2_000_000, memory_bytes=1 << 20)
