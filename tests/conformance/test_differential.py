"""The reference protocols behave identically in every runtime.

The C source serves both native and wasm; the Java and Python sources must match them.
Every run gets the same inputs (valid, odd and truncated bodies) and a manual clock, so
every delivered byte (timestamps included) and every counter must be equal.
"""

from __future__ import annotations

import random

import pytest

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.application import Application
from pan_runtime.net.network import ManualClock, Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import FloodHdr, PingHdr

PLUGINS = default_plugins()
PORT = 7


def run(runtime: str, protocol: str, seed: int) -> tuple[list[tuple[int, bytes]], list[dict]]:
    rng = random.Random(seed)
    clock = ManualClock()
    # a time budget no run comes near: a stall of the shared machine must not look like a
    # difference between runtimes (budgets have their own conformance cases)
    config = NodeConfig(budget=Budget(time_ms=10_000))
    with Network.line(3, plugins=PLUGINS, clock=clock, config=config) as net:
        a, b, c = net.nodes
        pm = reference_code(runtime, "portmapper", PLUGINS)
        code = reference_code(runtime, protocol, PLUGINS)
        net.install(pm)
        net.install(code)
        for n in net.nodes:
            n.use_portmapper(pm)
        at_a, at_c = Application(a), Application(c)
        at_a.bind(PORT)
        at_c.bind(PORT)
        net.run()
        for i in range(40):
            clock.advance(rng.randrange(1, 50_000))
            pad = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
            if protocol == "forward":
                body = c.address.raw + PORT.to_bytes(2, "big") + b"\0\0" + pad
            elif protocol == "ping":
                body = PingHdr(dest=c.address.raw, port=PORT, phase=rng.choice([0, 0, 0, 1, 7]), seq=i).pack() + pad
            elif protocol == "flood":
                body = FloodHdr(dest=c.address.raw, port=PORT, kind=rng.choice([0, 1, 1, 1, 2, 9]), flow=rng.randrange(3),
                                seq=i, report_every=rng.choice([0, 1, 3])).pack() + pad
            else:
                body = rng.randrange(6).to_bytes(2, "big") + bytes([rng.choice([0, 1, 5]), 0]) + pad
            if rng.random() < 0.1:
                body = body[: rng.randrange(len(body) + 1)]  # truncated bodies too
            at_a.send(code, body)
            net.run()
        deliveries = [(d.port, d.data) for app in (at_a, at_c) for d in app.deliveries()]
        stats = []
        for n in net.nodes:
            for e in n.cache:
                d = e.stats.as_dict()
                # time, and steps or fuel where a runtime counts them, are the runtime's own
                for k in ("time_us_total", "time_us_mean", "time_us_max", "steps", "fuel"):
                    d.pop(k)
                stats.append({"node": n.name, "protocol": e.code.manifest.meta.get("label", "").split("-")[0], **d})
        return deliveries, sorted(stats, key=lambda s: (s["node"], s["protocol"]))


@pytest.mark.parametrize("other", ["wasm", "jvm", "restricted_py"])
@pytest.mark.parametrize("protocol", ["forward", "ping", "flood", "portmapper"])
@pytest.mark.parametrize("seed", [1, 2])
def test_runtimes_agree_with_native(protocol, seed, other):
    native = run("native", protocol, seed)
    theirs = run(other, protocol, seed)
    assert native[0] == theirs[0], "deliveries differ"
    assert native[1] == theirs[1], "counters differ"
    assert native[0] or protocol == "portmapper", "the scenario delivered nothing; it tests too little"
