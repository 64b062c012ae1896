"""What the batch-loop tests share: the runtimes, the faulty test code and the n1 - n2 pair
(``test_batchloop.py``: the loop over a batch; ``test_batchloop_serve.py``: the worker's
serve cycle in C)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
SOURCES = Path(__file__).parent / "batchloop_sources"
SOURCE = {"native": "faulty.c", "wasm": "faulty.c", "restricted_py": "faulty.py", "jvm": "Capsule.java"}
PORT = 7


def outcome(stats: dict) -> dict:
    """A code object's counts without its times."""
    return {k: v for k, v in stats.items() if not k.startswith("time_")}


def pair(runtime: str, mechanism: str, batch: int) -> Network:
    """n1 - n2, ``runtime`` in ``mechanism`` on n2 (capsules from n1 reach it from the network)."""
    net = Network(plugins=default_plugins(), config=NodeConfig(budget=Budget(time_ms=200)))
    net.add_node()
    net.config = NodeConfig(isolation={runtime: mechanism}, budget=Budget(time_ms=200), batch=batch)
    net.add_node()
    net.connect("n1", "n2")
    net.compute_routes()
    return net


def build_faulty(runtime: str, exports: Sequence[str] = ()) -> CodeObject:
    """The faulty test code object (first body byte 1: it faults) for ``runtime``, with ``exports``."""
    src = SOURCES / SOURCE[runtime]
    builder = default_plugins().builders.find(runtime, src.suffix)
    return builder.build(BuildRequest([src], runtime, [], list(exports), f"faulty-{runtime}"))
