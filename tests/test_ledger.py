"""The neighbour ledger: accounts per neighbour, and the throttle for budget exhaustions.

The rule on its own with a clock the test moves, then through a node in this process: a
neighbour whose capsules keep using up their budget, under a new code name each time, is
refused at the node's queue while another neighbour's capsules run. (Over real UDP, both
paths and every runtime: ``tests/network/test_net_ledger.py``.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BudgetExceeded, FaultReason, RuntimeFault
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.network import ManualClock, Network
from pan_runtime.node.config import NodeConfig
from pan_runtime.node.env import Budget
from pan_runtime.node.events import NeighbourThrottled
from pan_runtime.node.ledger import Ledger
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.testing import build_case

MS = 1_000_000
A = NodeAddress.from_int(1)
B = NodeAddress.from_int(2)
STALL = Path(__file__).parent / "network" / "cases" / "stall"


def ledger(**cfg) -> tuple[Ledger, ManualClock, list]:
    clock = ManualClock()
    events: list = []
    config = NodeConfig(budget=Budget(time_ms=10), **cfg)
    return Ledger(config, clock, events.append), clock, events


def test_budget_faults_and_runs_past_the_time_budget_are_exhaustions():
    led, _, _ = ledger(neighbour_exhaustions=100)
    led.charge(A, 1 * MS, 0)  # within budget
    led.charge(A, 11 * MS, 0)  # ran past the time budget (code nothing could stop)
    led.charge(A, 1 * MS, BudgetExceeded("steps"))
    led.charge(A, 1 * MS, BudgetExceeded("memory", FaultReason.MEMORY))
    led.charge(A, 1 * MS, RuntimeFault("boom", FaultReason.TRAP))  # a fault, not an exhaustion
    info = led.info()[str(A)]
    assert info["runs"] == 5 and info["run_us"] == 15_000
    assert info["exhaustions"] == 3
    assert info["faults"] == {"budget": 1, "memory": 1, "trap": 1}
    assert not led.throttled(A)


def test_a_neighbour_is_throttled_for_a_back_off_that_doubles_and_is_forgotten():
    led, clock, events = ledger(neighbour_exhaustions=2, neighbour_window_ms=1000, neighbour_backoff_ms=100)
    led.charge(A, 0, BudgetExceeded("x"))
    assert not led.throttled(A)
    led.charge(A, 0, BudgetExceeded("x"))
    assert led.throttled(A) and not led.throttled(B) and not led.throttled(None)
    assert events == [NeighbourThrottled(str(A), 1, clock.now + 100 * MS)]
    generation = led.generation
    clock.advance(100 * MS)
    assert not led.throttled(A) and led.blocked == {}
    # straight after a throttle one more exhaustion trips it again, for twice as long
    led.charge(A, 0, BudgetExceeded("x"))
    assert led.throttled(A) and led.generation == generation + 1
    assert led.blocked[A] == clock.now + 200 * MS
    # a quiet window after it ended forgets the doubling: the threshold counts again
    clock.advance(200 * MS + 1000 * MS)
    led.charge(A, 0, BudgetExceeded("x"))
    assert not led.throttled(A)
    led.charge(A, 0, BudgetExceeded("x"))
    assert led.blocked[A] == clock.now + 100 * MS
    assert led.info()[str(A)]["throttles"] == 3


def test_a_throttled_neighbour_is_refused_at_the_queue_whatever_code_it_names():
    plugins = default_plugins()
    stall = build_case(STALL, "restricted_py", plugins)
    names = [
        CodeObject(dataclasses.replace(stall.manifest, meta={**stall.manifest.meta, "variant": i}), stall.payload)
        for i in range(8)
    ]
    cfg = NodeConfig(budget=Budget(time_ms=5, steps=5_000), neighbour_exhaustions=2, neighbour_backoff_ms=60_000)
    with Network.star(2, plugins=plugins, config=cfg) as net:
        hub, left, right = net.nodes
        net.install(stall)
        for code in names:
            net.install(code)
        # capsules as they arrive from each neighbour's link (the leaves would run them first)
        for code in names:
            hub.receive_buffers([memoryview(capsule_bytes(code, b"x", left.address))], left.address, hub.neighbors[left.address])
        good = capsule_bytes(names[0], b"x", right.address)  # the same code from another neighbour still runs
        hub.receive_buffers([memoryview(good)], right.address, hub.neighbors[right.address])
        hub.process()
        runs = {c.name: hub.cache.peek(c.name).stats.capsules_in for c in names}
        assert sum(runs.values()) == 2 + 1
        assert hub.stats.drops["neighbour_throttled"] == len(names) - 2
        accounts = hub.statistics()["neighbours"]
        assert accounts[str(left.address)]["exhaustions"] == 2
        assert accounts[str(left.address)]["drops"] == {"neighbour_throttled": len(names) - 2}
        assert accounts[str(right.address)]["runs"] == 1 and accounts[str(right.address)]["drops"] == {}
        assert "throttled neighbours: " + str(left.address) in hub.format_statistics()
