"""``pan ping``, ``pan flood`` and ``pan stats`` against three ``pan node`` processes with the
default trust rules: the default runtime's code is taken from the network unsigned, unsigned
native code is not (and the sender says why before it waits), ``--key`` signs on the fly,
``--json`` and ``-W`` work, flood reports per interval, and stats names every drop reason.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from nethelpers import LineBed, NodeProcesses, free_udp_ports, pan, remove_tree, short_dir

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.client import Client


@pytest.fixture(scope="module")
def bed():
    b = LineBed()
    try:
        yield b
    finally:
        assert b.close() == [0, 0, 0]


def test_ping_works_in_the_default_setup_with_json(bed):
    p = pan("ping", bed.sockets[0], "--to", bed.addresses[2], "-c", "3", "-W", "60", "--json")
    assert p.returncode == 0, p.stdout + p.stderr + bed.procs.output()
    doc = json.loads(p.stdout)
    assert doc["code"]["runtime"] == "wasm" and not doc["code"]["signed"]
    assert doc["code"]["label"].startswith("ping-wasm@")
    assert (doc["transmitted"], doc["received"], doc["loss_percent"]) == (3, 3, 0.0)
    assert doc["destination"] == bed.addresses[2] and doc["source"] == bed.addresses[0]
    assert doc["timeout_s"] == 60.0
    assert [r["seq"] for r in doc["replies"]] == [0, 1, 2] and all(r["rtt_us"] > 0 for r in doc["replies"])
    assert doc["rtt_us"]["min"] <= doc["rtt_us"]["median"] <= doc["rtt_us"]["max"]
    # the middle took the code from the network, unsigned, under the default rules
    with Client(bed.sockets[1]) as c:
        got = {x["name"]: x for x in c.list_code()}
    assert got[doc["code"]["name"]]["origin"] == "network"


def test_unsigned_native_code_is_refused_and_the_sender_says_why_before_waiting(bed):
    p = pan("ping", bed.sockets[0], "--to", bed.addresses[2], "--runtime", "native", "-c", "1", "-W", "60")
    assert p.returncode == 1
    assert "unsigned native code" in p.stderr and "trust rule network.none = signed" in p.stderr
    assert "--key" in p.stderr
    assert "1 capsules transmitted, 0 received" in p.stdout
    # the middle's error report ends the wait
    assert f"From {bed.addresses[1]}: seq=0 trust refused the code (rule network.none)" in p.stdout
    assert "fix: sign the native code with a key that node trusts (--key KEY, or pan sign)" in p.stdout


@pytest.mark.parametrize("runtime", ["native", "jvm", "restricted_py"])
def test_key_signs_the_code_on_the_fly(bed, runtime):
    # native runs after the refusal above: the sender holds the unsigned copy of the same
    # code object, and must serve the signed one from now on (once the middle's memory of
    # the failed fetch, two seconds, has passed)
    time.sleep(2.5)
    p = pan("ping", bed.sockets[0], "--to", bed.addresses[2], "--runtime", runtime, "--key", str(bed.key_path),
            "-c", "2", "-W", "120", "--json")
    assert p.returncode == 0, p.stdout + p.stderr + bed.procs.output()
    doc = json.loads(p.stdout)
    assert doc["code"]["runtime"] == runtime and doc["code"]["signed"]
    assert doc["received"] == 2
    assert "note:" not in p.stderr


def test_ping_names_the_runtime_of_the_code_it_was_given(bed, tmp_path):
    pco = reference_code("restricted_py", "ping").write(tmp_path / "myping.pco")
    p = pan("ping", bed.sockets[0], "--to", bed.addresses[2], "--code", str(pco), "--key", str(bed.key_path),
            "-c", "1", "-W", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    head = p.stdout.splitlines()[0]
    assert "with restricted_py code ping-restricted_py@" in head and "native" not in head


def test_flood_reports_per_interval_like_iperf(bed):
    p = pan("flood", bed.sockets[0], "--to", bed.addresses[2], "-n", "3000", "--report-every", "100",
            "-i", "0.000001", "-W", "60")
    assert p.returncode == 0, p.stdout + p.stderr + bed.procs.output()
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"FLOOD {bed.addresses[2]} from {bed.addresses[0]} with wasm code flood-wasm@")
    assert re.match(r"\s+interval\s+capsules\s+transfer\s+capsules/s\s+Mbit/s$", lines[1])
    rows = [line for line in lines if re.match(r"\s+\d+\.\d\d-\d+\.\d\d s\s+\d+", line)]
    # with an interval shorter than any report gap, each of the receiver's reports closes one
    assert len(rows) == 3000 // 100 + 1  # the intervals and the summary over the whole flow
    assert sum(int(r.split()[2]) for r in rows[:-1]) == int(rows[-1].split()[2]) == 3000
    assert rows[-1].endswith("receiver")
    assert "receiver counted 3000 of 3000 capsules" in p.stdout


def test_flood_json_carries_the_intervals(bed):
    p = pan("flood", bed.sockets[0], "--to", bed.addresses[2], "-n", "2000", "--report-every", "250", "-i", "0.000001",
            "-W", "60", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["sent"] == doc["received"] == 2000 and doc["not_reported"] == 0
    assert len(doc["intervals"]) == 8
    assert sum(i["capsules"] for i in doc["intervals"]) == 2000
    assert sum(i["bytes"] for i in doc["intervals"]) == doc["bytes"] == 2000 * 512
    ends = [i["end_s"] for i in doc["intervals"]]
    assert ends == sorted(ends) and doc["intervals"][0]["start_s"] == 0.0
    assert all(i["capsules_per_s"] > 0 for i in doc["intervals"])


def test_stats_lists_drop_reasons_by_where_they_happened(bed):
    # a refused fetch at the middle (the native ping above, or now) and a code fault there
    pan("ping", bed.sockets[0], "--to", bed.addresses[2], "--runtime", "native", "-c", "1", "-W", "1")
    p = pan("stats", bed.sockets[1])
    assert p.returncode == 0, p.stderr
    table = p.stdout[p.stdout.index("drop reason"):]
    head, rule, *rows = table.splitlines()
    assert head.split() == ["drop", "reason", "count", "where"]
    reasons = {r.split()[0]: r.split()[-1] for r in rows[:2]}
    assert reasons.get("trust:network.none") == "node"
    p = pan("stats", bed.sockets[1], "--json")
    assert json.loads(p.stdout)["drops"]["trust:network.none"] >= 1


def test_verbosity_flags_work_after_the_command(bed):
    p = pan("stats", bed.sockets[0], "-v")
    assert p.returncode == 0, p.stderr
    p = pan("stats", bed.sockets[0], "-q", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["name"] == "sender"


def _ipv6_pair(d):
    pa, pb = free_udp_ports(2, "::1")
    paths = []
    for name, mine, other in (("a", pa, pb), ("b", pb, pa)):
        path = d / f"{name}.toml"
        path.write_text(
            f'[node]\nname = "{name}"\nlisten = ["[::1]:{mine}"]\napp_socket = "{name}.sock"\n'
            f'[[neighbors]]\naddress = "[::1]:{other}"\nendpoint = "[::1]:{other}"\n'
        )
        paths.append(path)
    return paths, pa, pb


def test_ipv6_addresses_print_as_typed():
    d = short_dir()
    (a, b), pa, pb = _ipv6_pair(d)
    procs = NodeProcesses([a, b], d)
    try:
        procs.wait_ready(120.0)
        assert f"pan node [::1]:{pa}: ready" in procs.logs[0].read_text()
        p = pan("stats", str(d / "a.sock"))
        assert p.returncode == 0, p.stderr
        assert f"node a ([::1]:{pa})" in p.stdout
        nbr = next(line for line in p.stdout.splitlines() if line.startswith("[::1]"))
        assert nbr.split()[:2] == [f"[::1]:{pb}", f"[::1]:{pb}"]
        route = next(line for line in p.stdout[p.stdout.index("route to"):].splitlines()[2:])
        assert route.split()[:2] == [f"[::1]:{pb}", f"[::1]:{pb}"]
        p = pan("ping", str(d / "a.sock"), "--to", f"[::1]:{pb}", "-c", "1", "-W", "60")
        assert p.returncode == 0, p.stdout + p.stderr + procs.output()
        assert p.stdout.startswith(f"PING [::1]:{pb} from [::1]:{pa} with wasm code")
        assert f"bytes from [::1]:{pb}: seq=0" in p.stdout
    finally:
        codes = procs.stop()
        remove_tree(d)
    assert codes == [0, 0]
