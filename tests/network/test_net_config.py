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


@pytest.mark.parametrize(
    ("limits", "key", "words"),
    [
        ("pool_buffers = 64\npool_reserve = 64\n", "limits.pool_reserve", "outside 0..63"),
        ("pool_buffers = 64\npool_reserve = 16\ncode_buffers = 49\n", "limits.code_buffers", "outside 0..48"),
        ("state_bytes = 2048\nstate_total_bytes = 1024\n", "limits.state_bytes", "state_total_bytes"),
    ],
)
def test_what_code_may_hold_must_fit_the_pool_and_the_store(limits, key, words):
    with pytest.raises(ConfigError, match=key) as ei:
        parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\n' + limits, "n.toml")
    assert words in str(ei.value)


def test_buffer_quota_and_soft_state_bounds_reach_the_node_config():
    text = '[node]\nlisten = ["127.0.0.1:7100"]\n[demand]\npark_total = 8\n[limits]\npool_buffers = 64\n'
    cfg = parse_config(text, "n.toml").node
    assert (cfg.pool_reserve, cfg.code_buffers, cfg.state_total_bytes) == (16, 4, 64 << 20)
    cfg = parse_config(text + "pool_reserve = 8\ncode_buffers = 10\nstate_total_bytes = 8388608\n", "n.toml").node
    assert (cfg.pool_reserve, cfg.code_buffers, cfg.state_total_bytes) == (8, 10, 8 << 20)
