"""``pan code``, ``pan send`` and ``pan state dump`` against ``pan node`` processes, and the
faults of user code in the node's log: what a user types, what the node then holds, and the
errors a user meets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from nethelpers import LineBed, pan

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net.client import Client

BUGGY = b"def accept(pni, capsule, length):\n    return no_such_name + 1\n"


@pytest.fixture(scope="module")
def bed():
    b = LineBed()
    try:
        yield b
    finally:
        assert b.close() == [0, 0, 0]


@pytest.fixture(scope="module")
def pcos(tmp_path_factory):
    d = tmp_path_factory.mktemp("pco")
    return {
        "forward": reference_code("wasm", "forward").write(d / "fwd.pco"),
        "portmapper": reference_code("wasm", "portmapper").write(d / "pm.pco"),
        "buggy": CodeObject.create("restricted_py", BUGGY, meta={"sources": ["buggy.py"]}).write(d / "buggy.pco"),
    }


def _installed(sock: str) -> dict[str, dict]:
    with Client(sock) as c:
        return {x["name"]: x for x in c.list_code()}


def test_install_list_show_remove(bed, pcos):
    sock = bed.sockets[1]
    fwd = CodeObject.read(pcos["forward"])
    p = pan("code", "install", sock, str(pcos["forward"]))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"installed {fwd.short_name} (wasm, {fwd.size} bytes) on middle"
    assert _installed(sock)[fwd.hex_name]["origin"] == "local"

    p = pan("code", "list", sock)
    assert p.returncode == 0, p.stderr
    head, _, *rows = p.stdout.splitlines()
    assert head.split()[:5] == ["code", "runtime", "origin", "flags", "bytes"]
    row = next(r.split() for r in rows if r.startswith("forward-wasm@"))
    assert row[:3] == [fwd.short_name, "wasm", "local"] and row[4] == str(fwd.size)
    listed = json.loads(pan("code", "list", sock, "--json").stdout)
    mine = next(x for x in listed if x["name"] == fwd.hex_name)
    assert mine["manifest_label"] == "forward-wasm" and mine["exports"] == [] and "capsules_in" in mine["stats"]

    # one code object, named five ways
    for name in (fwd.hex_name, fwd.hex_name[:8], fwd.short_name, "forward-wasm", str(pcos["forward"])):
        p = pan("code", "show", sock, name)
        assert p.returncode == 0, (name, p.stderr)
        assert re.search(rf"^code object\s+{fwd.hex_name}$", p.stdout, re.M)
        assert re.search(r"^label\s+forward-wasm@", p.stdout, re.M)
        assert re.search(r"^drops\s+none$", p.stdout, re.M)
    shown = json.loads(pan("code", "show", sock, "forward", "--json").stdout)
    assert shown["name"] == fwd.hex_name and shown["stats"]["dropped"] == 0

    p = pan("code", "remove", sock, "forward-wasm")
    assert p.returncode == 0 and p.stdout.strip() == f"removed {fwd.short_name} from middle"
    assert fwd.hex_name not in _installed(sock)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["code", "show", "{sock}", "nosuch"], "no code object 'nosuch' on the node (installed: "),
        (["code", "remove", "{sock}", "{pco}"], "is not installed on the node"),
        (["code", "install", "{sock}", "/nonexistent.pco"], "/nonexistent.pco"),
        (["code", "list", "/tmp/pan-no-such-node.sock"], "cannot connect to the node at /tmp/pan-no-such-node.sock"),
        (["send", "{sock}", "{pco}", "--hex", "zz"], "is not hex digits"),
        (["state", "dump", "{sock}", "nosuch"], "no code object 'nosuch'"),
    ],
)
def test_errors_a_user_meets(bed, pcos, args, message):
    p = pan(*(a.format(sock=bed.sockets[2], pco=pcos["buggy"]) for a in args))
    assert p.returncode == 2, p.stdout
    assert re.match(r"pan \w+: error: ", p.stderr) and message in p.stderr


def test_an_ambiguous_prefix_is_refused(bed, pcos):
    sock = bed.sockets[2]
    with Client(sock) as c:
        names = [x["name"] for x in c.list_code()]
        c.install(CodeObject.read(pcos["portmapper"]))
        names = [x["name"] for x in c.list_code()]
    assert len(names) >= 1
    p = pan("code", "show", sock, "port")  # beginning of a label: one match
    assert p.returncode == 0, p.stderr
    p = pan("code", "show", sock, "-")  # the beginning of no label, and too short for a hex prefix
    assert p.returncode == 2


def test_send_one_capsule_with_a_body_from_hex_file_or_stdin(bed, pcos, tmp_path):
    sock = bed.sockets[0]
    assert pan("code", "install", sock, str(pcos["portmapper"]), "--portmapper").returncode == 0
    me = NodeAddress.parse(bed.addresses[0]).raw
    body = me + (9).to_bytes(2, "big") + b"\x00\x00" + b"hello"
    p = pan("send", sock, str(pcos["forward"]), "--hex", body.hex(), "--port", "9", "-W", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0].startswith("sent a capsule of forward-wasm@")
    assert "with 25 body bytes into sender" in p.stdout
    assert f"delivery on port 9: 25 bytes: {body.hex()}" in p.stdout
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    p = pan("send", sock, "forward", "--file", str(f), "--port", "9", "-W", "60", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["body_bytes"] == 25 and doc["outcome"]["delivered"] == 1
    assert [d["data"] for d in doc["deliveries"]] == [body.hex()]
    p = subprocess.run([sys.executable, "-m", "pan_runtime.cli.main", "send", sock, "forward", "-f", "-", "--port", "9",
                        "-W", "60", "--json"], input=body, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["deliveries"][0]["data"] == body.hex()


def test_send_tells_where_a_capsule_was_dropped(bed, pcos):
    nowhere = NodeAddress.parse("127.0.0.1:1").raw
    p = pan("send", bed.sockets[0], "forward", "--hex", (nowhere + bytes(4)).hex(), "-W", "60")
    assert p.returncode == 0, p.stderr
    assert "sender: dropped 1: no_route" in p.stdout
    # and the node's error report came back to the sending application
    assert f"From {bed.addresses[0]}: no route: no route to 127.0.0.1:1" in p.stdout


def test_send_takes_the_name_of_code_the_node_lacks(bed):
    p = pan("send", bed.sockets[0], "ab" * 32, "-W", "60")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"sent a capsule of {'ab' * 6} with 0 body bytes into sender"
    assert "sender: dropped 1: no_code" in p.stdout


def test_state_dump_shows_a_flow_record(bed):
    p = pan("flood", bed.sockets[0], "--to", bed.addresses[2], "-n", "300", "--report-every", "100", "-W", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    p = pan("state", "dump", bed.sockets[2], "flood-wasm")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("soft state of flood-wasm@")
    assert re.search(r"^666c6f77[0-9a-f]{8}\s+flow\S*\s+28\s+0000012c", p.stdout, re.M)  # count 300 first
    doc = json.loads(pan("state", "dump", bed.sockets[2], "flood", "--json").stdout)
    flows = [e for e in doc["entries"] if e["key"].startswith("666c6f77")]
    assert flows and all(len(bytes.fromhex(e["value"])) == 28 for e in flows)
    assert any(int(e["value"][:8], 16) == 300 for e in flows) and all(e["ttl_ms"] > 0 for e in flows)
    assert doc["count"] >= len(flows) and doc["truncated"] is False
    one = json.loads(pan("state", "dump", bed.sockets[2], "flood", "--json", "--max-entries", "1").stdout)
    assert len(one["entries"]) == 1 and one["truncated"] is (doc["count"] > 1)


NOBODY = 65534
PEER = """
import os, sys
from pan_runtime.errors import OwnershipError
from pan_runtime.net.client import Client

os.setgid(%(uid)d)
os.setuid(%(uid)d)
with Client(sys.argv[1]) as c:
    name = next(x["name"] for x in c.list_code() if x["label"].startswith("flood-wasm@"))
    try:
        c.soft_state(bytes.fromhex(name))
    except OwnershipError as exc:
        print("refused:", exc)
"""


def test_soft_state_is_only_for_the_nodes_user_or_root(bed):
    path = bed.sockets[2]
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, 0o777)  # let another user connect
    r = subprocess.run([sys.executable, "-c", PEER % {"uid": NOBODY}, path], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused: reading soft state is for the node's user")


def test_a_fault_in_user_code_is_a_warning_with_its_label_and_message(bed, pcos):
    sock = bed.sockets[1]
    buggy = CodeObject.read(pcos["buggy"])
    assert buggy.short_name.startswith("buggy@")  # named after its source file
    for _ in range(3):
        p = pan("send", sock, str(pcos["buggy"]), "-W", "60")
        assert p.returncode == 0, p.stderr
        assert "middle: ran it: faulted 1" in p.stdout and "middle: dropped 1: code_error" in p.stdout
    lines = [x for x in bed.log(1).splitlines() if "faulted" in x]
    # one line (the next may come ten seconds later), with a time stamp, the code and the message
    assert len(lines) == 1, lines
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING pan\.node: middle: code buggy@", lines[0])
    assert "(restricted_py) faulted [code_error]" in lines[0] and "name 'no_such_name' is not defined" in lines[0]
    st = json.loads(pan("code", "show", sock, "buggy", "--json").stdout)["stats"]
    assert st["errors"] == 3 and st["drops"] == {"code_error": 3}
