"""Node configuration files: what parses, and errors that name file, line and key."""

from __future__ import annotations

import pytest

from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import ConfigError
from pan_runtime.net.config import load_config, parse_config
from pan_runtime.node.trust import CodeOrigin, Rule
from pan_runtime.plugin.runtime import Isolation

GOOD = """
[node]
name = "middle"
listen = ["127.0.0.1:7002", "[::1]:7002"]
app_socket = "m.sock"
log_level = "info"

[[neighbors]]
address = "127.0.0.1:7001"

[[neighbors]]
address = "::1:2"
endpoint = "[::1]:7003"
mtu = 1500

[[routes]]
dest = "127.0.0.1:7009"
via = "127.0.0.1:7001"
metric = 3

[trust]
trusted_keys = ["%s"]
rules = { "network.guarded" = "any" }

[limits]
queue = 100
pool_buffers = 64
pool_buffer_size = 4096

[demand]
park_per_code = 4
park_total = 16
request_rate = 50.5

[runtimes]
enabled = ["wasm"]
[runtimes.options.wasm]
fuel = 1000
""" % ("ab" * 32)


def test_a_full_configuration_parses(tmp_path):
    cfg = parse_config(GOOD, "n.toml", base=tmp_path)
    assert cfg.address == NodeAddress.parse("127.0.0.1:7002")
    assert cfg.listen == [("127.0.0.1", 7002), ("::1", 7002)]
    assert cfg.app_socket == str(tmp_path / "m.sock")
    assert [n.endpoint for n in cfg.neighbors] == [("127.0.0.1", 7001), ("::1", 7003)]
    assert cfg.neighbors[0].mtu == 4096 and cfg.neighbors[1].mtu == 1500
    assert cfg.routes == [(NodeAddress.parse("127.0.0.1:7009"), NodeAddress.parse("127.0.0.1:7001"), 3)]
    assert bytes.fromhex("ab" * 32) in cfg.trust.trusted_keys
    assert cfg.trust.rules[(CodeOrigin.NETWORK, Isolation.GUARDED)] is Rule.ANY
    assert cfg.node.queue_limit == 100 and cfg.node.pool_buffer_size == 4096
    assert cfg.node.runtimes == ["wasm"] and cfg.node.runtime_options == {"wasm": {"fuel": 1000}}
    assert cfg.demand.park_total == 16 and cfg.demand.request_rate == 50.5


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ('[node]\nlisten = ["127.0.0.1:1"]\nbogus = 1\n', 3, "node.bogus", "unknown key"),
        ('[node]\nname = "x"\n', 1, "node.listen", "missing"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[[neighbors]]\naddress = "127.0.0.1:2"\n[[neighbors]]\naddress = "nonsense"\n', 6, "neighbors[1].address", "cannot parse"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[limits]\nqueue = "many"\n', 4, "limits.queue", "integer"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[[routes]]\ndest = "127.0.0.1:5"\nvia = "127.0.0.1:6"\n', 5, "routes[0].via", "not a configured neighbour"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[trust]\nrules = { "network.none" = "sometimes" }\n', 4, "trust.rules", "bad trust rule"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[trust]\ntrusted_keys = ["zz"]\n', 4, "trust.trusted_keys[0]", ""),
        ('[node]\nlisten = ["127.0.0.1:1", "127.0.0.2:2"]\n', 2, "node.listen", "one socket per address family"),
        ('[node]\nlisten = ["127.0.0.1:99999"]\n', 2, "node.listen[0]", "port"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[[neighbors]]\naddress = "::5"\n', 3, "neighbors[0].endpoint", "UDP endpoint"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, text, line, key, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    where = f"{p}:{line}: "
    assert msg.startswith(where + key), msg
    assert words in msg


def test_toml_syntax_errors_name_the_line(tmp_path):
    p = tmp_path / "syntax.toml"
    p.write_text('[node]\nlisten = ["127.0.0.1:1"]\nname = \n')
    with pytest.raises(ConfigError, match=r"syntax\.toml:3: not valid TOML"):
        load_config(p)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_copy_on_send_reaches_the_node_config():
    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\ncopy_on_send = true\n', "n.toml")
    assert cfg.node.copy_on_send is True
    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n', "n.toml")
    assert cfg.node.copy_on_send is False
    with pytest.raises(ConfigError, match="limits.copy_on_send"):
        parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\ncopy_on_send = 3\n', "n.toml")


def test_fair_share_and_neighbour_budget_limits_reach_the_node_config():
    cfg = parse_config(
        '[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nfair_quantum_us = 50\nneighbour_sockets = 8\n'
        "neighbour_buffer = 65536\nneighbour_exhaustions = 3\nneighbour_window_ms = 2000\n"
        "neighbour_backoff_ms = 500\nneighbour_max_backoff_ms = 8000\n",
        "n.toml",
    )
    n = cfg.node
    assert (n.fair_quantum_us, n.neighbour_sockets, n.neighbour_buffer) == (50, 8, 65536)
    assert (n.neighbour_exhaustions, n.neighbour_window_ms, n.neighbour_backoff_ms, n.neighbour_max_backoff_ms) == (3, 2000, 500, 8000)
    defaults = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n', "n.toml").node
    assert (defaults.fair_quantum_us, defaults.neighbour_sockets, defaults.neighbour_exhaustions) == (100, 256, 5)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("fair_quantum_us = 0", "limits.fair_quantum_us"),
        ("neighbour_sockets = -1", "limits.neighbour_sockets"),
        ("neighbour_buffer = 1024", "limits.neighbour_buffer"),
        ("neighbour_exhaustions = 0", "limits.neighbour_exhaustions"),
        ('neighbour_window_ms = "long"', "limits.neighbour_window_ms"),
        ("neighbour_backoff_ms = 5000\nneighbour_max_backoff_ms = 100", "limits.neighbour_max_backoff_ms"),
    ],
)
def test_fair_share_and_neighbour_budget_limits_are_checked(tmp_path, line, key):
    p = tmp_path / "bad.toml"
    p.write_text(f'[node]\nlisten = ["127.0.0.1:1"]\n[limits]\n{line}\n')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}:") and key in str(ei.value), str(ei.value)
