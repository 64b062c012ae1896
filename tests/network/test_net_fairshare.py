"""Fair share between neighbours (``pan_runtime.net.fairshare``), over real UDP sockets.

A middle node (a daemon turned by hand) has two neighbours played by plain sockets: a
flooder that has queued thousands of capsules at the middle before a pinger sends a few,
all of the forward protocol addressed back to their sender. Each neighbour's datagrams
wait in a receive buffer of its own and the middle shares its time between them, so the
pinger's capsules are all carried back while the flooder's backlog is still being served
(counted, not timed), and what did not fit the flooder's buffer is its own loss, counted as
``neighbour_over_share`` on the node and on the flooder's account. Both paths, every runtime.
"""

from __future__ import annotations

import pytest
from nethelpers import FakePeer, daemon_from, free_udp_ports, remove_tree, short_dir
from test_net_udp import forward_body

from pan_runtime.cli.protocols import reference_code
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.fairshare import ALONE_QUANTA, FairShare

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
FLOOD = 6000  # far more than the flooder's buffer at the middle holds
PINGS = 40




@pytest.fixture
def tmpdir_short():
    d = short_dir()
    yield d
    remove_tree(d)


@pytest.fixture(params=[True, False], ids=["fast", "python"])
def fast(request):
    return request.param


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_flood_from_one_neighbour_does_not_hold_back_another(tmpdir_short, runtime, fast):
    middle_port, flood_port, ping_port = free_udp_ports(3)
    flooder, pinger = FakePeer(flood_port, rcvbuf=8 << 20), FakePeer(ping_port, rcvbuf=8 << 20)
    cfg = tmpdir_short / "middle.toml"
    cfg.write_text(
        f'[node]\nlisten = ["127.0.0.1:{middle_port}"]\n'
        f'[[neighbors]]\naddress = "127.0.0.1:{flood_port}"\n'
        f'[[neighbors]]\naddress = "127.0.0.1:{ping_port}"\n'
        f"[limits]\nneighbour_buffer = 1048576\nfast_path = {'true' if fast else 'false'}\n"
    )
    d = daemon_from(cfg)
    try:
        assert d.transport.info()["fast_path"]["on"] is fast
        code = reference_code(runtime, "forward")
        d.node.install(code)
        flood = capsule_bytes(code, forward_body(flooder.address, bytes(40)), flooder.address)
        for _ in range(FLOOD):
            flooder.send(flood, middle_port)
        for i in range(PINGS):
            pinger.send(capsule_bytes(code, forward_body(pinger.address, b"ping %d" % i), pinger.address), middle_port)
        # turn the middle until every ping came back, noting how much of the flood it carried meanwhile
        for _ in range(100_000):
            d.run_once(0)
            if pinger.collect() == PINGS:
                break
        assert len(pinger.got) == PINGS
        served_meanwhile = flooder.collect()
        stats = d.statistics()
        # the pings were not queued behind the flooder's backlog at the middle (what its buffer
        # held): the middle took turns, and most of that backlog was still waiting
        over = stats["drops"].get("neighbour_over_share", 0)
        backlog = FLOOD - over
        assert backlog > 16 * PINGS, (backlog, over)
        assert served_meanwhile < backlog // 3, (served_meanwhile, backlog)
        # what the flooder's buffer could not hold is its loss, named and on its account
        assert over > 0
        accounts = stats["neighbours"]
        assert accounts[str(flooder.address)]["drops"] == {"neighbour_over_share": over}
        assert accounts[str(pinger.address)]["drops"] == {}
        links = stats["links"]["neighbors"]
        assert links[str(flooder.address)]["over_share"] == over and links[str(flooder.address)]["own_socket"]
        assert links[str(pinger.address)]["over_share"] == 0
        # and the rest of the flood is carried too: the flooder is only held to its share
        for _ in range(100_000):
            d.run_once(0.001)
            if flooder.collect() == backlog:
                break
        assert len(flooder.got) == backlog
    finally:
        d.close()
        flooder.close()
        pinger.close()


def test_neighbours_share_the_node_socket_when_they_may_not_have_their_own(tmpdir_short):
    node_port, a_port, b_port = free_udp_ports(3)
    a, b = FakePeer(a_port, rcvbuf=8 << 20), FakePeer(b_port, rcvbuf=8 << 20)
    cfg = tmpdir_short / "n.toml"
    cfg.write_text(
        f'[node]\nlisten = ["127.0.0.1:{node_port}"]\n'
        f'[[neighbors]]\naddress = "127.0.0.1:{a_port}"\n[[neighbors]]\naddress = "127.0.0.1:{b_port}"\n'
        "[limits]\nneighbour_sockets = 1\n"
    )
    d = daemon_from(cfg)
    try:
        code = reference_code("native", "forward")
        d.node.install(code)
        own = {k: v["own_socket"] for k, v in d.transport.info()["neighbors"].items()}
        assert own == {str(a.address): True, str(b.address): False}
        for peer in (a, b):
            peer.send(capsule_bytes(code, forward_body(peer.address, b"x"), peer.address), node_port)
        for _ in range(10_000):
            d.run_once(0.001)
            if a.collect() == 1 and b.collect() == 1:
                break
        assert (len(a.got), len(b.got)) == (1, 1)
    finally:
        d.close()
        a.close()
        b.close()


def test_a_port_another_node_holds_is_still_refused(tmpdir_short):
    (port,) = free_udp_ports(1)
    first = tmpdir_short / "a.toml"
    first.write_text(f'[node]\nlisten = ["127.0.0.1:{port}"]\n')
    d = daemon_from(first)
    try:
        from pan_runtime.errors import LinkError

        second = tmpdir_short / "b.toml"
        second.write_text(f'[node]\nlisten = ["127.0.0.1:{port}"]\n')
        with pytest.raises(LinkError, match="already in use"):
            daemon_from(second)
    finally:
        d.close()


def test_the_share_rule():
    share = FairShare(100)
    a, b = share.add(1), share.add(2)
    # a source nobody else waits for: ALONE_QUANTA quanta a visit (a lone flood in whole batches)
    assert share.visit(a) == ALONE_QUANTA * 100
    a.vtime, a.busy = 5000, True
    assert share.visit(b) == 100  # b turned busy at the clock, behind a: one quantum past a's
    b.vtime, b.busy = 300, True
    assert share.visit(a) == -1  # a is more than a quantum ahead of busy b: b first
    assert share.visit(b) == 400
    b.busy = False  # b emptied: a has the node to itself again
    assert share.visit(a) == 5000 + ALONE_QUANTA * 100
    c = share.add(3)
    assert share.visit(c) >= 5000 and c.vtime == share.clock  # idleness earns no credit
