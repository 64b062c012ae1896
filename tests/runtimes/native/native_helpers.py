"""Helpers for the native runtime tests (a unique module name: conftest is not importable by tests)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pan_native.toolchain import include_dir
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import SegmentPool
from pan_runtime.node.env import Environment
from pan_runtime.node.softstate import SoftState

SOURCES = Path(__file__).with_name("sources")


class FakeNode:
    """The node services PniServer needs, recorded for assertions."""

    def __init__(self) -> None:
        self.address = NodeAddress(bytes(range(16)))
        self.clock = 1_000
        self.states: dict[bytes, SoftState] = {}
        self.sent: list[tuple[NodeAddress, bytes]] = []

    def now_ns(self) -> int:
        self.clock += 1
        return self.clock

    def soft_state(self, code: CodeObject) -> SoftState:
        return self.states.setdefault(code.name, SoftState())

    def refused(self, code: CodeObject, reason: str) -> None:
        pass

    def send_toward(self, env: Environment, dest: NodeAddress, body: Any) -> int:
        self.sent.append((dest, body.tobytes()))
        return 0

    def neighbor_addresses(self) -> list[NodeAddress]:
        return [NodeAddress(bytes([9] * 16))]


class TrackingPool(SegmentPool):
    """A segment pool that releases every segment the test took before it closes."""

    def __init__(self) -> None:
        super().__init__(2048, 128)
        self.taken: list[Any] = []

    def allocate(self, length: int | None = None) -> Any:
        seg = super().allocate(length)
        self.taken.append(seg)
        return seg

    def close(self) -> None:
        for seg in self.taken:
            while seg.live:
                seg.release()
        super().close()


def compile_c(src: Path | str, out_dir: Path, flags: Sequence[str] = ("-O2", "-fPIC"), name: str = "x") -> bytes:
    """Compile one C file (a path, or source text) with ``flags``; returns the object bytes."""
    if isinstance(src, str):
        path = out_dir / f"{name}.c"
        path.write_text(src)
    else:
        path = src
    out = out_dir / f"{name}-{abs(hash(tuple(flags)))}.o"
    subprocess.run(
        ["cc", "-c", *flags, f"-I{include_dir()}", "-fno-asynchronous-unwind-tables", "-o", str(out), str(path)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def make_env(pool: SegmentPool, data: bytes, code: CodeObject | None = None) -> Environment:
    env = Environment()
    seg = pool.allocate(len(data))
    seg.view()[:] = data
    env.body = seg
    env.length = len(data)
    env.handles[1] = seg
    env.code = code
    return env
