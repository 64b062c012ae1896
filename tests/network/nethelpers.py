"""Helpers for the network tests: short socket paths, free ports, configs, node processes, and a
plain UDP socket playing a neighbour that speaks the demand-loading system protocol."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.wire import SYS_ERROR_REPORT
from pan_runtime.net.config import parse_config
from pan_runtime.net.daemon import NodeDaemon
from pan_runtime.net.demand import REQ_FIELDS, REQUEST, SYS_HEADER, encode_chunk
from pan_runtime.net.lifetime import child_env


def short_dir() -> Path:
    """A fresh directory with a short path (UNIX socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="pan-", dir="/tmp"))


def free_udp_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    socks = []
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        for _ in range(n):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def line_configs(d: Path, ports: list[int], extra: str = "", names=("sender", "middle", "receiver")) -> list[Path]:
    """Configs for nodes in a line on 127.0.0.1 ports, each with an app socket in ``d``."""
    addrs = [f"127.0.0.1:{p}" for p in ports]
    paths = []
    for i, name in enumerate(names):
        lines = [
            "[node]",
            f'name = "{name}"',
            f'listen = ["{addrs[i]}"]',
            f'app_socket = "{name}.sock"',
        ]
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(names)]
        for j in nbrs:
            lines += ["[[neighbors]]", f'address = "{addrs[j]}"']
        for j in range(len(names)):
            if j != i and j not in nbrs:
                via = addrs[i + 1] if j > i else addrs[i - 1]
                lines += ["[[routes]]", f'dest = "{addrs[j]}"', f'via = "{via}"', f"metric = {abs(j - i)}"]
        p = d / f"{name}.toml"
        p.write_text("\n".join(lines) + "\n" + extra)
        paths.append(p)
    return paths


def daemon_from(path: Path, **kw) -> NodeDaemon:
    return NodeDaemon(parse_config(path.read_text(), str(path), base=path.parent), **kw)


def pump(daemons: list[NodeDaemon], until: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Turn every daemon's loop until ``until()`` holds (True) or the time is up (False): the
    time is a hang guard, long enough for a machine running other suites beside this one."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for d in daemons:
            d.run_once(0.0005)
        if until():
            return True
    return until()


@contextlib.contextmanager
def running(daemon: NodeDaemon) -> Iterator[NodeDaemon]:
    """Run a daemon's loop in a background thread for the duration of the block."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                daemon.run_once(0.01)
        except BaseException as exc:  # surfaced in the test
            errors.append(exc)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield daemon
    finally:
        stop.set()
        t.join(5)
    if errors:
        raise errors[0]


PAN = [sys.executable, "-m", "pan_runtime.cli.main"]


class NodeProcesses:
    """``pan node`` processes; ``stop`` ends them all (and is safe to call twice)."""

    def __init__(self, configs: list[Path], logdir: Path):
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.configs = configs
        env = child_env(dict(os.environ, PYTHONUNBUFFERED="1"))  # nodes die with the test run
        try:
            for cfg in configs:
                log = logdir / f"{cfg.stem}.log"
                self.logs.append(log)
                with open(log, "wb") as out:
                    self.procs.append(subprocess.Popen([*PAN, "node", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env))
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        for p, log in zip(self.procs, self.logs, strict=True):
            while b"ready" not in log.read_bytes():
                if p.poll() is not None:
                    raise AssertionError(f"{log.stem} exited {p.returncode}: {log.read_text()}")
                if time.monotonic() > end:
                    raise AssertionError(f"{log.stem} not ready in {timeout} s: {log.read_text()}")
                time.sleep(0.02)

    def output(self) -> str:
        return "\n".join(f"--- {log.stem}\n{log.read_text(errors='replace')}" for log in self.logs)

    def stop(self) -> list[int | None]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(10))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(5))
        return codes


def remove_tree(d: Path) -> None:
    shutil.rmtree(d, ignore_errors=True)


def pan(*args: str, input: str | None = None, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """``pan ARGS`` in a fresh interpreter (``timeout``: a hang guard, not a performance limit)."""
    return subprocess.run([*PAN, *args], capture_output=True, text=True, input=input, timeout=timeout, env=child_env())


class LineBed:
    """sender - middle - receiver as ``pan node`` processes on loopback with the default trust
    rules; the nodes trust one key (``self.key_path``, for ``--key``) and wait long for code
    they fetch (a loaded machine compiles slowly)."""

    NAMES = ("sender", "middle", "receiver")

    def __init__(self, extra: str = "") -> None:
        from pan_runtime.data.address import NodeAddress
        from pan_runtime.data.keys import generate_keypair

        self.dir = short_dir()
        self.key_path, pub = generate_keypair(self.dir / "site")
        self.ports = free_udp_ports(3)
        trust = f'[trust]\ntrusted_keys = ["{pub}"]\n[demand]\ndeadline_ms = 120000\n'
        self.configs = line_configs(self.dir, self.ports, trust + extra)
        self.addresses = [str(NodeAddress.from_endpoint("127.0.0.1", p)) for p in self.ports]
        self.sockets = [str(self.dir / f"{n}.sock") for n in self.NAMES]
        self.procs = NodeProcesses(self.configs, self.dir)
        try:
            self.procs.wait_ready(120.0)
        except BaseException:
            self.close()
            raise

    def log(self, i: int) -> str:
        return self.procs.logs[i].read_text(errors="replace")

    def close(self) -> list[int | None]:
        try:
            return self.procs.stop()
        finally:
            remove_tree(self.dir)


class FakePeer:
    """A UDP socket on 127.0.0.1 that the nodes know as a neighbour (``rcvbuf``: a receive
    buffer with room for every datagram a test has come back to it)."""

    def __init__(self, port: int, rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.address = NodeAddress.from_endpoint("127.0.0.1", port)
        #: what ``collect`` has received so far
        self.got: list[bytes] = []

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def recv_all(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(70000))
            except BlockingIOError:
                return out

    def collect(self) -> int:
        """Keep what came since the last call; how many datagrams came in all."""
        self.got += self.recv_all()
        return len(self.got)

    def close(self) -> None:
        self.sock.close()




def requests_from(peer: FakePeer) -> list[tuple[bytes, list[int], int]]:
    """The code requests the peer received (error reports about its capsules are passed over)."""
    out = []
    for data in peer.recv_all():
        cap = Capsule.parse_bytes(data)
        body = cap.body.tobytes()
        if cap.is_system and body[0] == SYS_ERROR_REPORT:
            cap.release()
            continue
        assert cap.is_system and body[0] == REQUEST
        size, n = REQ_FIELDS.unpack_from(body, SYS_HEADER.size)
        idx = list(struct.unpack_from(f">{n}H", body, SYS_HEADER.size + REQ_FIELDS.size))
        out.append((cap.name, idx, size))
        cap.release()
    return out


def big_code(kb: int = 6) -> CodeObject:
    src = b"# " + b"padding " * (kb * 128) + b"\ndef accept(pni, capsule, length):\n    return DONE\n"
    return CodeObject.create("restricted_py", src, entry={"accept": "accept"}, meta={"label": "big"})


def chunks_of(code_pco: bytes, name: bytes, server: NodeAddress, dest: NodeAddress, size: int) -> list[bytes]:
    count = (len(code_pco) + size - 1) // size
    return [encode_chunk(name, server, dest, i, count, len(code_pco), code_pco[i * size : (i + 1) * size]) for i in range(count)]
