"""Helpers for the wasm runtime tests: a small in-memory node, WAT code objects, environments."""

from __future__ import annotations

from typing import Any

import wasmtime

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.testing.stubnode import HERE, HOME, PREV, StubNode
from pan_runtime.testing.stubnode import make_env as stub_env

FakeNode = StubNode
__all__ = ["HERE", "HOME", "PREV", "FakeNode"]


FORWARD_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32) i32.const 2))
"""


def wat_code(text: str, **kw: Any) -> CodeObject:
    return CodeObject.create("wasm", bytes(wasmtime.wat2wasm(text)), **kw)


def make_env(
    code: CodeObject, body: bytes, budget: Budget | None = None, origin: Origin = Origin.NETWORK
) -> Environment:
    return stub_env(code, body, budget or BUDGET, origin)


BUDGET = Budget(time_ms=20.0, fuel=2_000_000, memory_bytes=1 << 20)
