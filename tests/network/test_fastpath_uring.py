"""The wait's io_uring (``pan_runtime/net/_fastpath_uring.c``, ``limits.io_uring``).

With ``io_uring = "auto"`` a visit that ends a wake-up leaves its forwards for the wait's next
system call: one ``io_uring_enter`` sends them (SENDMSG entries) and waits (an EPOLL_WAIT
entry). Both settings forward every capsule byte for byte and in order, count refused sends
alike, and ``"off"`` keeps ``epoll_wait`` + ``sendmmsg``. The middle is turned with waits long
enough that its loop stays in C between bursts (``pump``'s short turns would end each wait
before the next one, where the sends go the old way); times here are hang guards only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import pytest
from nethelpers import FakePeer
from test_net_fastpath import RUNTIMES, tmpdir_short  # noqa: F401
from test_net_udp import forward_body
from test_udp_fast import _SO_NO_CHECK, _mixed_flood
from test_udp_fast import _fan_out as _udp_fast_fan_out

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.wire import HOP_LIMIT_OFFSET
from pan_runtime.errors import ConfigError
from pan_runtime.net import udp_fast
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.config import parse_config

MODES = ["auto", "off"]
#: why io_uring cannot serve the wait here (None: it can)
WHY = udp_fast.uring_reason() if udp_fast.available() else "no fast path"
#: a burst as the capacity generator sends it
BURST = 25
_SOL_UDP, _UDP_SEGMENT = 17, 103
_HANG_GUARD_S = 60.0


def _needs_uring(mode: str) -> None:
    if mode == "auto" and WHY is not None:
        pytest.skip(f"[allowed-skip] io_uring unavailable here: {WHY}")


def _fan_out(tmpdir, runtime: str, mode: str, extra: str = "", broadcast: bool = False):
    """``test_udp_fast``'s middle with three neighbours played by sockets (and with
    ``broadcast`` a fourth the kernel refuses to send to), io_uring as ``mode`` says."""
    return _udp_fast_fan_out(tmpdir, runtime, f'io_uring = "{mode}"\n' + extra, broadcast=broadcast)


def _syscalls(t) -> dict:
    return dict(t.middle.transport.info()["syscalls"])


def _calls(sc: dict) -> int:
    return sc["recv_calls"] + sc["send_calls"] + sc["peeks"] + sc["waits"] + sc["uring_enters"]


def _turn(t, until, wait: float = 0.05) -> None:
    """Turn the middle's loop, each wait up to ``wait`` s, until ``until()``."""
    end = time.monotonic() + _HANG_GUARD_S
    while not until():
        assert time.monotonic() < end, "hang guard"
        t.middle.run_once(wait)


@contextlib.contextmanager
def _middle_running(t):
    """The middle's loop on a thread of its own (the test's thread only sends and reads)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                t.middle.run_once(0.05)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(_HANG_GUARD_S)
        assert not th.is_alive() and not errors, errors


def _expected(data: bytes) -> bytes:
    return data[:HOP_LIMIT_OFFSET] + bytes([data[HOP_LIMIT_OFFSET] - 1]) + data[HOP_LIMIT_OFFSET + 1 :]


def _check_mode(t, mode: str, sc: dict) -> None:
    if mode == "off" or WHY is not None:
        assert sc["uring_enters"] == sc["uring_sends"] == 0, sc
    else:
        assert sc["uring_sends"] >= 1 and sc["uring_enters"] >= 1, sc


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_queued_flood_crosses_whole_and_in_order(tmpdir_short, runtime, mode):  # noqa: F811
    with _fan_out(tmpdir_short, runtime, mode) as t:
        want = _mixed_flood(t)
        total = sum(len(v) for v in want.values())
        _turn(t, lambda: sum(r.collect() for r in t.receivers) >= total)
        for k, r in enumerate(t.receivers):  # each one whole, alone, in the order sent
            assert r.got == want[k]
        sc = _syscalls(t)
        assert sc["send_datagrams"] == sc["recv_datagrams"] == total, sc
        _check_mode(t, mode, sc)
        assert t.middle.statistics()["drops"] == {}


def _burst(t, first: int) -> list[bytes]:
    """BURST capsules of one size toward receiver 0, sent in one GSO message so that they are
    all in the middle's socket when it wakes (as a paced generator's burst is)."""
    caps = [
        capsule_bytes(
            t.code,
            forward_body(t.receivers[0].address, struct.pack(">I", first + i) + bytes(1000)),
            t.sender.address,
        )
        for i in range(BURST)
    ]
    size = len(caps[0])
    t.sender.sock.sendmsg(
        [b"".join(caps)], [(_SOL_UDP, _UDP_SEGMENT, struct.pack("=H", size))], 0, ("127.0.0.1", t.mport)
    )
    return [_expected(c) for c in caps]


def _recv_until(peer: FakePeer, n: int) -> None:
    end = time.monotonic() + _HANG_GUARD_S
    while peer.collect() < n:
        assert time.monotonic() < end, "hang guard"
        time.sleep(0.0002)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_paced_bursts_cost_two_system_calls_a_burst_with_io_uring(tmpdir_short, runtime, mode):  # noqa: F811
    """Each burst waits in the middle's socket for one wake-up (the generator's pace at
    capacity): with io_uring the visit's receive and the call that sends its forwards and
    waits for the next burst are all a burst costs."""
    _needs_uring(mode)
    with _fan_out(tmpdir_short, runtime, mode) as t:
        want: list[bytes] = []
        with _middle_running(t):
            for b in range(3):  # warm-up: the middle learns to lend a whole batch
                want += _burst(t, b * BURST)
                _recv_until(t.receivers[0], len(want))
            before = _syscalls(t)
            bursts = 20
            for b in range(3, 3 + bursts):  # the next once the last has arrived
                want += _burst(t, b * BURST)
                _recv_until(t.receivers[0], len(want))
            after = _syscalls(t)
        assert t.receivers[0].got == want
        diff = {k: after[k] - before[k] for k in after if k != "per_capsule_x1000"}
        assert diff["recv_datagrams"] == diff["send_datagrams"] == bursts * BURST, diff
        per_capsule = _calls(diff) / (bursts * BURST)
        if mode == "auto":
            # two calls a burst, and a little for the loop's own turns (its timers)
            assert per_capsule <= 2 / BURST + 0.02, diff
            assert diff["send_calls"] == 0 and diff["uring_sends"] >= bursts, str(diff)
        else:
            assert diff["uring_enters"] == 0 and diff["send_calls"] >= bursts, diff


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_lone_capsule_leaves_in_the_waits_first_system_call(tmpdir_short, runtime, mode):  # noqa: F811
    """No hold: the capsule's send is the first thing the wait after its visit does (with
    io_uring, in the io_uring_enter that then waits; without, a sendmmsg before it)."""
    _needs_uring(mode)
    with _fan_out(tmpdir_short, runtime, mode) as t:
        _turn(t, lambda: True)
        for i in range(3):
            before = _syscalls(t)
            data = capsule_bytes(
                t.code, forward_body(t.receivers[0].address, b"lone %d" % i), t.sender.address
            )
            t.sender.sock.sendto(data, ("127.0.0.1", t.mport))
            _turn(t, lambda i=i: t.receivers[0].collect() >= i + 1, wait=0.2)
            d = {k: v - before[k] for k, v in _syscalls(t).items()}
            assert d["recv_datagrams"] == d["send_datagrams"] == 1 and d["peeks"] == 0, d
            if mode == "auto":
                assert d["uring_sends"] == 1 and d["send_calls"] == 0 and d["uring_enters"] >= 1, d
            else:
                assert d["send_calls"] == 1 and d["uring_enters"] == 0, d
        assert [g[-6:] for g in t.receivers[0].got] == [b"lone 0", b"lone 1", b"lone 2"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_burst_leaves_in_the_waits_first_system_call(tmpdir_short, runtime):  # noqa: F811
    """No hold for a burst either: its forwards go out in the io_uring_enter that then waits
    (counted at once by a read of the counters from another thread, the middle still waiting)."""
    _needs_uring("auto")
    with _fan_out(tmpdir_short, runtime, "auto") as t:
        with _middle_running(t):
            want = _burst(t, 0)  # warm-up
            _recv_until(t.receivers[0], len(want))
            before = _syscalls(t)
            want += _burst(t, BURST)
            _recv_until(t.receivers[0], len(want))
            d = {k: v - before[k] for k, v in _syscalls(t).items()}
        assert t.receivers[0].got == want
        assert d["recv_datagrams"] == d["send_datagrams"] == BURST and d["send_calls"] == 0, d
        assert d["uring_sends"] >= 1 and d["uring_enters"] >= 1, d


def _refused_flood(t, n: int = 200) -> tuple[list[bytes], int]:
    """``n`` capsules queued before the middle reads, every third toward the broadcast
    neighbour (refused), the rest toward receiver 0: what receiver 0 should get, and how many
    the kernel refuses."""
    want, refused = [], 0
    for i in range(n):
        to_bcast = i % 3 == 2
        dest = _bcast_address(t) if to_bcast else t.receivers[0].address
        data = capsule_bytes(t.code, forward_body(dest, struct.pack(">I", i) + bytes(600)), t.sender.address)
        t.sender.sock.sendto(data, ("127.0.0.1", t.mport))
        if to_bcast:
            refused += 1
        else:
            want.append(_expected(data))
    return want, refused


def _bcast_address(t) -> NodeAddress:
    port = t.sender.sock.getsockname()[1]
    return NodeAddress.from_endpoint("255.255.255.255", port)


def _outcome(t) -> dict:
    """What the node counted of the flood: its drops, the code's, the links' send errors."""
    st = t.middle.statistics()
    code = st["code"][t.code.hex_name]
    links = {str(a): link.errors for a, link in t.middle.transport.links.items()}
    return {"drops": st["drops"], "code": {k: code[k] for k in ("forwarded", "dropped")}, "links": links}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_send_the_kernel_refuses_is_counted_alike_both_ways(tmpdir_short, runtime):  # noqa: F811
    outcomes = {}
    for mode in MODES:
        with _fan_out(tmpdir_short, runtime, mode, broadcast=True) as t:
            want, refused = _refused_flood(t)
            read = _syscalls(t)["recv_datagrams"] + len(want) + refused

            n = len(want)

            def done(t=t, read=read, n=n) -> bool:
                return _syscalls(t)["recv_datagrams"] >= read and t.receivers[0].collect() >= n

            _turn(t, done)
            assert t.receivers[0].got == want  # the refusals cost the others nothing, order kept
            outcomes[mode] = _outcome(t)
            _check_mode(t, mode, _syscalls(t))
            o = outcomes[mode]
            assert o["code"] == {"forwarded": len(want), "dropped": refused} and o["drops"] == {}, o
            assert sum(o["links"].values()) == refused, o
            o["links"] = sorted(o["links"].values())  # the ports differ between the two runs
    assert outcomes["auto"] == outcomes["off"]


@pytest.mark.parametrize("mode", MODES)
def test_udp_gso_refused_in_the_ring_goes_again_without_and_in_order(tmpdir_short, mode):  # noqa: F811
    with _fan_out(tmpdir_short, "native", mode) as t:
        # a socket without UDP checksums is one the kernel refuses GSO on (EINVAL)
        t.middle.transport.sockets[socket.AF_INET].setsockopt(socket.SOL_SOCKET, _SO_NO_CHECK, 1)
        want = _mixed_flood(t)
        total = sum(len(v) for v in want.values())
        _turn(t, lambda: sum(r.collect() for r in t.receivers) >= total)
        for k, r in enumerate(t.receivers):
            assert r.got == want[k]
        sc = _syscalls(t)
        assert sc["gso_refused"] >= 1 and sc["gso_sends"] == 0, sc
        _check_mode(t, mode, sc)
        assert t.middle.statistics()["drops"] == {}


def test_the_limit_is_auto_or_off():
    base = '[node]\nlisten = ["127.0.0.1:7001"]\n[limits]\n'
    assert parse_config(base, "n.toml").io_uring == "auto"
    assert parse_config(base + 'io_uring = "off"\n', "n.toml").io_uring == "off"
    with pytest.raises(ConfigError, match="io_uring"):
        parse_config(base + 'io_uring = "on"\n', "n.toml")
    assert WHY is None or isinstance(WHY, str)


def test_io_uring_unavailable_is_logged_once_and_the_old_way_is_kept(monkeypatch, caplog):
    monkeypatch.setattr(udp_fast, "_uring_said", False)
    monkeypatch.setattr(udp_fast, "uring_reason", lambda: "io_uring_setup failed: Operation not permitted")
    with caplog.at_level("INFO", logger="pan_runtime.net.udp_fast"):
        assert udp_fast._uring_wanted("auto") is False
        assert udp_fast._uring_wanted("auto") is False
        assert udp_fast._uring_wanted("off") is False
    said = [r.getMessage() for r in caplog.records if "io_uring unavailable" in r.getMessage()]
    assert said == [
        "io_uring unavailable (io_uring_setup failed: Operation not permitted): "
        "the fast path waits with epoll_wait and sends with sendmmsg"
    ]
    monkeypatch.setattr(udp_fast, "uring_reason", lambda: None)
    assert udp_fast._uring_wanted("auto") is True and udp_fast._uring_wanted("off") is False
