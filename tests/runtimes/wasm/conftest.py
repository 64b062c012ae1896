"""Fixtures for the wasm runtime tests: the real PniServer over a fake node (see wasm_helpers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from wasm_helpers import FORWARD_WAT, FakeNode, make_env, wat_code

from pan_runtime.node.env import Budget
from pan_runtime.node.pni import PniServer
from pan_wasm.code import WasmCode
from pan_wasm.runtime import WasmRuntime


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def host(node: FakeNode) -> PniServer:
    return PniServer(node)


@pytest.fixture
def runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime()
    yield rt
    rt.close()


@pytest.fixture
def fuel_runtime() -> Iterator[WasmRuntime]:
    rt = WasmRuntime({"budget": "fuel"})
    yield rt
    rt.close()


@pytest.fixture
def run(runtime: WasmRuntime, host: PniServer) -> Callable[..., int]:
    """``run(loaded, body)``: one accept the way the node makes it."""

    def go(loaded: WasmCode, body: bytes = bytes(64), budget: Budget | None = None) -> int:
        env = make_env(loaded.code, body, budget)
        host.current = env
        try:
            return loaded.accept(env)
        finally:
            env.clear()

    return go


@pytest.fixture
def forward(runtime: WasmRuntime, host: PniServer) -> WasmCode:
    return runtime.load(wat_code(FORWARD_WAT), [], host)
