"""The neighbour ledger (``pan_runtime.node.ledger``) on a real UDP node, every runtime, both paths.

An attacker neighbour sends capsules of many distinct code objects, each of which runs past
the time budget (a sandboxed runtime stops it there; ``native`` code, which nothing stops,
returns late and is charged all the same). No code object faults often enough for its own
breaker, but the attacker is throttled after ``neighbour_exhaustions`` of them: the rest of
its capsules are dropped unrun as ``neighbour_throttled``, while the other neighbour's
capsules keep running.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from nethelpers import FakePeer, daemon_from, free_udp_ports, remove_tree, short_dir
from test_net_udp import forward_body

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.daemon import prometheus_text
from pan_runtime.node.events import NeighbourThrottled
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.testing import build_case

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
STALL = Path(__file__).parent / "cases" / "stall"
NAMES = 12  # distinct code objects the attacker uses, one capsule each
THRESHOLD = 3
GOOD = 20


def variants(code: CodeObject, n: int) -> list[CodeObject]:
    """``n`` code objects with ``code``'s payload and distinct names."""
    return [
        CodeObject(dataclasses.replace(code.manifest, meta={**code.manifest.meta, "variant": i}), code.payload)
        for i in range(n)
    ]


@pytest.fixture
def tmpdir_short():
    d = short_dir()
    yield d
    remove_tree(d)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_neighbour_whose_capsules_keep_exhausting_budgets_is_throttled(tmpdir_short, runtime, fast):
    node_port, bad_port, good_port = free_udp_ports(3)
    bad, good = FakePeer(bad_port, rcvbuf=8 << 20), FakePeer(good_port, rcvbuf=8 << 20)
    cfg = tmpdir_short / "n.toml"
    cfg.write_text(
        f'[node]\nlisten = ["127.0.0.1:{node_port}"]\n'
        f'[[neighbors]]\naddress = "127.0.0.1:{bad_port}"\n[[neighbors]]\naddress = "127.0.0.1:{good_port}"\n'
        f"[limits]\nbudget_time_ms = 20\nfast_path = {'true' if fast else 'false'}\n"
        f"neighbour_exhaustions = {THRESHOLD}\nneighbour_backoff_ms = 600000\n"
    )
    d = daemon_from(cfg)
    try:
        stalls = variants(build_case(STALL, runtime, default_plugins()), NAMES)
        fwd = reference_code(runtime, "forward")
        for code in (*stalls, fwd):
            d.node.install(code)
        for code in stalls:
            bad.send(capsule_bytes(code, b"x", bad.address), node_port)
        for i in range(GOOD):
            good.send(capsule_bytes(fwd, forward_body(good.address, b"%d" % i), good.address), node_port)
        node = d.node
        for _ in range(100_000):
            d.run_once(0.001)
            if good.collect() == GOOD and node.stats.drops["neighbour_throttled"] + THRESHOLD >= NAMES:
                break
        stats = d.statistics()
        runs = sum(stats["code"][c.hex_name]["capsules_in"] for c in stalls)
        # the attacker's code ran until its neighbour tripped, never more, whatever names it used
        assert runs == THRESHOLD
        assert all(stats["code"][c.hex_name]["capsules_in"] <= 1 for c in stalls)  # no code breaker could
        assert stats["drops"]["neighbour_throttled"] == NAMES - THRESHOLD
        account = stats["neighbours"][str(bad.address)]
        assert account["exhaustions"] == THRESHOLD and account["throttles"] == 1
        assert account["drops"] == {"neighbour_throttled": NAMES - THRESHOLD}
        assert account["throttled_for_ms"] > 0
        assert [e.neighbour for e in node.events if isinstance(e, NeighbourThrottled)] == [str(bad.address)]
        # the other neighbour's capsules still ran, every one
        assert len(good.got) == GOOD
        assert stats["code"][fwd.hex_name]["forwarded"] == GOOD
        assert stats["neighbours"][str(good.address)]["exhaustions"] == 0
        assert stats["neighbours"][str(good.address)]["runs"] == GOOD
        if fast:
            assert stats["links"]["fast_path"]["dropped_in_c"] == NAMES - THRESHOLD
        # what `pan stats` and /metrics show
        assert f'pan_neighbour_dropped_total{{neighbor="{bad.address}",reason="neighbour_throttled"}} {NAMES - THRESHOLD}' in prometheus_text(stats)
        assert f'pan_neighbour_throttled{{neighbor="{bad.address}"}} 1' in prometheus_text(stats)
        row = next(line for line in format_stats(stats).splitlines() if line.startswith(str(bad.address)))
        assert row.rstrip().endswith(" s")  # the throttle's time left
    finally:
        d.close()
        bad.close()
        good.close()
