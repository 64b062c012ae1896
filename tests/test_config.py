"""``NodeConfig`` checks the limits it takes (the TOML checks are in tests/network/test_net_config.py)."""

from __future__ import annotations

import pytest

from pan_runtime.errors import ConfigError
from pan_runtime.node.config import NodeConfig


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fair_quantum_us", 0),
        ("neighbour_sockets", -1),
        ("neighbour_buffer", 100),
        ("neighbour_exhaustions", 0),
        ("neighbour_window_ms", 1.5),
        ("neighbour_backoff_ms", True),
    ],
)
def test_fair_share_and_neighbour_budget_limits_are_checked(key, value):
    with pytest.raises(ConfigError, match=f"NodeConfig.{key}"):
        NodeConfig(**{key: value})


def test_the_longest_back_off_is_at_least_the_first():
    with pytest.raises(ConfigError, match="neighbour_max_backoff_ms"):
        NodeConfig(neighbour_backoff_ms=5000, neighbour_max_backoff_ms=1000)
    assert NodeConfig(neighbour_backoff_ms=5000, neighbour_max_backoff_ms=5000).neighbour_max_backoff_ms == 5000
    assert NodeConfig(neighbour_backoff_ms=90_000).neighbour_max_backoff_ms == 90_000


def test_the_isolation_of_each_runtime_is_checked_and_has_a_default(monkeypatch):
    monkeypatch.delenv("PAN_ISOLATION", raising=False)
    cfg = NodeConfig(isolation={"native": "process"})
    assert cfg.mechanism("native") == "process" and cfg.mechanism("wasm") == "in_process"
    with pytest.raises(ConfigError, match="isolation of runtime 'native' must be one of in_process, process"):
        NodeConfig(isolation={"native": "sandbox"})
    with pytest.raises(ConfigError, match="NodeConfig.workers"):
        NodeConfig(workers=0)
    with pytest.raises(ConfigError, match="NodeConfig.worker_standbys = 5000 is outside 0..4096"):
        NodeConfig(worker_standbys=5000)
    assert NodeConfig().worker_standbys == 4
    monkeypatch.setenv("PAN_ISOLATION", "process")
    assert NodeConfig().mechanism("jvm") == "process"
    assert NodeConfig(isolation={"jvm": "in_process"}).mechanism("jvm") == "in_process"
    monkeypatch.setenv("PAN_ISOLATION", "jvm=process")
    assert NodeConfig().mechanism("jvm") == "process" and NodeConfig().mechanism("wasm") == "in_process"
    monkeypatch.setenv("PAN_ISOLATION", "jvm=elsewhere")
    with pytest.raises(ConfigError, match="PAN_ISOLATION"):
        NodeConfig().mechanism("jvm")
