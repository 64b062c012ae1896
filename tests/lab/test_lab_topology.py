"""pan_runtime.lab.topology (and nodeconfig): a topology file read, checked and turned into
each node's configuration; every mistake reported as file:line: key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pan_runtime.errors import ConfigError
from pan_runtime.lab.nodeconfig import addressing, node_toml
from pan_runtime.lab.topology import load_topology, parse_topology
from pan_runtime.net.config import parse_config

TREE = """\
[lab]
name = "tree7"
routing = "static"

[defaults]
runtimes = ["native", "wasm"]
trust = { "network.none" = "any" }
limits = { queue = 512 }

[[generate]]
shape = "tree"
n = 7
fanout = 2
link = { rate = "100mbit", delay = "2ms", jitter = "500us", loss = 0.5 }

[[nodes]]
name = "extra"
runtimes = ["restricted_py"]

[[links]]
endpoints = ["n7", "extra"]
"""


def test_a_generated_tree_with_an_extra_node_and_link(tmp_path: Path):
    f = tmp_path / "t.toml"
    f.write_text(TREE)
    topo = load_topology(f)
    assert topo.name == "tree7" and list(topo.nodes) == [f"n{i}" for i in range(1, 8)] + ["extra"]
    assert len(topo.links) == 7
    s = topo.links[0].shaping
    assert (s.rate_bit, s.delay_us, s.jitter_us, s.loss_pct) == (100_000_000, 2000, 500, 0.5)
    assert not topo.links[-1].shaping.shaped
    assert topo.nodes["n3"].runtimes == ["native", "wasm"] and topo.nodes["extra"].runtimes == ["restricted_py"]
    assert topo.nodes["n3"].limits == {"queue": 512}
    assert topo.hops("n4", "extra") == ["n4", "n2", "n1", "n3", "n7", "extra"]


def test_each_node_configuration_is_one_pan_node_accepts_with_routes_to_every_node(tmp_path: Path):
    topo = parse_topology(TREE)
    addr = addressing(topo)
    assert len(set(addr.node.values())) == len(topo.nodes)
    cfg = parse_config(node_toml(topo, topo.nodes["n4"], str(tmp_path / "n4.sock"), addr))
    assert str(cfg.address) == addr.node["n4"]
    assert [str(n.address) for n in cfg.neighbors] == [addr.node["n2"]]
    assert str(cfg.neighbors[0].endpoint[0]) == addr.endpoint[("n4", "n2")].split(":")[0]
    routes = {str(d): (str(v), m) for d, v, m in cfg.routes}
    assert set(routes) == {addr.node[n] for n in topo.nodes} - {addr.node["n4"], addr.node["n2"]}
    assert routes[addr.node["extra"]] == (addr.node["n2"], 5)
    assert cfg.node.queue_limit == 512


def test_dv_routing_leaves_only_the_neighbours_and_explicit_routes_win():
    text = TREE.replace('routing = "static"', 'routing = "dv"').replace('"native", "wasm"', '"native", "restricted_py"') + '\n[[routes]]\nnode = "n1"\ndest = "extra"\nvia = "n2"\n'
    topo = parse_topology(text)
    addr = addressing(topo)
    cfg = parse_config(node_toml(topo, topo.nodes["n1"], "/tmp/x.sock", addr))
    assert [(str(d), str(v)) for d, v, _ in cfg.routes] == [(addr.node["extra"], addr.node["n2"])]
    assert parse_config(node_toml(topo, topo.nodes["n5"], "/tmp/x.sock", addr)).routes == []


def _line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


@pytest.mark.parametrize(
    ("change", "needle", "key", "message"),
    [
        (("n = 7", "n = 7\ncolour = 1"), "colour", "generate[0].colour", "unknown key"),
        (('rate = "100mbit"', 'rate = "fast"'), "rate =", "generate[0].link.rate", "a rate such as"),
        (('delay = "2ms"', 'delay = "2 fortnights"'), "delay =", "generate[0].link.delay", "a duration"),
        (("loss = 0.5", "loss = 150"), "loss =", "generate[0].link.loss", "a percentage"),
        (('endpoints = ["n7", "extra"]', 'endpoints = ["n7", "nowhere"]'), "nowhere", "links[0].endpoints", "no node is named 'nowhere'"),
        (('endpoints = ["n7", "extra"]', 'endpoints = ["n1", "n2"]'), '["n1", "n2"]', "links[0].endpoints", "already linked"),
        (('routing = "static"', 'routing = "ospf"'), "routing", "lab.routing", "not one of"),
        (('routing = "static"', 'routing = "dv"'), "routing", "lab.routing", "node n1 does not enable it"),
        (('routing = "static"', 'routing = "static"\ndv_period = "5ms"'), "dv_period", "lab.dv_period", "a duration from 50 ms to 10 s"),
        (('routing = "static"', 'routing = "static"\ndv_period = 2'), "dv_period", "lab.dv_period", "a duration from 50 ms"),
        (('shape = "tree"', 'shape = "blob"'), "blob", "generate[0].shape", "not one of"),
        (('name = "extra"', 'name = "n3"'), 'name = "n3"', "nodes[0].name", "defined twice"),
        (("limits = { queue = 512 }", "limits = { queue = -4 }"), "limits", "defaults.limits", "queue"),
        (('runtimes = ["restricted_py"]', "runtimes = []"), "runtimes = []", "nodes[0].runtimes", "non-empty"),
    ],
)
def test_a_mistake_is_reported_at_its_file_line_and_key(tmp_path: Path, change, needle, key, message):
    text = TREE.replace(*change)
    assert text != TREE
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_topology(f)
    assert str(exc.value).startswith(f"{f}:{_line_of(text, needle)}: {key}: "), str(exc.value)
    assert message in str(exc.value)


def test_not_toml_names_the_line(tmp_path: Path):
    f = tmp_path / "bad.toml"
    f.write_text('[lab]\nname = "x"\nport = = 3\n')
    with pytest.raises(ConfigError, match=rf"^{f}:3: not valid TOML"):
        load_topology(f)


def test_pan_lab_check_prints_nodes_links_and_addresses_or_the_error(tmp_path: Path):
    f = tmp_path / "t.toml"
    f.write_text(TREE)
    cmd = [sys.executable, "-m", "pan_runtime.cli.main", "lab", "check", str(f)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "lab tree7: 8 nodes, 7 links, routing static" in r.stdout
    assert "link n1(10.210.0.1/30) - n2(10.210.0.2/30)  delay 2000 us, jitter 500 us, loss 0.5%, rate 100000000 bit/s" in r.stdout
    f.write_text(TREE.replace("fanout = 2", "fanout = 0"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"{f}:{_line_of(TREE, 'shape =')}: generate[0].shape: fanout must be at least 1" in r.stderr
