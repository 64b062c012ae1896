"""Fixtures for the native runtime tests: a C compiler, a PNI host over a fake node, a pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from native_helpers import FakeNode, TrackingPool, compile_c

from pan_runtime.node.pni import PniServer


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def host(node: FakeNode) -> PniServer:
    return PniServer(node)  # type: ignore[arg-type]


@pytest.fixture
def pool():
    with TrackingPool() as p:
        yield p


@pytest.fixture
def cc(tmp_path: Path) -> Callable[..., bytes]:
    def build(src: Path | str, flags: Sequence[str] = ("-O2", "-fPIC"), name: str = "x") -> bytes:
        return compile_c(src, tmp_path, flags, name)

    return build
