"""Fixtures for the restricted_py runtime tests: a small in-memory node behind the real PniServer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pan_restricted_py.code import RestrictedPyCode
from pan_restricted_py.runtime import RestrictedPyRuntime
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.pni import PniServer
from pan_runtime.testing.stubnode import HERE, HOME, PREV, StubNode
from pan_runtime.testing.stubnode import make_env as stub_env

#: steps stop runaway code; the time budget is out of reach, so a loaded machine cannot stop a
#: run the test expects the steps (or a guard) to stop
BUDGET = Budget(time_ms=60_000.0, steps=20_000)


FakeNode = StubNode


def py_code(source: str, **kw: Any) -> CodeObject:
    return CodeObject.create("restricted_py", source.encode(), **kw)


def new_env(code: CodeObject, body: bytes, budget: Budget | None = None,
             origin: Origin = Origin.NETWORK, link: Any = None) -> Environment:
    return stub_env(code, body, budget or BUDGET, origin, link)


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
def host(node: FakeNode) -> PniServer:
    return PniServer(node)


@pytest.fixture
def runtime() -> RestrictedPyRuntime:
    rt = RestrictedPyRuntime()
    yield rt
    rt.close()


@pytest.fixture
def load(runtime: RestrictedPyRuntime, host: PniServer) -> Callable[..., RestrictedPyCode]:
    """``load(source, **manifest)``: compile and load a source string."""

    def go(source: str, deps: tuple[Any, ...] = (), **kw: Any) -> RestrictedPyCode:
        return runtime.load(py_code(source, **kw), list(deps), host)

    return go


@pytest.fixture
def run(host: PniServer) -> Callable[..., int]:
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
