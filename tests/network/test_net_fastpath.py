"""The compiled UDP fast path: built here, and indistinguishable from the Python path.

Three daemons in a line on loopback run the same traffic twice, with the fast path on and
off (``limits.fast_path``); deliveries and every counter must agree, and the fast path's
own report must show which way the capsules went.
"""

from __future__ import annotations

import contextlib
import struct
import types

import pytest
import wasmtime
from nethelpers import daemon_from, free_udp_ports, line_configs, pump, remove_tree, short_dir
from test_net_udp import FakePeer, forward_body

from pan_runtime.cli.netcli import format_stats
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.net import udp_fast as fastpath
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.protocol_headers import PingHdr
from pan_runtime.resources import cases_dir
from pan_runtime.testing import build_case

PORT = 7
RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
CASES = cases_dir()
N = 20


@pytest.fixture
def tmpdir_short():
    d = short_dir()
    yield d
    remove_tree(d)


def test_the_fast_path_is_built_here():
    # CI machines have a C compiler: a missing extension is a broken install, not a skip
    assert fastpath.available(), fastpath.unavailable_reason()


def _line(tmpdir, fast: bool, limits: str = ""):
    extra = "[limits]\n" + ("" if fast else "fast_path = false\n") + limits
    ds = [daemon_from(c) for c in line_configs(tmpdir, free_udp_ports(3), extra)]
    for d in ds:
        assert d.transport.info()["fast_path"]["on"] is fast
    return ds


def _install_everywhere(ds, runtime: str, protocol: str):
    code = reference_code(runtime, protocol)
    pm = reference_code("restricted_py", "portmapper")
    for d in ds:
        d.node.install(code)  # a local install: trusted, native included
        d.node.install(pm)
        d.node.use_portmapper(pm)
    return code


def _counters(d, roles: dict[str, str]) -> dict:
    s = d.statistics()
    code = {k: {f: v[f] for f in ("capsules_in", "forwarded", "delivered", "done", "dropped", "errors")} for k, v in s["code"].items()}
    links = {roles[k]: {f: v[f] for f in ("received", "sent", "received_bytes", "sent_bytes")} for k, v in s["links"]["neighbors"].items()}
    return {"node": {f: s[f] for f in ("received", "sent", "delivered", "dropped")}, "code": code, "links": links}


def _ping_run(tmpdir, runtime: str, fast: bool, limits: str = ""):
    ds = _line(tmpdir, fast, limits)
    try:
        sender, middle, receiver = ds
        code = _install_everywhere(ds, runtime, "ping")
        app = Application(sender.node)
        app.bind(PORT)
        for seq in range(N):
            app.send(code, PingHdr(dest=receiver.node.address.raw, port=PORT, seq=seq).pack() + bytes(200))
        assert pump(ds, lambda: app.pending == N), (middle.statistics(), receiver.statistics())
        back = [PingHdr.unpack(d.data) for d in app.deliveries()]
        assert sorted(h.seq for h in back) == list(range(N)) and {h.phase for h in back} == {1}
        assert {h.src for h in back} == {receiver.node.address.raw}
        # the receiver's ping code counts what it bounced in its soft state (a host call)
        pinged = receiver.node.cache.peek(code.name).state.get(b"pinged")
        assert pinged is not None and int.from_bytes(pinged, "big") == N
        names = ("sender", "middle", "receiver")
        roles = {str(d.node.address): role for role, d in zip(names, ds, strict=True)}
        out = {role: _counters(d, roles) for role, d in zip(names, ds, strict=True)}
        paths = {role: d.transport.info()["fast_path"] for role, d in zip(names, ds, strict=True)}
        assert all(d.node.pool.available == d.node.pool.count for d in ds)
        return out, paths
    finally:
        for d in ds:
            d.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ping_through_the_fast_path_matches_the_python_path(tmpdir_short, runtime):
    slow, off = _ping_run(tmpdir_short, runtime, fast=False)
    fast, paths = _ping_run(tmpdir_short, runtime, fast=True)
    assert fast == slow
    assert off["middle"]["on"] is False and "fast_path" in off["middle"]["why_off"]
    mid, rcv = paths["middle"], paths["receiver"]
    # the middle forwards out and back without building an environment: native, wasm and
    # jvm through their C entries, restricted_py through its lean Python entry
    assert mid["finished_in_c"] == 2 * N and mid["python_runs"] == mid["handed_over"] == 0
    # the receiver's code keeps soft state through the Python host: handed over, not lost
    assert rcv["handed_over"] == N and rcv["finished_in_c"] == 0


@contextlib.contextmanager
def _forward_line(tmpdir, fast: bool = True, limits: str = "", peer: bool = False):
    """Three daemons with native forward code and an application bound at the receiver; with
    ``peer``, a FakePeer takes the sender's place as the middle's neighbour."""
    ds = _line(tmpdir, fast, limits)
    sender, middle, receiver = ds
    fake = None
    try:
        code = _install_everywhere(ds, "native", "forward")
        app = Application(receiver.node)
        app.bind(PORT)
        if peer:
            port = sender.transport.endpoints[0][1]
            sender.close()
            fake = FakePeer(port)
        yield types.SimpleNamespace(
            ds=ds[1:] if peer else ds, sender=sender, middle=middle, receiver=receiver, code=code, app=app,
            peer=fake, mport=middle.transport.endpoints[0][1], src=None if peer else Application(sender.node),
        )
    finally:
        if fake is not None:
            fake.close()
        for d in ds:
            d.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
def test_hop_limit_is_taken_once_per_node_on_either_path(tmpdir_short, fast):
    with _forward_line(tmpdir_short, fast, peer=True) as t:
        for hop in (2, 1, 0):
            body = forward_body(t.receiver.node.address, b"hop %d" % hop)
            t.peer.send(capsule_bytes(t.code, body, t.peer.address, hop), t.mport)
        drops = (t.middle.node.stats.drops, t.receiver.node.stats.drops)
        assert pump(t.ds, lambda: drops[0]["hop_limit"] == 1 and drops[1]["hop_limit"] == 1)
        assert pump(t.ds, lambda: t.app.pending == 1)
        assert [d.data[20:] for d in t.app.deliveries()] == [b"hop 2"]
        # counters kept in C are folded in when read: two forwards, the middle's error report
        # about its hop-limit drop, and the receiver's passed on toward the peer
        reports = t.middle.reports.counters
        assert pump(t.ds, lambda: reports["relayed"] == 1)
        assert reports["sent"] == 1
        assert t.middle.statistics()["sent"] == 2 + 2


def test_malformed_and_unknown_datagrams_take_the_python_path_and_are_counted(tmpdir_short):
    with _forward_line(tmpdir_short, peer=True) as t:
        middle, peer, mport = t.middle, t.peer, t.mport
        good = capsule_bytes(t.code, forward_body(t.receiver.node.address, b"x"), peer.address)
        peer.send(good[:20], mport)  # truncated header
        peer.send(b"\x09" + good[1:], mport)  # wrong version
        peer.send(good[:4] + bytes(32) + good[36:], mport)  # names code nobody has: parked, asked for
        stranger = FakePeer(free_udp_ports(1)[0])
        try:
            stranger.send(good, mport)  # not a neighbour
        finally:
            stranger.close()
        peer.send(good, mport)  # and one good capsule
        # the good capsule reached the receiver (the middle sends its code request first)
        assert pump(t.ds, lambda: t.app.pending == 1 and sum(middle.node.stats.drops.values()) >= 3)
        drops = middle.node.stats.drops
        assert drops["malformed:truncated"] == 1 and drops["malformed:version"] == 1 and drops["unknown_peer"] == 1
        info = middle.transport.info()["fast_path"]
        assert info["finished_in_c"] == 1 and info["slow"] == 4
        assert middle.demand.counters["requests_sent"] >= 1
        assert middle.node.pool.available == middle.node.pool.count - 1  # only the parked capsule's


def test_a_route_change_reaches_the_fast_path(tmpdir_short):
    with _forward_line(tmpdir_short) as t:
        middle, dest = t.middle, t.receiver.node.address
        t.src.send(t.code, forward_body(dest, b"one"))
        assert pump(t.ds, lambda: t.app.pending == 1)
        # the middle loses its route to the receiver: the next capsule is dropped for it
        middle.node.routes.remove(dest)
        t.src.send(t.code, forward_body(dest, b"two"))
        assert pump(t.ds, lambda: middle.node.cache.peek(t.code.name).stats.drops["no_route"] == 1)
        middle.node.routes.add_static(dest, dest)
        t.src.send(t.code, forward_body(dest, b"three"))
        assert pump(t.ds, lambda: t.app.pending == 2)
        assert [d.data[20:] for d in t.app.deliveries()] == [b"one", b"three"]
        stats = middle.statistics()["code"][t.code.hex_name]
        assert stats["capsules_in"] == 3 and stats["forwarded"] == 2 and stats["drops"] == {"no_route": 1}


def test_counters_finished_in_c_show_in_the_node_statistics(tmpdir_short):
    with _forward_line(tmpdir_short) as t:
        dest = t.receiver.node.address
        for i in range(7):
            t.src.send(t.code, forward_body(dest, struct.pack(">I", i) + bytes(100)))
        assert pump(t.ds, lambda: t.app.pending == 7)
        s = t.middle.statistics()
        c = s["code"][t.code.hex_name]
        assert c["capsules_in"] == 7 and c["forwarded"] == 7 and c["time_us_total"] > 0
        assert s["received"] == 7 and s["sent"] == 7
        out = s["links"]["neighbors"][str(dest)]
        size = len(capsule_bytes(t.code, forward_body(dest, bytes(104)), t.sender.node.address))
        assert out["sent"] == 7 and out["largest_sent"] == size
        assert s["links"]["fast_path"]["finished_in_c"] == 7
        assert "fast path: on; carried out in C 7," in format_stats(s)  # what `pan stats` prints


@pytest.mark.parametrize("runtime", ["wasm", "jvm", "restricted_py"])
@pytest.mark.parametrize("case", ["spin", "raise"])
def test_hostile_code_on_the_fast_path_is_contained(tmpdir_short, runtime, case):
    with _forward_line(tmpdir_short, limits="budget_time_ms = 30\n", peer=True) as t:
        hostile = build_case(CASES / case, runtime, default_plugins())
        t.middle.node.install(hostile)
        for _ in range(2):
            t.peer.send(capsule_bytes(hostile, b"x" * 8, t.peer.address), t.mport)
        t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, b"after"), t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending == 1, timeout=10.0)
        stats = t.middle.statistics()["code"][hostile.hex_name]
        assert stats["capsules_in"] == 2 and stats["dropped"] == 2, stats
        if case == "spin":
            assert stats["drops"] == {"budget": 2}, stats
        else:
            assert stats["errors"] == 2, stats
        paths = t.middle.transport.info()["fast_path"]
        assert paths["slow"] == 0 and paths["handed_over"] == 2  # both ran from the fast path


def test_ipv6_neighbours_forward_on_the_fast_path(tmpdir_short):
    ports = free_udp_ports(3, "::1")
    eps = [f"[::1]:{p}" for p in ports]
    for i, name in enumerate(("a", "b", "c")):
        lines = ["[node]", f'name = "{name}"', f'listen = ["{eps[i]}"]']
        for j in (i - 1, i + 1):
            if 0 <= j < 3:
                lines += ["[[neighbors]]", f'address = "{eps[j]}"', f'endpoint = "{eps[j]}"']
        far = 2 - i if i != 1 else None
        if far is not None:
            lines += ["[[routes]]", f'dest = "{eps[far]}"', f'via = "{eps[1]}"']
        (tmpdir_short / f"{name}.toml").write_text("\n".join(lines) + "\n")
    ds = [daemon_from(tmpdir_short / f"{n}.toml") for n in ("a", "b", "c")]
    try:
        a, b, c = ds
        code = _install_everywhere(ds, "wasm", "forward")
        app = Application(c.node)
        app.bind(PORT)
        src = Application(a.node)
        for i in range(3):
            src.send(code, forward_body(c.node.address, b"six %d" % i))
        assert pump(ds, lambda: app.pending == 3)
        assert [d.data[20:] for d in app.deliveries()] == [b"six 0", b"six 1", b"six 2"]
        assert b.transport.info()["fast_path"]["finished_in_c"] == 3
    finally:
        for d in ds:
            d.close()


def test_an_exhausted_pool_is_counted_and_the_node_goes_on(tmpdir_short):
    # code cannot empty the pool any more (pan_runtime.node.quota); the test holds its buffers
    limits = "pool_buffers = 16\n[demand]\npark_total = 8\npark_per_code = 8\n"
    with _forward_line(tmpdir_short, limits=limits, peer=True) as t:
        pool, drops = t.middle.node.pool, t.middle.node.stats.drops
        held = [pool.take_slot() for _ in range(pool.count)]
        body = forward_body(t.receiver.node.address, b"lost")
        for _ in range(8):
            t.peer.send(capsule_bytes(t.code, body, t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.middle.statistics()["received"] == 8)
        assert drops["pool_exhausted"] == 8 and t.app.pending == 0
        # the node goes on: a capsule gets through once a buffer is free
        for slot in held:
            pool.give_slot(slot)
        t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, b"on"), t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending == 1)
        assert pool.whole


def test_a_bug_in_a_hand_over_is_logged_and_the_loop_goes_on(tmpdir_short, monkeypatch, caplog):
    with _forward_line(tmpdir_short, peer=True) as t:
        calls = []

        def broken(addr):
            calls.append(addr)
            raise RuntimeError("a bug in the Python path")

        monkeypatch.setattr(t.middle.transport, "_unknown", broken)
        stranger = FakePeer(free_udp_ports(1)[0])
        try:
            stranger.send(b"not a capsule", t.mport)  # handed to the Python path, which raises
            assert pump(t.ds, lambda: t.middle.loop.errors == 1)
        finally:
            stranger.close()
        t.peer.send(capsule_bytes(t.code, forward_body(t.receiver.node.address, b"still"), t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending == 1)
        assert "a bug in the Python path" in caplog.text and len(calls) == 1
        assert t.middle.node.pool.available == t.middle.node.pool.count  # its buffer went back


# a body over 100 bytes: an endless loop; else a loop of 500 rounds (a few thousand fuel
# units) and FORWARD(0)
COUNTED_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (local $i i32)
    (if (i32.gt_u (local.get 1) (i32.const 100))
      (then (loop $spin (br $spin))))
    (local.set $i (i32.const 500))
    (loop $round
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $round (i32.gt_s (local.get $i) (i32.const 0))))
    i32.const 2))
"""


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
def test_wasm_fuel_is_refilled_for_every_capsule_and_counted(tmpdir_short, fast):
    # fuel mode with a per-capsule budget that one capsule's loop fits in and ten would not:
    # after an endless loop has run out of fuel, each next capsule still gets all of its own
    limits = 'budget_fuel = 20000\n[runtimes.options.wasm]\nbudget = "fuel"\n'
    with _forward_line(tmpdir_short, fast, limits=limits, peer=True) as t:
        counted = CodeObject.create("wasm", bytes(wasmtime.wat2wasm(COUNTED_WAT)))
        for d in t.ds:
            d.node.install(counted)
        t.peer.send(capsule_bytes(counted, bytes(200), t.peer.address), t.mport)
        stats = t.middle.node.cache.peek(counted.name).stats
        assert pump(t.ds, lambda: stats.dropped == 1)
        for i in range(40):
            t.peer.send(capsule_bytes(counted, forward_body(t.receiver.node.address, b"%d" % i), t.peer.address), t.mport)
        assert pump(t.ds, lambda: t.app.pending == 40)
        code = t.middle.statistics()["code"][counted.hex_name]
        assert code["forwarded"] == 40 and code["drops"] == {"budget": 1}
        assert 40 * 500 <= code["fuel"] <= 40 * 20000, code["fuel"]  # what the 40 runs used
        assert t.middle.transport.info()["fast_path"].get("finished_in_c", 0) == (40 if fast else 0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_random_mix_of_datagrams_is_all_accounted_for(tmpdir_short, runtime):
    import random

    rng = random.Random(7)
    with _forward_line(tmpdir_short, peer=True) as t:
        code = _install_everywhere(t.ds, runtime, "forward")
        dest = t.receiver.node.address
        sent_good = 0
        n = 300
        for i in range(n):
            kind = rng.randrange(5)
            if kind == 0:  # a good capsule
                data = capsule_bytes(code, forward_body(dest, b"%d" % i), t.peer.address)
                sent_good += 1
            elif kind == 1:  # a capsule of this code with a random body (random next hop, short bodies)
                data = capsule_bytes(code, rng.randbytes(rng.randrange(0, 64)), t.peer.address, rng.randrange(256))
            elif kind == 2:  # cut anywhere
                whole = capsule_bytes(code, forward_body(dest, b"cut"), t.peer.address)
                data = whole[: rng.randrange(len(whole))]
            elif kind == 3:  # a header with bad flags or a bad reserved byte
                whole = bytearray(capsule_bytes(code, forward_body(dest, b"bad"), t.peer.address))
                whole[rng.choice((1, 3))] = rng.randrange(2, 256)
                data = bytes(whole)
            else:  # noise
                data = rng.randbytes(rng.randrange(1, 200))
                data = b"\x09" + data[1:]
            t.peer.send(data, t.mport)
        assert pump(t.ds, lambda: t.middle.statistics()["received"] == n, timeout=10.0)
        assert pump(t.ds, lambda: t.app.pending >= sent_good)
        s = t.middle.statistics()
        code_stats = s["code"][code.hex_name]
        # every datagram is a drop with a reason, or a capsule the code saw
        assert sum(s["drops"].values()) + code_stats["capsules_in"] == n, (s["drops"], code_stats)
        assert code_stats["forwarded"] + code_stats["dropped"] + code_stats["delivered"] + code_stats["done"] == code_stats["capsules_in"]
        assert t.middle.node.pool.available == t.middle.node.pool.count
