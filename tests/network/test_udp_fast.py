"""The door between the node and the UDP fast path (``pan_runtime.net.udp_fast``).

How many times a capsule crosses between C and Python is held to what the design needs:
none for a capsule finished in C, one for a datagram or a capsule handed to the node, two
for a capsule whose code reached the node's host during its run (the claim and the hand-
over). The hop limit is taken once per node on every way through, and the fast path reads
nothing private of the node, the pool or the transport.
"""

from __future__ import annotations

import ast
import contextlib
import socket
import struct
import types
from pathlib import Path

import pytest
from nethelpers import FakePeer, daemon_from, free_udp_ports, pump
from test_net_fastpath import (  # noqa: F401
    PORT,
    RUNTIMES,
    N,
    _forward_line,
    _install_everywhere,
    _line,
    _ping_run,
    tmpdir_short,
)
from test_net_udp import forward_body

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.wire import HEADER_SIZE, HOP_LIMIT_OFFSET
from pan_runtime.net import udp_fast
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import PingHdr
from pan_runtime.testing import build_case

#: SO_NO_CHECK (asm-generic/socket.h): send without UDP checksums
_SO_NO_CHECK = 11

# forward, after a call the fast path does not answer without an environment
REACHES_HOST = """
def accept(pni, capsule, length):
    pni.state_put(b"k", b"v", 0)
    return FORWARD
"""


def _fast(d) -> dict:
    return d.transport.info()["fast_path"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_capsule_handed_over_after_its_run_crosses_once(tmpdir_short, runtime):  # noqa: F811
    with _forward_line(tmpdir_short) as t:
        from test_net_fastpath import _install_everywhere

        code = _install_everywhere(t.ds, runtime, "forward")
        for i in range(5):
            t.src.send(code, forward_body(t.receiver.node.address, struct.pack(">I", i)))
        assert pump(t.ds, lambda: t.app.pending == 5)
        mid, rcv = _fast(t.middle), _fast(t.receiver)
        assert mid["finished_in_c"] == 5 and mid["crossings"] == 0  # no Python at all
        # at the receiver the code's FORWARD names the receiver: the node delivers it
        assert rcv["handed_over"] == 5 and rcv["slow"] == 0 and rcv["crossings"] == 5


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_capsule_whose_code_reaches_the_host_crosses_twice(tmpdir_short, runtime):  # noqa: F811
    _, paths = _ping_run(tmpdir_short, runtime, fast=True)
    # the receiver's ping code keeps a count in soft state: claimed during the run, handed over after it
    assert paths["receiver"]["handed_over"] == N and paths["receiver"]["crossings"] == 2 * N
    assert paths["middle"]["finished_in_c"] == 2 * N and paths["middle"]["crossings"] == 0


def test_a_datagram_for_the_python_path_crosses_once(tmpdir_short):  # noqa: F811
    with _forward_line(tmpdir_short, peer=True) as t:
        good = capsule_bytes(t.code, forward_body(t.receiver.node.address, b"x"), t.peer.address)
        for bad in (good[:20], b"\x09" + good[1:], good[:1] + b"\x80" + good[2:]):
            t.peer.send(bad, t.mport)
        t.peer.send(good, t.mport)
        assert pump(t.ds, lambda: t.middle.statistics()["sent"] == 1 and t.middle.statistics()["dropped"] == 3)
        info = _fast(t.middle)
        assert info["slow"] == 3 and info["finished_in_c"] == 1 and info["crossings"] == 3


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
def test_a_capsule_handed_over_mid_run_loses_one_hop(tmpdir_short, fast):  # noqa: F811
    src = tmpdir_short / "reaches.py"
    src.write_text(REACHES_HOST)
    plugins = default_plugins()
    code = plugins.builders.find("restricted_py", ".py").build(BuildRequest([src], "restricted_py", [], [], "reaches"))
    with _forward_line(tmpdir_short, fast, peer=True) as t:
        for d in t.ds:
            d.node.install(code)
        for hop in (2, 1):
            t.peer.send(capsule_bytes(code, forward_body(t.receiver.node.address, b"hop %d" % hop), t.peer.address, hop), t.mport)
        drops = t.receiver.node.stats.drops
        assert pump(t.ds, lambda: t.app.pending == 1 and drops["hop_limit"] == 1)
        assert [d.data[20:] for d in t.app.deliveries()] == [b"hop 2"]
        if fast:  # the middle ran both from the fast path and forwarded them from Python
            assert _fast(t.middle)["handed_over"] == 2 and _fast(t.middle)["crossings"] == 4


def test_the_pool_is_whole_between_turns(tmpdir_short):  # noqa: F811
    with _forward_line(tmpdir_short) as t:
        t.src.send(t.code, forward_body(t.receiver.node.address, b"x"))
        assert pump(t.ds, lambda: t.app.pending == 1)
        assert all(d.node.pool.whole for d in t.ds)


def test_the_fast_path_reads_nothing_private_of_the_node():
    tree = ast.parse(Path(udp_fast.__file__).read_text(encoding="utf-8"))
    private = [
        f"line {n.lineno}: {ast.unparse(n)}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr.startswith("_")
        and not (n.attr.startswith("__") and n.attr.endswith("__"))
        and not (isinstance(n.value, ast.Name) and n.value.id == "self")
    ]
    assert private == []
    node_uses = {
        n.attr for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "node"
    }
    # the door: snapshot functions take the node; these are the only members it touches
    assert node_uses <= {"hand_over", "counter_sources", "stats", "cache", "pool"}, node_uses


# -- batches: system calls and crossings -----------------------------------------------------

BURST = 40


@contextlib.contextmanager
def _peer_line(tmpdir, runtime: str, limits: str = ""):
    """Sender (a FakePeer in the sender's place), middle, receiver; ``runtime``'s forward code
    everywhere and an application bound at the receiver."""
    ds = _line(tmpdir, True, limits)
    sender, middle, receiver = ds
    peer = None
    try:
        code = _install_everywhere(ds, runtime, "forward")
        app = Application(receiver.node)
        app.bind(PORT)
        port = sender.transport.endpoints[0][1]
        sender.close()
        peer = FakePeer(port)
        yield types.SimpleNamespace(ds=ds[1:], middle=middle, receiver=receiver, code=code, app=app, peer=peer,
                                    mport=middle.transport.endpoints[0][1])
    finally:
        if peer is not None:
            peer.close()
        for d in ds:
            d.close()


def _syscalls(d) -> dict:
    return d.transport.info()["syscalls"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_burst_crosses_a_middle_whole_in_fewer_receive_calls_than_datagrams(tmpdir_short, runtime):  # noqa: F811
    with _peer_line(tmpdir_short, runtime) as t:
        assert pump(t.ds, lambda: False, timeout=0.2) is False  # settle: the nodes' own traffic first
        before = _syscalls(t.middle)
        for i in range(BURST):  # all of it in the middle's socket before the middle reads
            t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, struct.pack(">I", i)), t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending == BURST)
        got = sorted(struct.unpack(">I", d.data[20:24])[0] for d in t.app.deliveries())
        assert got == list(range(BURST))
        after = _syscalls(t.middle)
        read = after["recv_datagrams"] - before["recv_datagrams"]
        calls = after["recv_calls"] - before["recv_calls"]
        sends = after["send_calls"] - before["send_calls"]
        assert read == BURST and after["send_datagrams"] - before["send_datagrams"] == BURST
        assert 1 <= calls < read and 1 <= sends < BURST, after
        fast = _fast(t.middle)
        assert fast["finished_in_c"] == BURST and fast["crossings"] == 0
        # the capsules of one receive went into the runtime together (restricted_py too)
        assert 1 <= fast["batch_calls"] < BURST and fast["batched"] >= BURST // 2, fast


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_lone_capsule_is_forwarded_without_waiting_for_a_batch(tmpdir_short, runtime):  # noqa: F811
    with _peer_line(tmpdir_short, runtime) as t:
        assert pump(t.ds, lambda: False, timeout=0.2) is False
        for i in range(3):  # one at a time, each answered before the next goes
            before = _syscalls(t.middle)
            t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, b"lone %d" % i), t.peer.address), t.mport)
            assert pump(t.ds, lambda i=i: t.app.pending == i + 1)
            after = _syscalls(t.middle)
            # one receive read it (a short read: no second call to find the socket empty, no
            # peek), one send (a sendmmsg, or with io_uring an entry of the wait's next call). A
            # loaded machine may make one more receive: when capsules have been slow, the
            # fair-share estimate asks the first receive for one datagram only, and a full
            # receive is no evidence that the socket is empty.
            assert after["recv_datagrams"] - before["recv_datagrams"] == 1
            assert after["peeks"] - before["peeks"] == 0
            sends = after["send_calls"] + after["uring_sends"] - before["send_calls"] - before["uring_sends"]
            assert sends == 1
            assert after["recv_calls"] - before["recv_calls"] in (1, 2)
        assert [d.data[20:] for d in t.app.deliveries()] == [b"lone 0", b"lone 1", b"lone 2"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ping_with_batching_on_matches_the_python_path(tmpdir_short, runtime):  # noqa: F811
    limits = "batch = 8\n"
    slow, _ = _ping_run(tmpdir_short, runtime, fast=False, limits=limits)
    fast, paths = _ping_run(tmpdir_short, runtime, fast=True, limits=limits)
    assert fast == slow
    assert paths["middle"]["finished_in_c"] == 2 * N and paths["receiver"]["handed_over"] == N


def test_stats_show_system_calls_per_capsule(tmpdir_short):  # noqa: F811
    with _peer_line(tmpdir_short, "native") as t:
        for i in range(BURST):
            t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, b"%d" % i), t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending == BURST)
        text = format_stats(t.middle.statistics())
        sc = _syscalls(t.middle)
        assert f"recv {sc['recv_calls']} ({sc['recv_datagrams']} datagrams)" in text
        assert "system calls per capsule" in text


#: a flood big enough that a visit's size, not its first or last turn, sets the count
FLOOD = 1000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_flood_costs_the_middle_under_a_tenth_of_a_system_call_per_capsule(tmpdir_short, runtime):  # noqa: F811
    # the neighbour's own buffer holds the whole flood, so it is all waiting when the middle
    # reads: a count of calls that a slow machine cannot move (visits end by count, not time)
    with _peer_line(tmpdir_short, runtime, "neighbour_buffer = 16777216\n") as t:
        assert pump(t.ds, lambda: False, timeout=0.2) is False
        before = _syscalls(t.middle)
        for i in range(FLOOD):
            t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, struct.pack(">I", i) + bytes(1400)),
                                      t.peer.address), t.mport)
        assert pump([t.middle], lambda: _syscalls(t.middle)["send_datagrams"] - before["send_datagrams"] >= FLOOD)
        after = _syscalls(t.middle)
        diff = {k: after[k] - before[k] for k in ("recv_calls", "recv_datagrams", "send_calls", "send_datagrams",
                                                  "peeks", "waits", "uring_enters")}
        assert diff["recv_datagrams"] == diff["send_datagrams"] == FLOOD, diff
        calls = diff["recv_calls"] + diff["send_calls"] + diff["peeks"] + diff["waits"] + diff["uring_enters"]
        assert calls <= FLOOD // 10, diff
        assert _fast(t.middle)["finished_in_c"] >= FLOOD


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_run_of_capsules_crosses_into_the_runtime_once_and_stops_at_one_that_does_not_forward(tmpdir_short, runtime):  # noqa: F811
    # every runtime's batch entry (restricted_py's too): the capsules of one receive go in
    # together, the batch ends at the capsule whose run does not forward (a body too short to
    # name a destination), which alone crosses to the node; the rest go on in a new batch
    with _peer_line(tmpdir_short, runtime) as t:
        assert pump(t.ds, lambda: False, timeout=0.2) is False
        good = [capsule_bytes(t.code, forward_body(t.receiver.node.address, b"%d" % i), t.peer.address) for i in range(BURST)]
        bad = capsule_bytes(t.code, b"", t.peer.address)
        for data in good[: BURST // 2] + [bad] + good[BURST // 2:]:  # all waiting before the middle reads
            t.peer.send(data, t.mport)
        assert pump(t.ds, lambda: t.app.pending == BURST)
        assert pump(t.ds, lambda: t.middle.statistics()["code"][t.code.hex_name]["capsules_in"] == BURST + 1)
        fast = _fast(t.middle)
        assert fast["finished_in_c"] == BURST and fast["handed_over"] == 1 and fast["crossings"] == 1, fast
        assert 2 <= fast["batch_calls"] < BURST and fast["batched"] >= BURST // 2, fast
        c = t.middle.statistics()["code"][t.code.hex_name]
        assert c["forwarded"] == BURST and c["forwarded"] + c["dropped"] + c["done"] + c["delivered"] == BURST + 1, c


@contextlib.contextmanager
def _fan_out(tmpdir, runtime: str, limits: str = "", broadcast: bool = False):
    """A middle node with three neighbours played by sockets: a sender and two receivers; with
    ``broadcast`` a fourth at 255.255.255.255, a destination the kernel refuses to send to
    (EACCES without SO_BROADCAST)."""
    mport, *ports = free_udp_ports(4)
    peers = [FakePeer(p, rcvbuf=8 << 20) for p in ports]
    cfg = tmpdir / "middle.toml"
    cfg.write_text(f'[node]\nlisten = ["127.0.0.1:{mport}"]\n'
                   + "".join(f'[[neighbors]]\naddress = "127.0.0.1:{p}"\n' for p in ports)
                   + (f'[[neighbors]]\naddress = "255.255.255.255:{ports[0]}"\n' if broadcast else "")
                   + "[limits]\nneighbour_buffer = 16777216\n" + limits)
    d = daemon_from(cfg)
    try:
        code = reference_code(runtime, "forward")
        d.node.install(code)
        yield types.SimpleNamespace(middle=d, mport=mport, sender=peers[0], receivers=peers[1:], code=code)
    finally:
        d.close()
        for p in peers:
            p.close()


def _mixed_flood(t, n: int = 600) -> dict[int, list[bytes]]:
    """Queue ``n`` capsules at the middle before it reads: runs toward one receiver or the
    other, of one size, now and then a shorter one; what each receiver should get, in order."""
    import random

    rng = random.Random(11)
    want: dict[int, list[bytes]] = {0: [], 1: []}
    i = 0
    while i < n:
        to, size = rng.randrange(2), rng.choice((200, 900, 1400))
        for _ in range(min(n - i, rng.randrange(1, 50))):
            payload = struct.pack(">I", i) + bytes(size if rng.randrange(8) else rng.randrange(size))
            data = capsule_bytes(t.code, forward_body(t.receivers[to].address, payload), t.sender.address)
            t.sender.sock.sendto(data, ("127.0.0.1", t.mport))
            want[to].append(data[:HOP_LIMIT_OFFSET] + bytes([data[HOP_LIMIT_OFFSET] - 1]) + data[HOP_LIMIT_OFFSET + 1:])
            i += 1
    return want


def _carry(t, want: dict[int, list[bytes]]) -> dict:
    total = sum(len(v) for v in want.values())
    assert pump([t.middle], lambda: sum(r.collect() for r in t.receivers) >= total)
    for k, r in enumerate(t.receivers):  # each one whole, alone, in the order sent
        assert r.got == want[k]
    return _syscalls(t.middle)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_capsule_whose_code_calls_the_node_mid_batch_is_the_one_the_node_takes_over(tmpdir_short, runtime):  # noqa: F811
    """One receive's burst of pings: those passing toward a receiver run in C, and between them
    pings for the middle itself, whose code writes soft state (a call the node answers in
    Python: it takes that capsule over in the middle of the runtime's batch). Every ping goes
    where its own header says, once: the transit ones on to the receiver, the middle's back."""
    with _fan_out(tmpdir_short, runtime) as t:
        ping = reference_code(runtime, "ping")
        t.middle.node.install(ping)
        receiver, middle = t.receivers[0].address, t.middle.node.address
        dests = [receiver, middle, receiver, receiver, middle, receiver]
        for seq, dest in enumerate(dests):  # queued before the middle reads: one receive
            body = PingHdr(dest=dest.raw, port=7, phase=0, src=t.sender.address.raw, seq=seq).pack() + bytes(16)
            t.sender.sock.sendto(capsule_bytes(ping, body, t.sender.address), ("127.0.0.1", t.mport))

        def headers(peer: FakePeer) -> list[tuple[int, int]]:
            return sorted((h.seq, h.phase) for h in (PingHdr.unpack(d[HEADER_SIZE:]) for d in peer.got))

        assert pump([t.middle], lambda: t.receivers[0].collect() >= 4 and t.sender.collect() >= 2)
        assert headers(t.receivers[0]) == [(0, 0), (2, 0), (3, 0), (5, 0)]
        assert headers(t.sender) == [(1, 1), (4, 1)]
        entry = t.middle.node.cache.peek(ping.name)
        assert entry is not None and bytes(entry.state.get(b"pinged")) == (2).to_bytes(8, "big")


#: forward; a capsule with body byte 20 set asks the node its hop limit and writes it to byte 21
HOPMARK = Path(__file__).parent / "cases" / "hopmark"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_call_only_the_node_answers_mid_batch_is_answered_for_the_capsule_that_made_it(tmpdir_short, runtime):  # noqa: F811
    """One receive's burst of one code object from one neighbour, each capsule with a hop limit
    of its own; capsules in the middle of the run ask the node their hop limit (the node takes
    the running capsule over to answer) and write it into their body. Each must carry its own:
    the node claimed the capsule that was running, not another of its batch."""
    with _fan_out(tmpdir_short, runtime) as t:
        code = build_case(HOPMARK, runtime, default_plugins())
        t.middle.node.install(code)
        marked = {3, 6, 7}
        for i in range(10):  # queued before the middle reads: one receive
            body = forward_body(t.receivers[0].address, bytes([i in marked, 0]) + struct.pack(">I", i) + bytes(8))
            data = bytearray(capsule_bytes(code, body, t.sender.address))
            data[HOP_LIMIT_OFFSET] = 20 + i
            t.sender.sock.sendto(data, ("127.0.0.1", t.mport))
        assert pump([t.middle], lambda: t.receivers[0].collect() >= 10)
        got = {}
        for d in t.receivers[0].got:
            body = d[HEADER_SIZE:]
            got[struct.unpack_from(">I", body, 22)[0]] = (d[HOP_LIMIT_OFFSET], body[20], body[21])
        assert got == {i: (19 + i, i in marked, 19 + i if i in marked else 0) for i in range(10)}
        fast = _fast(t.middle)
        assert fast["handed_over"] == len(marked) and 2 <= fast["batch_calls"] < 10, fast


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_forwards_toward_one_hop_leave_as_udp_gso_and_arrive_as_the_datagrams_they_were(tmpdir_short, runtime):  # noqa: F811
    with _fan_out(tmpdir_short, runtime) as t:
        sc = _carry(t, _mixed_flood(t))
        # fewer messages than datagrams left the middle, each GSO one carrying several
        assert sc["gso_sends"] >= 1 and sc["gso_datagrams"] >= 2 * sc["gso_sends"] and sc["gso_refused"] == 0, sc
        assert "UDP GSO" in format_stats(t.middle.statistics())


def test_udp_gso_refused_by_the_kernel_is_counted_and_the_forwards_go_without(tmpdir_short):  # noqa: F811
    with _fan_out(tmpdir_short, "native") as t:
        # a socket without UDP checksums is one the kernel refuses GSO on (EINVAL)
        t.middle.transport.sockets[socket.AF_INET].setsockopt(socket.SOL_SOCKET, _SO_NO_CHECK, 1)
        sc = _carry(t, _mixed_flood(t))
        assert sc["gso_refused"] >= 1 and sc["gso_sends"] == 0, sc
        assert t.middle.statistics()["drops"] == {}


def test_udp_gso_can_be_turned_off(tmpdir_short):  # noqa: F811
    with _fan_out(tmpdir_short, "native", "udp_gso = false\n") as t:
        sc = _carry(t, _mixed_flood(t))
        assert sc["gso_sends"] == sc["gso_refused"] == 0 and sc["send_calls"] < sc["send_datagrams"], sc
