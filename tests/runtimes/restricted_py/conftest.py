"""Fixtures for the restricted_py runtime tests: a small in-memory node behind the real PniHost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pan_restricted_py.runtime import RestrictedPyCode, RestrictedPyRuntime
from pan_runtime.address import NodeAddress
from pan_runtime.capsule import Capsule
from pan_runtime.codeobj import CodeObject
from pan_runtime.env import Budget, Environment, Origin
from pan_runtime.pni import NOT_FOUND, PniHost
from pan_runtime.segments import Segment
from pan_runtime.softstate import SoftState

HERE = NodeAddress.from_int(0x0A000001)
HOME = NodeAddress.from_int(0x0A000002)
PREV = NodeAddress.from_int(0x0A000003)
BUDGET = Budget(time_ms=200.0, steps=20_000)


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


def py_code(source: str, **kw: Any) -> CodeObject:
    return CodeObject.create("restricted_py", source.encode(), **kw)


def new_env(code: CodeObject, body: bytes, budget: Budget | None = None,
             origin: Origin = Origin.NETWORK, link: Any = None) -> Environment:
    env = Environment()
    capsule = Capsule(code.name, HOME, Segment.owned(body))
    return env.setup(code, capsule, origin, link, PREV, budget or BUDGET)


@pytest.fixture
def make_env() -> Callable[..., Environment]:
    """``make_env(code, body, ...)``: an environment set up as the node would."""
    return new_env


@pytest.fixture
def addr() -> dict[str, NodeAddress]:
    return {"here": HERE, "home": HOME, "prev": PREV}


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def host(node: FakeNode) -> PniHost:
    return PniHost(node)


@pytest.fixture
def runtime() -> RestrictedPyRuntime:
    rt = RestrictedPyRuntime()
    yield rt
    rt.close()


@pytest.fixture
def load(runtime: RestrictedPyRuntime, host: PniHost) -> Callable[..., RestrictedPyCode]:
    """``load(source, **manifest)``: compile and load a source string."""

    def go(source: str, deps: tuple[Any, ...] = (), **kw: Any) -> RestrictedPyCode:
        return runtime.load(py_code(source, **kw), list(deps), host)

    return go


@pytest.fixture
def run(host: PniHost) -> Callable[..., int]:
    """``run(loaded, body)``: one accept the way the node makes it."""

    def go(loaded: RestrictedPyCode, body: bytes = bytes(64), budget: Budget | None = None,
           origin: Origin = Origin.NETWORK, link: Any = None) -> int:
        env = new_env(loaded.code, body, budget, origin, link)
        host.current = env
        try:
            return loaded.accept(env)
        finally:
            env.clear()

    return go
