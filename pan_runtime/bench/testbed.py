"""Testbeds: where the sender, middle and receiver of the socket topologies run.

``udp`` puts three processes on loopback. ``netns`` builds three network namespaces joined
by veth pairs (sender - middle on 10.201.1.0/24, middle - receiver on 10.201.2.0/24, the
middle forwarding between them) plus a direct sender - receiver pair (10.201.3.0/24) for the
``none`` configuration. Every address is private to namespaces this process made; nothing
is ever sent outside them. A testbed owns every process it starts and every namespace it
makes, and ``close()`` (run by ``with``, by a signal, or at exit) removes them all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pan_runtime.errors import PanError
from pan_runtime.net.lifetime import child_env

from .mininet_session import MININET_SYSCTLS, MininetSession, read_sysctls
from .placement import taskset_prefix

__all__ = [
    "Host",
    "Proc",
    "Testbed",
    "LoopbackTestbed",
    "NetnsTestbed",
    "MininetTestbed",
    "MININET_SYSCTLS",
    "read_sysctls",
    "topology_unavailable",
    "make_testbed",
    "NS_PREFIX",
    "run_command",
    "netns_unavailable",
    "mininet_unavailable",
    "mininet_python",
]

NS_PREFIX = "panbench-"
_CONFIG_SLOT = {"none": 0, "passive": 1, "cforw": 2, "active": 3, "activecopy": 4}


@dataclass
class Host:
    """One of the three hosts: its role, how to run a command inside it, and its addresses."""

    role: str
    #: command prefix that runs a command in the host's network namespace ([]: this one)
    enter: list[str]
    #: the host's own address on the link toward each other role ("middle", "sender", "receiver")
    ips: dict[str, str]

    @property
    def isolated(self) -> bool:
        return bool(self.enter)

    def ip_toward(self, other: str) -> str:
        return self.ips[other]


class Proc:
    """A process a testbed started; stopped (TERM, then KILL) by ``stop``."""

    def __init__(self, name: str, popen: subprocess.Popen[str]):
        self.name = name
        self.popen = popen
        self._said = b""

    def stderr_tail(self, limit: int = 600) -> str:
        """What the process wrote to standard error so far (its last ``limit`` characters),
        read without waiting: a runtime's own words beside a failure it caused."""
        err = self.popen.stderr
        if err is None or err.closed:
            return ""
        fd = err.fileno()
        os.set_blocking(fd, False)
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._said = (self._said + chunk)[-8192:]
        except BlockingIOError:
            pass
        except OSError:
            return ""
        finally:
            os.set_blocking(fd, True)
        return self._said.decode("utf-8", "replace").strip()[-limit:]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, prefix: str, timeout: float) -> str:
        """Read stdout until a line starting with ``prefix``; PanError with its stderr if it dies."""
        import selectors

        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.popen.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    break
                line = self.popen.stdout.readline()
                if not line:
                    break
                if line.startswith(prefix):
                    return line.strip()
        self.stop(close=False)
        err = self.popen.stderr.read() if self.popen.stderr else ""
        self.stop()
        raise PanError(f"{self.name} did not start (exit {self.popen.returncode}): {err.strip()[-800:] or 'no output'}")

    def stop(self, timeout: float = 5.0, close: bool = True) -> None:
        p = self.popen
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
        if not close:
            return
        for f in (p.stdout, p.stderr, p.stdin):
            if f is not None:
                f.close()


class Testbed:
    """Three hosts and the processes running on them."""

    name = "?"

    def __init__(self, placement: str):
        self.placement = placement
        self.procs: list[Proc] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="pan-bench-"))
        self.hosts: dict[str, Host] = {}
        self._closed = False
        atexit.register(self.close)

    def config_unavailable(self, config: str) -> str | None:
        return None

    def port(self, role: str, config: str) -> int:
        """The UDP port of ``role`` in ``config`` (configurations run side by side, each on its own ports)."""
        return 7000 + 10 * _CONFIG_SLOT.get(config, 9) + ("sender", "middle", "receiver").index(role)

    def spawn(self, role: str, argv: list[str], name: str, *, stdin: bool = False) -> Proc:
        """Start ``argv`` on ``role``'s host (pinned as the placement says); ``stdin``: with a
        pipe to write commands to (else standard input is empty)."""
        host = self.hosts[role]
        cmd = list(argv)
        cmd = taskset_prefix(self.placement, role) + cmd
        cmd = host.enter + cmd
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            cwd=self.tmp,
            env=child_env(),
        )
        proc = Proc(name, popen)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        while self.procs:
            self.procs.pop().stop()

    def close(self) -> None:
        """Stop every process, remove the temporary directory and what the topology made;
        ``PanError`` naming whatever could not be removed (after trying everything)."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        try:
            self.stop_all()
        finally:
            atexit.unregister(self.close)
            problems += _remove_tree(self.tmp)
            problems += self._teardown()
        if problems:
            raise PanError(f"{self.name} testbed: clean-up failed: " + "; ".join(problems))

    def _teardown(self) -> list[str]:
        """Remove what the topology made beyond processes and files; what failed, as text."""
        return []

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackTestbed(Testbed):
    """Three processes on 127.0.0.1, each on a port of its own."""

    name = "udp"

    def __init__(self, placement: str):
        super().__init__(placement)
        lo = "127.0.0.1"
        for role in ("sender", "middle", "receiver"):
            self.hosts[role] = Host(role, [], {"sender": lo, "middle": lo, "receiver": lo})
        self._ports: dict[tuple[str, str], int] = {}

    def config_unavailable(self, config: str) -> str | None:
        if config == "passive":
            return "kernel IP forwarding needs a kernel between the hosts (netns or mininet)"
        return None

    def port(self, role: str, config: str) -> int:
        key = (role, config)
        if key not in self._ports:
            self._ports[key] = _free_udp_port()
        return self._ports[key]


def _remove_tree(path: Path) -> list[str]:
    """Remove a directory tree; each failure as text (nothing to remove is no failure)."""
    failed: list[str] = []

    def onerror(_fn: object, name: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            failed.append(f"cannot remove {name}: {getattr(exc, 'strerror', None) or exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onerror)
    else:
        shutil.rmtree(path, onerror=lambda fn, name, info: onerror(fn, name, info[1]))
    return failed


def run_command(cmd: list[str]) -> None:
    """Run ``cmd``; PanError with its error output if it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PanError(f"`{' '.join(cmd)}` failed: {r.stderr.strip() or r.stdout.strip()}")


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or use --topology udp)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    return None


def _our_namespaces() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(NS_PREFIX)]


def delete_namespace(name: str, attempts: int = 5) -> str | None:
    """``ip netns del NAME``, tried again while the kernel still holds it busy (a process in
    it may take a moment to go); None once it is gone, else why it is not."""
    why = ""
    for i in range(attempts):
        r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
        if r.returncode == 0 or name not in _our_namespaces():
            return None
        why = r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}"
        time.sleep(0.1 * (i + 1))
    return why


def sweep_stale_namespaces() -> list[str]:
    """Delete namespaces left by a bench process that no longer exists; returns their names.
    ``PanError`` if one cannot be deleted."""
    gone = []
    failed = []
    for ns in _our_namespaces():
        try:
            pid = int(ns[len(NS_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            why = delete_namespace(ns)
            if why is None:
                gone.append(ns)
            else:
                failed.append(f"{ns} ({why})")
    if failed:
        raise PanError(f"cannot delete stale network namespaces {', '.join(failed)}; remove them with `ip netns del NAME`")
    return gone


class NetnsTestbed(Testbed):
    """sender - middle - receiver in three network namespaces (plus a direct sender - receiver pair)."""

    name = "netns"
    SUBNETS = {"sm": "10.201.1", "mr": "10.201.2", "sr": "10.201.3"}

    def __init__(self, placement: str):
        why = netns_unavailable()
        if why:
            raise PanError(f"topology netns is unavailable: {why}")
        super().__init__(placement)
        pid = os.getpid()
        self.ns = {role: f"{NS_PREFIX}{pid}-{role[0]}" for role in ("sender", "middle", "receiver")}
        self.made: list[str] = []
        try:
            sweep_stale_namespaces()
            self._build(pid)
        except BaseException:
            self.close()
            raise

    def _build(self, pid: int) -> None:
        ns = self.ns
        for name in ns.values():
            run_command(["ip", "netns", "add", name])
            self.made.append(name)
            run_command(["ip", "-n", name, "link", "set", "lo", "up"])
        s, m, r = ns["sender"], ns["middle"], ns["receiver"]
        net = self.SUBNETS
        pairs = [("sm", s, m), ("mr", m, r), ("sr", s, r)]
        for tag, a, b in pairs:
            va, vb = f"pb{pid}{tag}a", f"pb{pid}{tag}b"
            run_command(["ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b])
            run_command(["ip", "-n", a, "addr", "add", f"{net[tag]}.1/24", "dev", va])
            run_command(["ip", "-n", b, "addr", "add", f"{net[tag]}.2/24", "dev", vb])
            run_command(["ip", "-n", a, "link", "set", va, "up"])
            run_command(["ip", "-n", b, "link", "set", vb, "up"])
        # the middle forwards between the two subnets (a sysctl of its own namespace only)
        run_command(["ip", "netns", "exec", m, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        run_command(["ip", "-n", s, "route", "add", f"{net['mr']}.0/24", "via", f"{net['sm']}.2"])
        run_command(["ip", "-n", r, "route", "add", f"{net['sm']}.0/24", "via", f"{net['mr']}.1"])
        self.hosts = {
            # each host's own address on the link toward each other host (.1 = the first of the pair)
            "sender": Host("sender", ["ip", "netns", "exec", s], {"middle": f"{net['sm']}.1", "receiver": f"{net['sr']}.1"}),
            "middle": Host("middle", ["ip", "netns", "exec", m], {"sender": f"{net['sm']}.2", "receiver": f"{net['mr']}.1"}),
            "receiver": Host("receiver", ["ip", "netns", "exec", r], {"middle": f"{net['mr']}.2", "sender": f"{net['sr']}.2"}),
        }

    def _teardown(self) -> list[str]:
        failed = []
        for name in getattr(self, "made", []):
            why = delete_namespace(name)
            if why is not None:
                failed.append(f"cannot delete network namespace {name} ({why}): remove it with `ip netns del {name}`")
        self.made = []
        return failed


def mininet_python() -> str | None:
    """A Python interpreter that can import Mininet (Debian installs it for the system python3)."""
    import sys

    for cand in (sys.executable, "/usr/bin/python3"):
        if cand and Path(cand).exists():
            r = subprocess.run([cand, "-c", "import mininet.net"], capture_output=True)
            if r.returncode == 0:
                return cand
    return None


def mininet_unavailable() -> str | None:
    if shutil.which("mn") is None or shutil.which("mnexec") is None:
        return "Mininet is not installed (Debian's `mininet` package: apt-get install mininet)"
    if os.geteuid() != 0:
        return "Mininet needs root"
    if mininet_python() is None:
        return "no Python here can import Mininet's `mininet` package"
    return None


class MininetTestbed(Testbed):
    """The same line (plus the direct sender - receiver link), built by Mininet from hosts
    linked directly: no switch, no controller, no Open vSwitch."""

    name = "mininet"

    def __init__(self, placement: str):
        why = mininet_unavailable()
        if why:
            raise PanError(f"topology mininet is unavailable: {why}")
        super().__init__(placement)
        self.helper: subprocess.Popen[str] | None = None
        #: sysctls Mininet changed (name -> (before, during)); restored by close()
        self.sysctl_changes: dict[str, tuple[str, str]] = {}
        self.session: MininetSession | None = None
        try:
            self.session = MininetSession()  # one Mininet on the machine at a time
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        import json
        import selectors

        script = Path(__file__).with_name("mininet_line.py")
        py = mininet_python()
        assert py is not None
        self.helper = subprocess.Popen(
            [py, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, cwd=self.tmp,
        )
        assert self.helper.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.helper.stdout, selectors.EVENT_READ)
            line = self.helper.stdout.readline() if sel.select(60.0) else ""
        if not line.startswith("{"):
            self.helper.kill()
            err = self.helper.communicate(timeout=10)[1]
            raise PanError(f"Mininet did not build the line topology: {err.strip()[-800:] or 'no output'}")
        pids = json.loads(line)["pids"]
        assert self.session is not None
        self.sysctl_changes = self.session.changed()
        net = NetnsTestbed.SUBNETS
        enter = {role: ["mnexec", "-a", str(pid)] for role, pid in pids.items()}
        self.hosts = {
            "sender": Host("sender", enter["sender"], {"middle": f"{net['sm']}.1", "receiver": f"{net['sr']}.1"}),
            "middle": Host("middle", enter["middle"], {"sender": f"{net['sm']}.2", "receiver": f"{net['mr']}.1"}),
            "receiver": Host("receiver", enter["receiver"], {"middle": f"{net['mr']}.2", "sender": f"{net['sr']}.2"}),
        }

    def _teardown(self) -> list[str]:
        h = self.helper
        if h is not None:
            if h.stdin is not None:
                h.stdin.close()
            try:
                h.wait(30)
            except subprocess.TimeoutExpired:
                h.kill()
                h.wait(10)
            for f in (h.stdout, h.stderr):
                if f is not None:
                    f.close()
            self.helper = None
        session, self.session = self.session, None
        return session.close() if session is not None else []


def topology_unavailable(name: str) -> str | None:
    """Why topology ``name`` cannot run here (None when it can)."""
    if name in ("inproc", "udp"):
        return None
    if name == "netns" or name.startswith("lab:"):
        return netns_unavailable()
    if name == "mininet":
        return mininet_unavailable()
    return f"unknown topology {name!r}"


def make_testbed(name: str, placement: str) -> Testbed:
    if name == "udp":
        return LoopbackTestbed(placement)
    if name == "netns":
        return NetnsTestbed(placement)
    if name == "mininet":
        return MininetTestbed(placement)
    raise PanError(f"topology {name} is unavailable: {topology_unavailable(name)}")
