"""An embedded node with an event loop (``NodeDaemon`` turned by the test), for the tests of
what the node does under its loop: asynchronous dispatch, worker pidfds, demotion."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.config import parse_config
from pan_runtime.net.daemon import NodeDaemon


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def embedded_node(runtime: str, limits: str = "", budget_ms: int = 3000) -> NodeDaemon:
    """A node on a loopback port running ``runtime`` in process isolation, no spare worker,
    capsule budgets of ``budget_ms`` (``limits``: more ``[limits]`` lines)."""
    text = (
        f'[node]\nname = "embedded"\nlisten = ["127.0.0.1:{free_port()}"]\n'
        f'[runtimes.{runtime}]\nisolation = "process"\n'
        f"[limits]\nbudget_time_ms = {budget_ms}\nbudget_steps = 1000000000000\nbudget_fuel = 10000000000000\n"
        f"worker_spares = 0\n{limits}"
    )
    daemon = NodeDaemon(parse_config(text, "<embedded>"))
    try:  # applications bind ports on it
        node = daemon.node
        pm = reference_code("native", "portmapper", node.plugins)
        node.install(pm, pin=True)
        node.use_portmapper(pm)
    except BaseException:
        daemon.close()
        raise
    return daemon


def turn_until(daemon: NodeDaemon, until: Callable[[], bool], timeout: float = 120.0) -> bool:
    """Turn the daemon's loop until ``until()`` holds; the timeout is a hang guard only."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        daemon.run_once(0.002)
        if until():
            return True
    return until()


def forward_home(daemon: NodeDaemon, app: Any, code: Any, port: int, count: int, entry: Any = None) -> int:
    """Send ``count`` capsules of the forwarding ``code`` from ``app`` to its own ``port`` on the
    node and turn the loop until each is delivered (or, given the code's cache ``entry``,
    delivered or counted among its drops); returns how many were delivered."""
    body = daemon.node.address.raw + port.to_bytes(2, "big") + bytes(14)
    got: list = []
    for _ in range(count):
        app.send(code, body)

    def done() -> bool:
        got.extend(app.deliveries())
        return len(got) + (sum(entry.stats.drops.values()) if entry is not None else 0) >= count

    turn_until(daemon, done)
    return len(got)
