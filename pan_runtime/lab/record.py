"""What a running lab made, on disk, and the teardown that removes all of it.

``pan lab up`` writes the record before it makes anything and adds to it as it goes (each
namespace before it is created), so whatever state a lab is in, the record names everything
to remove. ``down``, ``status`` and ``exec`` find a lab by its record; the reaper (which
outlives a ``pan lab up`` killed outright) tears down from it. Teardown ends every process
inside the lab's namespaces (not only the nodes: also what ``pan lab exec`` started), deletes
the namespaces (which removes their veth pairs and ``tc`` qdiscs), the lab's folder and the
record; it is idempotent. A lab on Mininet has no named namespaces: its hosts are known by
their shell's pid and namespace inode, and teardown ends every process in those namespaces,
then stops the Mininet helper (which removes the hosts and links).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pan_runtime.errors import CleanupError, PanError

__all__ = ["LabRecord", "NS_PREFIX", "STATE_ENV", "state_dir", "record_path", "find_record", "teardown", "holder_alive"]

#: every namespace a lab makes is named ``panlab-<lab>-<node>``
NS_PREFIX = "panlab-"
#: where records live (default ``/run/pan-lab``); tests point it elsewhere
STATE_ENV = "PAN_LAB_DIR"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or "/run/pan-lab")


def record_path(lab: str) -> Path:
    return state_dir() / f"{lab}.json"


@dataclass
class LabRecord:
    lab: str
    topology: str
    #: the ``pan lab up`` process holding the lab
    holder: int
    backend: str = "netns"
    #: the reaper watching the holder (``reaper.py``)
    reaper: int = 0
    #: the lab's folder: node configurations, sockets, logs
    dir: str = ""
    namespaces: list[str] = field(default_factory=list)
    #: node name -> {"ns", "pid", "socket", "address", "config", "log"}
    nodes: dict[str, dict[str, object]] = field(default_factory=dict)
    #: the lab's signing key (private, PEM; ``.pub`` beside it), trusted by every node
    key: str = ""
    ready: bool = False
    #: Mininet back end: the helper holding the hosts (``mininet_hosts.py``), and each host's
    #: shell process and network-namespace inode (which tells a host from a reused pid)
    helper: int = 0
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return record_path(self.lab)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path) -> LabRecord:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise PanError(f"no lab record at {path}: is the lab up?") from None
        except (ValueError, TypeError) as exc:
            raise PanError(f"{path} is not a lab record: {exc}") from None


def find_record(what: str) -> LabRecord:
    """The record of the lab named ``what``, or of the lab a topology file ``what`` describes."""
    name = what
    if what.endswith(".toml") or os.sep in what:
        from .topology import load_topology

        name = load_topology(what).name
    return LabRecord.load(record_path(name))


def holder_alive(rec: LabRecord) -> bool:
    try:
        os.kill(rec.holder, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ns_pids(ns: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _end(pids: list[int], sig: int) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def teardown(rec: LabRecord, grace: float = 5.0) -> list[str]:
    """Remove everything ``rec`` names; returns what was removed ("netns ...", "process ...").

    Every removal is tried; when one fails, the record stays (so `pan lab down` can try again)
    and ``CleanupError`` names what is left."""
    done: list[str] = []
    left: list[str] = []
    existing = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    # only what a lab of this name can have made: a record is a file, and a file can be wrong
    spaces = [ns for ns in rec.namespaces if ns in existing and ns.startswith(f"{NS_PREFIX}{rec.lab}-")]
    pids = sorted({p for ns in spaces for p in _ns_pids(ns)})
    done += [f"process {p}" for p in _gone(pids, grace)]
    left += [f"process {p} (survived SIGKILL)" for p in _alive(pids, grace)]
    for ns in spaces:
        r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if r.returncode == 0:
            done.append(f"netns {ns}")
        else:
            left.append(f"netns {ns} (`ip netns del {ns}`: {r.stderr.strip() or f'exit status {r.returncode}'})")
    if rec.hosts or rec.helper:
        done += _teardown_hosts(rec, grace)
    if rec.dir and Path(rec.dir).name.startswith(f"pan-lab-{rec.lab}-"):
        left += [f"file {f}" for f in _remove_tree(Path(rec.dir))]
    if left:
        raise CleanupError(f"lab {rec.lab} is not wholly removed: " + "; ".join(left)
                           + f"; remove these by hand or run `pan lab down {rec.lab}` again")
    rec.path.unlink(missing_ok=True)
    return done


def _remove_tree(path: Path) -> list[str]:
    """Remove the folder ``path``; returns what could not be removed, with why."""
    failed: list[str] = []

    def note(_fn: object, where: str, exc: object) -> None:
        exc = exc[1] if isinstance(exc, tuple) else exc  # onerror gives exc_info, onexc the exception
        if not isinstance(exc, FileNotFoundError):  # gone already is removed
            failed.append(f"{where}: {exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=note)
    else:
        shutil.rmtree(path, onerror=note)
    return failed


def _alive(pids: list[int], grace: float) -> list[int]:
    """Those of ``pids`` still running (not zombies) after up to ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        pids = [p for p in pids if p != os.getpid() and Path(f"/proc/{p}").exists() and not _zombie(p)]
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.05)


def _netns_inode(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return 0


def _gone(pids: list[int], grace: float) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, SIGKILL the rest; returns those killed."""
    _end(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if pids:
            time.sleep(0.05)
    _end(pids, signal.SIGKILL)
    return pids


def _teardown_hosts(rec: LabRecord, grace: float) -> list[str]:
    """End a Mininet lab: the processes in its hosts' namespaces, then the helper, then any host shell left."""
    done: list[str] = []
    inodes = {h["netns"] for h in rec.hosts.values() if h.get("netns")}
    shells = [h["pid"] for h in rec.hosts.values() if h.get("netns") and _netns_inode(h["pid"]) == h["netns"]]
    inside = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) not in shells
              and int(p.name) != os.getpid() and _netns_inode(int(p.name)) in inodes]
    done += [f"process {p}" for p in _gone(inside, grace)]
    helper = rec.helper
    if helper and b"mininet_hosts" in _cmdline(helper):
        _gone([helper], 30.0)  # it stops the network: removes the links and ends the host shells
        done.append(f"mininet helper {helper}")
    left = [p for p in shells if _netns_inode(p) in inodes]
    done += [f"host {p}" for p in _gone(left, grace)]
    return done


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
