"""The capacity experiment's compiled tools (``pan_runtime.bench.traffic``, ``traffic.c``):
built with the system compiler (a clear error without one), and on real loopback sockets
a paced generator whose every capsule the sink counts, a sink that counts apart what is not
the flow's, and the C batched forwarder relaying both ways in batches."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from pan_runtime.bench.dispatch import forward_capsule
from pan_runtime.bench.traffic import traffic_binary
from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import BuildError, PanError
from pan_runtime.net.lifetime import child_env

#: guards against a hung tool, not measures
LIMIT_S = 120.0
NAME = bytes(range(32))


def _port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([str(traffic_binary()), *args], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())


def _close(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.terminate()
        p.wait(LIMIT_S)
    for f in (p.stdin, p.stdout, p.stderr):
        if f:
            f.close()


def _ask(sink: subprocess.Popen[str], line: str) -> str:
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.write(line + "\n")
    sink.stdin.flush()
    return sink.stdout.readline().strip()


def _counts(sink: subprocess.Popen[str], want: int) -> tuple[int, int]:
    """The sink's (valid, other) once it has ``want`` datagrams in all (or after the guard)."""
    import time

    deadline = time.monotonic() + LIMIT_S
    while True:
        words = _ask(sink, "count").split()
        valid, other = int(words[1]), int(words[2])
        if valid + other >= want or time.monotonic() > deadline:
            return valid, other
        time.sleep(0.05)


# few capsules in all (fewer than a socket buffer or the kernel's backlog holds), so that
# not even a loaded machine that stalls a process can make the kernel drop one
def _capsule(tmp_path: Path, size: int) -> Path:
    f = tmp_path / "capsule.bin"
    f.write_bytes(forward_capsule(NAME, NodeAddress.parse("127.0.0.1:1"), NodeAddress.parse("127.0.0.1:2"), size))
    return f


def test_no_compiler_is_a_clear_pan_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PAN_CACHE", str(tmp_path))  # nothing built yet here
    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    with pytest.raises(BuildError, match="C compiler, and none was found") as e:
        traffic_binary()
    assert isinstance(e.value, PanError)
    assert list(tmp_path.iterdir()) == []


def test_a_build_is_kept_and_used_again(monkeypatch, tmp_path):
    monkeypatch.setenv("PAN_CACHE", str(tmp_path))
    first = traffic_binary()
    assert first.is_file() and first.parent == tmp_path / "bench"
    assert traffic_binary() == first
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left


def test_the_sink_counts_every_capsule_the_generator_sends_and_others_apart(tmp_path):
    size = 1500
    port = _port()
    sink = _start("sink", f"127.0.0.1:{port}", stdin=True)
    try:
        assert _ask(sink, f"expect {NAME.hex()} {size - 28}") == "expecting"
        assert _ask(sink, "bogus") == "error unknown command"
        gen = subprocess.run([str(traffic_binary()), "gen", f"127.0.0.1:{_port()}", f"127.0.0.1:{port}", "400", "0.25",
                              str(_capsule(tmp_path, size))], capture_output=True, text=True, timeout=LIMIT_S)
        assert gen.returncode == 0, gen.stderr
        words = gen.stdout.split()
        # rate x duration at most: a generator that the machine holds back past the duration
        # sends less, never longer (load decides how much, so only the bound is asserted)
        sent = int(words[1])
        assert words[0] == "sent" and 1 <= sent <= 100, gen.stdout
        assert int(words[5]) >= 1  # sendmmsg calls
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x01" + bytes(size - 29), ("127.0.0.1", port))  # a capsule header naming another code object
            s.sendto(b"short", ("127.0.0.1", port))
        assert _counts(sink, sent + 2) == (sent, 2)  # every one it sent, the others apart
        sink.stdin.close()
        assert sink.wait(LIMIT_S) == 0  # the end of its input ends it
    finally:
        _close(sink)


@pytest.mark.parametrize("read", ["gro", "plain"])
def test_the_generator_sends_its_bursts_as_gso_messages_and_the_sink_sees_each_datagram(tmp_path, read):
    """A burst leaves as UDP GSO messages (the same datagram many times, cut by the kernel),
    and the sink counts every one of them, whole and separate: read with UDP_GRO (a message
    arrives whole and the sink cuts it itself) or one datagram a read (``plain``)."""
    size = 1500
    port = _port()
    sink = _start("sink", f"127.0.0.1:{port}", *(["plain"] if read == "plain" else []), stdin=True)
    try:
        assert _ask(sink, f"expect {NAME.hex()} {size - 28}") == "expecting"
        gen = subprocess.run([str(traffic_binary()), "gen", f"127.0.0.1:{_port()}", f"127.0.0.1:{port}", "1000000",
                              "0.001", str(_capsule(tmp_path, size))], capture_output=True, text=True, timeout=LIMIT_S)
        assert gen.returncode == 0, gen.stderr
        words = gen.stdout.split()
        assert words[6] == "gso" and int(words[7]) >= 1, gen.stdout  # GSO messages among the sends
        sent = int(words[1])  # what it offered within the duration
        assert 0 < sent <= 1000 and _counts(sink, sent) == (sent, 0)
        reads = _ask(sink, "count").split()
        coalesced = int(reads[4])  # reads that brought more than one datagram
        assert (coalesced >= 1) if read == "gro" else (coalesced == 0), reads
        if read == "gro":
            assert int(reads[3]) < sent, reads  # fewer reads than datagrams
    finally:
        _close(sink)


@pytest.mark.parametrize("read", ["gro", "plain"])
def test_a_sink_set_aside_for_a_drain_holds_what_it_is_asked_and_stamps_each_arrival(tmp_path, read):
    """``buffer`` gives the sink the receive buffer a drain needs (beyond net.core.rmem_max
    where the process may), and after ``stamp`` the count carries the kernel's arrival time
    of the latest capsule counted: between the moments before and after the generator ran,
    whatever the sink does meanwhile; 0 before any."""
    import os
    import time

    size = 1500
    port = _port()
    sink = _start("sink", f"127.0.0.1:{port}", *(["plain"] if read == "plain" else []), stdin=True)
    try:
        want = 64 << 20
        got = int(_ask(sink, f"buffer {want}").split()[1])
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
        assert got >= (want if os.geteuid() == 0 else min(want, 2 * rmem_max)), got
        assert _ask(sink, "stamp") == "stamping"
        assert _ask(sink, f"expect {NAME.hex()} {size - 28}") == "expecting"
        assert _ask(sink, "count").split()[5] == "0"
        t0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        gen = subprocess.run([str(traffic_binary()), "gen", f"127.0.0.1:{_port()}", f"127.0.0.1:{port}", "2000", "0.05",
                              str(_capsule(tmp_path, size))], capture_output=True, text=True, timeout=LIMIT_S)
        t1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        assert gen.returncode == 0, gen.stderr
        sent = int(gen.stdout.split()[1])
        time.sleep(0.2)  # the stamp is the arrival's, not the read's: a late read changes nothing
        assert _counts(sink, sent) == (sent, 0)
        last = int(_ask(sink, "count").split()[5])
        assert t0 <= last <= t1, (t0, last, t1)
    finally:
        _close(sink)


def test_a_sink_reading_with_gro_counts_a_short_or_foreign_datagram_of_a_message_apart():
    """A GSO message whose datagrams are not all the flow's capsule (its last one shorter, as
    the kernel allows) arrives whole at a UDP_GRO sink, which counts each datagram by itself."""
    import struct

    size = 200
    port = _port()
    sink = _start("sink", f"127.0.0.1:{port}", stdin=True)
    try:
        assert _ask(sink, f"expect {NAME.hex()} {size}") == "expecting"
        capsule = bytearray(forward_capsule(NAME, NodeAddress.parse("127.0.0.1:1"), NodeAddress.parse("127.0.0.1:2"),
                                            size + 28))
        assert len(capsule) == size
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            segment = struct.pack("H", size)
            # five whole capsules and a 50-byte tail, cut by the kernel into six datagrams
            tx.sendmsg([bytes(capsule) * 5 + bytes(capsule[:50])], [(socket.SOL_UDP, 103, segment)], 0,
                       ("127.0.0.1", port))
        assert _counts(sink, 6) == (5, 1)
    finally:
        _close(sink)


def test_the_generator_refuses_what_is_not_one_capsule(tmp_path):
    bad = tmp_path / "short.bin"
    bad.write_bytes(b"\x01" * 20)
    r = subprocess.run([str(traffic_binary()), "gen", "127.0.0.1:0", "127.0.0.1:9", "1000", "0.1", str(bad)],
                       capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 2 and "does not hold one capsule" in r.stderr
    r = subprocess.run([str(traffic_binary()), "gen", "127.0.0.1:0", "nowhere", "1000", "0.1", str(bad)],
                       capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 2 and "bad endpoint" in r.stderr


def test_the_batched_forwarder_relays_both_ways_and_counts_its_calls(tmp_path):
    import signal

    a_port, f_port, b_port = _port(), _port(), _port()
    sink = _start("sink", f"127.0.0.1:{b_port}", stdin=True)
    fwd = _start("fwd", f"127.0.0.1:{f_port}", f"127.0.0.1:{a_port}", f"127.0.0.1:{b_port}")
    try:
        assert fwd.stdout is not None and fwd.stdout.readline().strip() == "ready"
        assert _ask(sink, f"expect {NAME.hex()} {1500 - 28}") == "expecting"
        gen = subprocess.run([str(traffic_binary()), "gen", f"127.0.0.1:{a_port}", f"127.0.0.1:{f_port}", "400", "0.25",
                              str(_capsule(tmp_path, 1500))], capture_output=True, text=True, timeout=LIMIT_S)
        assert gen.returncode == 0, gen.stderr
        assert _counts(sink, 100) == (100, 0)
        # from anyone but A, a datagram goes to A
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", a_port))
            a.settimeout(LIMIT_S)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.sendto(b"back", ("127.0.0.1", f_port))
            assert a.recvfrom(100)[0] == b"back"
        fwd.send_signal(signal.SIGUSR1)
        words = fwd.stdout.readline().split()
        assert words[0] == "calls" and int(words[3]) == 101
        # a receive call returns one datagram at least (the one SIGUSR1 interrupted, none), and
        # one sendmmsg carries what one recvmmsg returned
        assert 1 <= int(words[1]) <= 102 and 1 <= int(words[2]) <= int(words[1])
    finally:
        _close(fwd)
        _close(sink)


def test_a_trial_lasts_its_duration_even_when_the_rate_cannot_be_offered(tmp_path):
    # 100 million capsules a second for 0.2 s: no machine sends that, so the generator sends
    # what it can and stops at the end of the trial (the guard only catches a hang)
    r = subprocess.run([str(traffic_binary()), "gen", "127.0.0.1:0", f"127.0.0.1:{_port()}", "100000000", "0.2",
                        str(_capsule(tmp_path, 1500))], capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert 0 < int(words[1]) < 20_000_000


def test_the_generator_takes_turns_among_its_flows(tmp_path):
    # --flows: the bursts leave from FLOWS source ports (the first the one named), so a
    # receiver's kernel can spread them over its SO_REUSEPORT sockets
    src = _port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(LIMIT_S)
        gen = subprocess.run([str(traffic_binary()), "gen", f"127.0.0.1:{src}", f"127.0.0.1:{rx.getsockname()[1]}", "400",
                              "0.25", str(_capsule(tmp_path, 200)), "4"], capture_output=True, text=True, timeout=LIMIT_S)
        assert gen.returncode == 0, gen.stderr
        assert gen.stdout.split()[1] == "100"
        ports = [rx.recvfrom(2048)[1][1] for _ in range(100)]
    assert len(set(ports)) == 4 and src in ports
    for bad in ("0", "65", "x"):
        r = subprocess.run([str(traffic_binary()), "gen", f"127.0.0.1:{_port()}", "127.0.0.1:9", "10", "0.1",
                            str(_capsule(tmp_path, 200)), bad], capture_output=True, text=True, timeout=LIMIT_S)
        assert r.returncode == 2 and "bad flow count" in r.stderr
