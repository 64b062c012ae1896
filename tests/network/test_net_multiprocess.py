"""Three ``pan node`` processes on loopback: sender - middle - receiver.

Ping and flood run with every runtime through the middle; the middle and the receiver get
the code by demand loading from the sender on first use. Code from the network must be
signed by a key the nodes trust (the default rules for native and guarded runtimes), so
the test signs the code objects it installs, and checks that unsigned native code is refused.
The processes are stopped and their sockets removed even when a test fails.
"""

from __future__ import annotations

import subprocess

import pytest
from nethelpers import PAN, NodeProcesses, free_udp_ports, line_configs, remove_tree, short_dir

from pan_runtime.cli.netcli import flood, ping
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.keys import generate_keypair, load_private_key
from pan_runtime.net.client import Client

RUNTIMES = ["native", "wasm", "jvm", "restricted_py"]
PORT = 7
#: waits end on progress (a reply, a report, a counter); this only stops a hang: a loaded
#: machine may take minutes to start a JVM in each node
HANG_GUARD_S = 300


class LoopbackBed:
    def __init__(self) -> None:
        self.dir = short_dir()
        priv, pub = generate_keypair(self.dir / "site")
        self.key = load_private_key(priv)
        self.ports = free_udp_ports(3)
        extra = f'[trust]\ntrusted_keys = ["{pub}"]\n[demand]\ndeadline_ms = {HANG_GUARD_S * 1000}\n'
        self.configs = line_configs(self.dir, self.ports, extra)
        self.addresses = [NodeAddress.from_endpoint("127.0.0.1", p) for p in self.ports]
        self.sockets = [str(self.dir / f"{n}.sock") for n in ("sender", "middle", "receiver")]
        self.procs = NodeProcesses(self.configs, self.dir)
        self.procs.wait_ready()
        self.app = Client.connect(self.sockets[0])
        pm = self.signed(reference_code("restricted_py", "portmapper"))
        self.app.install(pm, pin=True)
        self.app.use_portmapper(pm)
        self.app.bind(PORT)

    def signed(self, code):  # type: ignore[no-untyped-def]
        return code.signed(self.key)

    def stats(self, i: int) -> dict:
        with Client(self.sockets[i]) as c:
            return c.stats()

    def code_on(self, i: int, name: bytes) -> dict | None:
        with Client(self.sockets[i]) as c:
            return next((x for x in c.list_code() if x["name"] == name.hex()), None)

    def close(self) -> list[int | None]:
        try:
            self.app.close()
        finally:
            codes = self.procs.stop()
        return codes


@pytest.fixture(scope="module")
def bed():
    b = LoopbackBed()
    try:
        yield b
    finally:
        codes = b.close()
        left = [s for s in b.sockets if __import__("os").path.exists(s)]
        remove_tree(b.dir)
        assert codes == [0, 0, 0], f"node exit codes {codes}"
        assert not left, f"sockets left behind: {left}"


def _fail_with_logs(bed: LoopbackBed, msg: str) -> None:
    pytest.fail(f"{msg}\n{bed.procs.output()}")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ping_through_the_middle(bed, runtime):
    code = bed.signed(reference_code(runtime, "ping"))
    bed.app.install(code)
    dest = bed.addresses[2]
    first, _ = ping(bed.app, code, dest, count=1, size=128, timeout=HANG_GUARD_S)  # demand loading on the way
    if not first:
        _fail_with_logs(bed, f"{runtime}: the first ping never came back")
    rtts, sent = ping(bed.app, code, dest, count=30, size=1500, timeout=HANG_GUARD_S)
    assert len(rtts) == sent == 30
    assert all(0 < r < 1_000_000 for r in rtts)
    for i in (1, 2):
        got = bed.code_on(i, code.name)
        assert got is not None and got["origin"] == "network" and got["runtime"] == runtime
        st = bed.stats(i)["code"][code.hex_name]
        assert st["capsules_in"] >= (62 if i == 1 else 31)
        assert st["dropped"] == 0 and st["errors"] == 0
    mid = bed.stats(1)
    assert mid["demand"]["fetched"] >= 1 and mid["demand"]["hash_mismatch"] == 0
    assert bed.stats(0)["demand"]["chunks_served"] >= 1


def _kernel_drops(ports: list[int]) -> int:
    """Datagrams the kernel dropped at these loopback UDP ports' sockets (full receive
    buffers): the ``drops`` column of ``/proc/net/udp``."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) in ports:
                    total += int(cols[-1])
    return total


def _counted_drops(bed: LoopbackBed) -> int:
    """Every drop the three nodes counted, with a reason, before or after code ran."""
    total = 0
    for i in range(3):
        st = bed.stats(i)
        total += st["dropped"] + sum(c["dropped"] for c in st["code"].values())
    return total


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_flood_through_the_middle(bed, runtime):
    code = bed.signed(reference_code(runtime, "flood"))
    bed.app.install(code)
    kernel, counted = _kernel_drops(bed.ports), _counted_drops(bed)
    # the first report waits for the code on the way; later ones for 250 capsules at most (a
    # lost last report costs that wait, so it is generous but not a hang guard's)
    r = flood(bed.app, code, bed.addresses[2], count=2000, size=512, report_every=250, timeout=60,
              probe_timeout=HANG_GUARD_S, flow=RUNTIMES.index(runtime) + 1)
    recv = bed.stats(2)["code"][code.hex_name]
    mid = bed.stats(1)["code"][code.hex_name]
    # every capsule arrives, or the shortfall is accounted for: datagrams the kernel dropped
    # at a full socket buffer (a busy machine), or drops a node counted with a reason
    arrived = min(2000, recv["done"] - 1)  # data capsules, the flow's start capsule aside
    lost = 2000 - arrived
    accounted = (_kernel_drops(bed.ports) - kernel) + (_counted_drops(bed) - counted)
    assert lost <= accounted, f"{lost} capsules lost, {accounted} drops counted"
    assert recv["errors"] == 0
    if lost or r["received"] < 2000:
        # a data capsule or the receiver's last report (it travels back the same way) was
        # dropped: only acceptable when a drop was counted
        assert accounted > 0, f"the flood came up short ({r['received']} reported) and no drop was counted"
        return
    assert r["received"] == 2000
    assert r["bytes"] == 2000 * 512
    assert r["capsules_per_s"] > 0 and r["mbit_per_s"] > 0
    assert recv["done"] >= 2001
    assert mid["forwarded"] >= 2002 + 8  # data, start, probe, and the reports coming back


def test_unsigned_native_code_from_the_network_is_refused(bed):
    code = reference_code("native", "forward")  # unsigned; the middle does not have it
    bed.app.install(code)
    body = bed.addresses[2].raw + PORT.to_bytes(2, "big") + b"\x00\x00payload"
    bed.app.send(code, body)
    import time

    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        drops = bed.stats(1)["drops"]
        if drops.get("trust:network.none"):
            break
        time.sleep(0.05)
    else:
        _fail_with_logs(bed, f"no trust refusal at the middle: {bed.stats(1)['drops']}")
    assert bed.code_on(1, code.name) is None
    assert bed.stats(1)["demand"]["failed"] >= 1


def test_pan_ping_flood_and_stats_commands(bed):
    to = str(bed.addresses[2])
    run = lambda *a: subprocess.run([*PAN, *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    p = run("ping", bed.sockets[0], "--to", to, "--runtime", "wasm", "-c", "5", "-s", "256", "--port", "9")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "5 capsules transmitted, 5 received, 0.0% loss" in p.stdout
    assert "rtt min/median/mean/p99/max = " in p.stdout
    p = run("flood", bed.sockets[0], "--to", to, "--runtime", "wasm", "-n", "1000", "--report-every", "100", "--port", "9")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "receiver counted 1000 of 1000 capsules" in p.stdout and "Mbit/s" in p.stdout
    p = run("stats", str(bed.configs[1]))
    assert p.returncode == 0, p.stderr
    assert "node middle" in p.stdout and "demand loading: fetched" in p.stdout and "largest capsule" in p.stdout
    p = run("stats", bed.sockets[2], "--json")
    assert p.returncode == 0 and '"received"' in p.stdout


def test_pan_node_refuses_a_bad_config_and_a_busy_port(bed):
    bad = bed.dir / "bad.toml"
    bad.write_text('[node]\nlisten = ["127.0.0.1:1"]\n[limits]\nqueue = -5\n')
    p = subprocess.run([*PAN, "node", str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and f"{bad}:4: limits.queue" in p.stderr
    busy = bed.dir / "busy.toml"
    busy.write_text(f'[node]\nlisten = ["127.0.0.1:{bed.ports[1]}"]\n')
    p = subprocess.run([*PAN, "node", str(busy)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "already in use" in p.stderr
    assert bed.stats(1)["name"] == "middle"  # the running node did not notice
