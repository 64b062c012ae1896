"""pan: an active network node that runs mobile code from several runtimes side by side.

The public API is importable from here; each name lives in the sub-package of its layer
(``docs/architecture.md`` shows the tree):

* ``pan_runtime.data``: segments, streams, addresses, capsules, code objects, keys
* ``pan_runtime.plugin``: the runtime interface, hooks, plugin discovery, builders
* ``pan_runtime.node``: the node, its PNI host, code cache, soft state, routes, trust
* ``pan_runtime.net``: UDP, the fast path, application sockets, client, demand loading, daemon
* ``pan_runtime.cli``: the ``pan`` command and the demo

Names are imported on first use, so ``import pan_runtime`` stays cheap for plugins that only
need ``hookimpl``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pan_runtime.errors import FaultReason, PanError
from pan_runtime.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from pan_runtime.data.address import NodeAddress
    from pan_runtime.data.capsule import Capsule
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.data.segments import Segment, SegmentPool
    from pan_runtime.net.application import Application
    from pan_runtime.net.client import Client
    from pan_runtime.net.network import ManualClock, Network
    from pan_runtime.node.config import NodeConfig
    from pan_runtime.node.env import Budget, Environment, Origin
    from pan_runtime.node.node import Node
    from pan_runtime.node.trust import CodeOrigin, TrustPolicy
    from pan_runtime.plugin.builders import Builder, BuildRequest
    from pan_runtime.plugin.fastentry import FastEntry
    from pan_runtime.plugin.loadjob import LoadJob
    from pan_runtime.plugin.loadlimits import LoadLimits
    from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "NodeAddress": "pan_runtime.data.address",
    "Capsule": "pan_runtime.data.capsule",
    "CodeObject": "pan_runtime.data.codeobj",
    "Segment": "pan_runtime.data.segments",
    "SegmentPool": "pan_runtime.data.segments",
    "Application": "pan_runtime.net.application",
    "Client": "pan_runtime.net.client",
    "ManualClock": "pan_runtime.net.network",
    "Network": "pan_runtime.net.network",
    "Budget": "pan_runtime.node.env",
    "Environment": "pan_runtime.node.env",
    "Origin": "pan_runtime.node.env",
    "Node": "pan_runtime.node.node",
    "NodeConfig": "pan_runtime.node.config",
    "CodeOrigin": "pan_runtime.node.trust",
    "TrustPolicy": "pan_runtime.node.trust",
    "Builder": "pan_runtime.plugin.builders",
    "BuildRequest": "pan_runtime.plugin.builders",
    "FastEntry": "pan_runtime.plugin.fastentry",
    "LoadJob": "pan_runtime.plugin.loadjob",
    "LoadLimits": "pan_runtime.plugin.loadlimits",
    "Isolation": "pan_runtime.plugin.runtime",
    "LoadedCode": "pan_runtime.plugin.runtime",
    "Runtime": "pan_runtime.plugin.runtime",
}

__all__ = [
    "PanError",
    "FaultReason",
    "hookimpl",
    "__version__",
    "NodeAddress",
    "Capsule",
    "CodeObject",
    "Segment",
    "SegmentPool",
    "Application",
    "Client",
    "ManualClock",
    "Network",
    "Budget",
    "Environment",
    "Origin",
    "Node",
    "NodeConfig",
    "CodeOrigin",
    "TrustPolicy",
    "Builder",
    "BuildRequest",
    "FastEntry",
    "LoadJob",
    "LoadLimits",
    "Isolation",
    "LoadedCode",
    "Runtime",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pan_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
