"""A node flooded with good, malformed and hostile capsules keeps serving and loses nothing."""

import random

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.env import Budget
from pan_runtime.node.node import NodeConfig
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.resources import cases_dir
from pan_runtime.testing import build_case

CASES = cases_dir()
PLUGINS = default_plugins()


def test_mixed_flood_keeps_every_counter_and_the_pool_whole():
    rng = random.Random(3)
    cfg = NodeConfig(budget=Budget(time_ms=50, steps=20_000), breaker_threshold=1000, queue_limit=10_000)
    with Network.line(2, plugins=PLUGINS, config=cfg) as net:
        a, b = net.nodes
        pm = reference_code("restricted_py", "portmapper", PLUGINS)
        fwd = reference_code("wasm", "forward", PLUGINS)
        spin = build_case(CASES / "spin", "restricted_py", PLUGINS)
        boom = build_case(CASES / "raise", "wasm", PLUGINS)
        for code in (pm, fwd, spin, boom):
            net.install(code)
        for n in net.nodes:
            n.use_portmapper(pm)
        sink = Application(b)
        sink.bind(7)
        app = Application(a)
        body = b.address.raw + b"\x00\x07\x00\x00" + b"payload"
        sent = {"good": 0, "spin": 0, "boom": 0, "garbage": 0, "nocode": 0}
        for _ in range(400):
            kind = rng.choice(list(sent))
            sent[kind] += 1
            if kind == "good":
                app.send(fwd, body)
            elif kind == "spin":
                app.send(spin, b"x")
            elif kind == "boom":
                app.send(boom, b"x")
            elif kind == "garbage":
                a.inject(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80))), app.link)
            else:
                app.send(bytes(rng.randrange(256) for _ in range(32)), b"who am i")
        net.run()
        assert sink.pending == sent["good"]
        st = {e.code.name: e.stats for e in a.cache}
        assert st[spin.name].drops["budget"] == sent["spin"]
        assert st[boom.name].errors == sent["boom"]
        assert a.stats.drops["no_code"] == sent["nocode"]
        malformed = sum(v for k, v in a.stats.drops.items() if k.startswith("malformed"))
        assert malformed > 0
        # every capsule the node accepted is accounted for: run by a code object or dropped with a reason
        assert sum(s.capsules_in for s in st.values()) + sum(a.stats.drops.values()) == a.stats.injected == 400
        for n in net.nodes:
            assert n.pool.whole, f"{n.name} leaked {n.pool.count - n.pool.available} buffers"
            assert not n.queue
