"""``pan lab up --backend mininet`` (pan_runtime.lab.mininetlab), through the command line,
with Debian's Mininet and real ``pan node`` processes: the same topology file comes up as
Mininet hosts linked directly, its links shaped by ``tc``; a ping crosses it, demand-loading
its code hop by hop; ``pan lab down``, and a ``pan lab up`` killed outright, leave no node,
host, Mininet helper, record or folder behind.

Timeouts are hang guards only; what is asserted is states and counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lab_helpers import GUARD, PAN, ROOT, alive, pan, start

from pan_runtime.bench.testbed import mininet_unavailable

pytestmark = pytest.mark.skipif(mininet_unavailable() is not None, reason=f"Mininet labs need Mininet: {mininet_unavailable()}")


def line(tmp_path: Path, name: str) -> Path:
    f = tmp_path / f"{name}.toml"
    # node names unique to this process: Mininet makes each veth pair in the root namespace first
    f.write_text(
        f'[lab]\nname = "{name}"\n\n[defaults]\nruntimes = ["native"]\ntrust = {{ "network.none" = "any" }}\n\n'
        f'[[generate]]\nshape = "line"\nn = 3\nprefix = "m{os.getpid() % 10000}n"\nlink = {{ rate = "200mbit" }}\n'
    )
    return f


def in_host(pid: int, netns: int) -> bool:
    """True while ``pid`` lives (not a zombie) in the network namespace ``netns``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z" and os.stat(f"/proc/{pid}/ns/net").st_ino == netns
    except OSError:
        return False


def assert_nothing_left(env: dict[str, str], name: str, rec: dict) -> None:
    hosts = rec["hosts"]
    nodes = [(int(n["pid"]), hosts[h]["netns"]) for h, n in rec["nodes"].items()]
    shells = [(h["pid"], h["netns"]) for h in hosts.values()]
    others = [rec["holder"], rec["reaper"], rec["helper"]]

    def left() -> list[object]:
        return [p for p, ns in nodes + shells if in_host(p, ns)] + [p for p in others if alive(p)]

    deadline = time.monotonic() + GUARD
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left() == []
    assert not (Path(env["PAN_LAB_DIR"]) / f"{name}.json").exists()
    assert not Path(rec["dir"]).exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert not [h for h in hosts if f" {h}-eth" in links]


def test_a_line_comes_up_on_mininet_carries_a_ping_and_goes_down_leaving_nothing(tmp_path: Path, env: dict[str, str]):
    name = f"m{os.getpid()}"
    f = line(tmp_path, name)
    holder = start([*PAN, "lab", "up", "--backend", "mininet", str(f)], env, name)
    try:
        rec = json.loads((Path(env["PAN_LAB_DIR"]) / f"{name}.json").read_text())
        assert rec["backend"] == "mininet" and rec["ready"] and len(rec["hosts"]) == 3
        first, middle, last = rec["nodes"]
        # the links are Mininet's veth pairs, shaped by tc in the hosts
        r = pan(env, "lab", "exec", name, middle, "--", "tc", "qdisc", "show")
        assert r.returncode == 0 and r.stdout.count(" tbf ") == 2 and f"{middle}-eth1" in r.stdout, r.stdout + r.stderr
        to = rec["nodes"][last]["address"]
        r = pan(env, "lab", "exec", name, first, "--", "sh", "-c", f'pan ping "$PAN_NODE" --runtime native --to {to} -c 3 --timeout 60')
        assert r.returncode == 0 and "3 capsules transmitted, 3 received" in r.stdout, r.stdout + r.stderr
        nodes = json.loads(pan(env, "lab", "status", name, "--json").stdout)["nodes"]
        assert nodes[middle]["demand_fetched"] >= 1 and nodes[last]["demand_fetched"] >= 1, nodes
        down = pan(env, "lab", "down", name)
        assert down.returncode == 0, down.stderr
        assert holder.wait(GUARD) == 0
    finally:
        holder.kill()
        holder.communicate(timeout=60)
    assert_nothing_left(env, name, rec)


def test_a_mininet_lab_whose_holder_is_killed_outright_leaves_nothing(tmp_path: Path, env: dict[str, str]):
    name = f"k{os.getpid()}"
    f = line(tmp_path, name)
    holder = start([*PAN, "lab", "up", "--backend", "mininet", str(f)], env, name)
    try:
        rec = json.loads((Path(env["PAN_LAB_DIR"]) / f"{name}.json").read_text())
        assert all(in_host(h["pid"], h["netns"]) for h in rec["hosts"].values()) and alive(rec["helper"])
        os.kill(rec["holder"], signal.SIGKILL)
        assert_nothing_left(env, name, rec)
    finally:
        holder.kill()
        holder.communicate(timeout=60)


def test_bench_runs_ping_and_converge_on_a_mininet_lab(tmp_path: Path, env: dict[str, str]):
    """``pan bench --lab-backend mininet --topology lab:FILE``: the experiments run on the
    Mininet hosts, converge taking the middle link down and up inside them."""
    name = f"b{os.getpid()}"
    f = line(tmp_path, name)
    f.write_text(f.read_text().replace("[defaults]", 'dv_period = "200ms"\n\n[defaults]').replace("n = 3", "n = 4"))
    out = tmp_path / "r.json"
    r = subprocess.run([*PAN, "bench", "--lab-backend", "mininet", "--topology", f"lab:{f}", "--experiment", "ping,converge",
                        "--quick", "--size", "156", "--runtime", "native", "--json", str(out), "--quiet"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["meta"]["failed"] == {} and doc["meta"]["options"]["lab_backend"] == "mininet"
    rows = {(x["experiment"], x["metric"]): x["value"] for x in doc["results"] if x["stat"] == "median"}
    assert rows[("ping", "rtt_us")] > 0
    assert rows[("converge", "dv_ticks")] >= 4 and rows[("converge", "converge_up_ms")] > 0
    assert not (Path(env["PAN_LAB_DIR"]) / f"{name}.json").exists()
