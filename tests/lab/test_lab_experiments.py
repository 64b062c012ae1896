"""pan_runtime.lab.experiments through ``pan bench --topology lab:FILE``: on a 7-node tree,
a new code object installed at the root reaches every node by demand loading (``spread``),
``path`` measures the longest path hop by hop and ``ping`` runs from the root to its
farthest node, for every runtime, in the bench's JSON; nothing of the lab is left after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pan_runtime.bench.testbed import netns_unavailable

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("native", "wasm", "jvm", "restricted_py")
#: the runtimes the converge experiment is run with here (see its test)
CONVERGE = ("native", "wasm")


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PAN_LAB_DIR=str(tmp_path / "state"), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pan_runtime.cli.main", "bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


@pytest.mark.skipif(netns_unavailable() is not None, reason=f"labs need network namespaces: {netns_unavailable()}")
def test_spread_path_and_ping_on_a_tree_for_every_runtime(tmp_path: Path):
    name = f"x{os.getpid()}"
    f = tmp_path / "tree.toml"
    f.write_text(f'[lab]\nname = "{name}"\n[defaults]\nruntimes = {json.dumps(list(RUNTIMES))}\n'
                 '[[generate]]\nshape = "tree"\nn = 7\n')
    out = tmp_path / "r.json"
    r = bench(tmp_path, "--topology", f"lab:{f}", "--experiment", "spread,path,ping", "--quick", "--size", "156",
              "--runtime", ",".join(RUNTIMES), "--json", str(out), "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    rows = {(x["experiment"], x["config"], x["runtime"], x["metric"]): x["value"]
            for x in doc["results"] if x["stat"] == "median" and x["topology"] == f"lab:{name}"}
    for rt in RUNTIMES:
        # the root fetches nothing; each of the six others fetched the new code once
        assert rows[("spread", "n1->all(6)", rt, "chunks")] >= 6, rt
        assert rows[("spread", "n1->all(6)", rt, "code_bytes")] > 0 and rows[("spread", "n1->all(6)", rt, "spread_ms")] > 0
        assert rows[("path", "n4->n6", rt, "hops")] == 4
        assert rows[("path", "n4->n6", rt, "per_hop_us")] > 0
        assert rows[("ping", "n1->n4", rt, "rtt_us")] > 0
    assert doc["meta"]["failed"] == {}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"panlab-{name}-" not in listed
    assert not (tmp_path / "state" / f"{name}.json").exists()


def test_a_bad_lab_file_stops_the_run_before_anything_starts_and_spread_needs_a_lab(tmp_path: Path):
    f = tmp_path / "bad.toml"
    f.write_text('[lab]\nname = "b"\n[[generate]]\nshape = "tree"\nn = "seven"\n')
    r = bench(tmp_path, "--topology", f"lab:{f}", "--experiment", "spread", "--quick")
    assert r.returncode == 2 and f"{f}:5: generate[0].n: a whole number" in r.stderr
    r = bench(tmp_path, "--topology", "inproc", "--experiment", "spread,dispatch", "--quick", "--runtime", "native", "--size", "156")
    assert r.returncode == 0, r.stderr
    assert "spread inproc: spread runs on a lab (--topology lab:FILE)" in r.stdout


@pytest.mark.skipif(netns_unavailable() is not None, reason=f"labs need network namespaces: {netns_unavailable()}")
def test_converge_after_a_link_goes_down_and_comes_back_for_each_runtime_asked(tmp_path: Path):
    """On a ring of five, each runtime's dv code agrees with the network at the start, again
    after the middle link of the diameter (n1-n2) goes down (the routes across it expire,
    so at least EXPIRE + 1 = 4 ticks pass) and again after it comes back; the link is up and
    the lab gone afterwards. Two runtimes, each measured on its own: every runtime's dv code
    rerouting on such a ring is test_lab_netns's (parametrised), and the suite's time is dear."""
    name = f"c{os.getpid()}"
    f = tmp_path / "ring.toml"
    f.write_text(f'[lab]\nname = "{name}"\ndv_period = "200ms"\n[defaults]\nruntimes = {json.dumps(list(CONVERGE))}\n'
                 '[[generate]]\nshape = "ring"\nn = 5\n')
    out = tmp_path / "r.json"
    r = bench(tmp_path, "--topology", f"lab:{f}", "--experiment", "converge", "--quick", "--size", "156",
              "--runtime", ",".join(CONVERGE), "--json", str(out), "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["meta"]["failed"] == {}
    rows = {(x["experiment"], x["config"], x["runtime"], x["metric"]): x["value"]
            for x in doc["results"] if x["stat"] == "median" and x["topology"] == f"lab:{name}"}
    for rt in CONVERGE:
        assert rows[("converge", "n1-n2", rt, "dv_ticks")] >= 4, rt
        for m in ("converge_start_ms", "converge_down_ms", "converge_up_ms"):
            assert rows[("converge", "n1-n2", rt, m)] > 0, (rt, m)
        assert rows[("converge", "n1-n2", rt, "dv_period_ms")] == 200
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"panlab-{name}-" not in listed
