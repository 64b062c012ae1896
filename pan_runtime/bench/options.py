"""The names ``pan bench`` accepts and the plan a command line turns into.

Every name is checked before anything starts, so a typo costs nothing and leaves nothing
behind. Sizes are IP packet sizes, as in the paper (capsule = size - 28 bytes of IP and UDP
headers).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from pan_runtime.data.capsule import HEADER_SIZE
from pan_runtime.errors import PanError
from pan_runtime.node.config import MAX_POLL_US, MAX_THREADS

from .placement import cpu_apart, middle_thread_cpus

__all__ = [
    "EXPERIMENTS",
    "CONFIGS",
    "TOPOLOGIES",
    "LAB_PREFIX",
    "LAB_ONLY",
    "PLACEMENTS",
    "BASELINES",
    "DEFAULT_SIZES",
    "IP_UDP_OVERHEAD",
    "MAX_SIZE",
    "min_size",
    "Plan",
    "make_plan",
    "config_unsupported",
    "ISOLATIONS",
    "PROCESS_SUFFIX",
    "cell_runtime",
    "split_cell",
]

IP_UDP_OVERHEAD = 28
MAX_SIZE = 65535
#: the most source ports the capacity generator sends from (--flows)
MAX_FLOWS = 64
#: capsules a capacity drain may queue (--drain): enough to time, few enough to fit sockets
MIN_DRAIN, MAX_DRAIN = 1000, 10_000_000
#: how the capacity sink reads (--sink): with UDP_GRO, or one datagram a read
SINKS = ("gro", "plain")
EXPERIMENTS = ("dispatch", "ping", "flood", "capacity", "spread", "path", "converge")
#: experiments that run only on a lab (``--topology lab:FILE``)
LAB_ONLY = ("spread", "path", "converge")
#: ``cbatch``: the C batched forwarder, a baseline of the capacity experiment only
CONFIGS = ("none", "passive", "cforw", "cbatch", "active", "activecopy")
TOPOLOGIES = ("inproc", "udp", "netns", "mininet")
#: a lab from a topology file (``pan lab``): ``lab:FILE``
LAB_PREFIX = "lab:"
PLACEMENTS = ("onecpu", "hosts", "free")
#: runtimes built into the harness for ``dispatch`` only: a Python function in the node, and a
#: loop without the node
BASELINES = ("null", "bare")
#: how the middle node runs its runtimes' code (``--isolation``; docs/isolation.md)
ISOLATIONS = ("in_process", "process")
#: what a runtime's cells are named by when the middle ran it in process isolation
#: ("native/process"): the isolation is a dimension of the cells, as the runtime is
PROCESS_SUFFIX = "/process"
DEFAULT_SIZES = (128, 156, 512, 1024, 1500, 1504, 2048, 8192)
QUICK_SIZES = (156, 1500)
#: body header each experiment's protocol needs (forward_hdr, ping_hdr, flood_hdr)
_BODY_HEADER = {"dispatch": 20, "ping": 56, "flood": 68, "capacity": 20, "spread": 56, "path": 56, "converge": 4}
#: capsules per trial (and trials) when --count/--trials are not given (capacity's trials
#: last --duration seconds instead; its searches take at most --steps trials)
DEFAULT_COUNTS = {"dispatch": 2000, "ping": 300, "flood": 4000, "capacity": 1, "spread": 1, "path": 300, "converge": 1}
QUICK_COUNTS = {"dispatch": 200, "ping": 40, "flood": 400, "capacity": 1, "spread": 1, "path": 40, "converge": 1}
#: sizes of a run of capacity alone when --size is not given (the sizes of issue tables)
CAPACITY_SIZES = (128, 1500)
QUICK_CAPACITY_SIZES = (1500,)
#: the capacity search's settings when not given: trial seconds, loss threshold (a share),
#: trials per search, the highest rate tried (capsules/s)
CAPACITY_DEFAULTS = {"duration": 1.0, "loss": 0.001, "steps": 8, "top_rate": 1_000_000.0}
QUICK_CAPACITY = {"duration": 0.3, "loss": 0.001, "steps": 4, "top_rate": 1_000_000.0}


def cell_runtime(runtime: str, isolation: str) -> str:
    """The name a runtime's cells go by under ``isolation`` (``native``, ``native/process``)."""
    return runtime + PROCESS_SUFFIX if isolation == "process" else runtime


def split_cell(name: str) -> tuple[str, str]:
    """(runtime, isolation) of a cell's runtime name (``cell_runtime`` undone)."""
    if name.endswith(PROCESS_SUFFIX):
        return name[: -len(PROCESS_SUFFIX)], "process"
    return name, "in_process"


def min_size(experiment: str) -> int:
    """The smallest IP packet size that carries ``experiment``'s capsule."""
    return IP_UDP_OVERHEAD + HEADER_SIZE + _BODY_HEADER[experiment]


def config_unsupported(experiment: str, topology: str, config: str) -> str | None:
    """Why ``config`` cannot run ``experiment`` on ``topology`` (None when it can)."""
    if experiment == "dispatch":
        return None if config in ("active", "activecopy") else "dispatch measures a node: active or activecopy only"
    if experiment in LAB_ONLY and not topology.startswith(LAB_PREFIX):
        return f"{experiment} runs on a lab (--topology lab:FILE)"
    if config == "cbatch" and experiment != "capacity":
        return "the C batched forwarder is a baseline of the capacity experiment"
    if experiment == "capacity" and (topology == "inproc" or topology.startswith(LAB_PREFIX)):
        return "capacity runs its generator and sink on sockets (udp, netns or mininet)"
    if config == "passive" and topology not in ("netns", "mininet"):
        return "kernel IP forwarding needs a kernel between the hosts (netns or mininet)"
    if config == "cforw" and topology == "inproc":
        return "a UDP forwarder needs sockets (udp, netns or mininet)"
    return None


@dataclass
class Plan:
    """What a run does, checked and with defaults filled in."""

    experiments: list[str]
    topologies: list[str]
    configs: list[str]
    runtimes: list[str]
    sizes: list[int]
    counts: dict[str, int]
    trials: int
    warmup: int
    batch: int
    placement: str
    quick: bool
    #: the capacity search: seconds per trial, loss threshold (a share), trials per search,
    #: highest rate tried (capsules/s)
    duration: float = CAPACITY_DEFAULTS["duration"]
    loss: float = CAPACITY_DEFAULTS["loss"]
    steps: int = int(CAPACITY_DEFAULTS["steps"])
    top_rate: float = CAPACITY_DEFAULTS["top_rate"]
    #: capacity: capsules queued for each drain (0: the paced search)
    drain: int = 0
    #: what the plan names but cannot run here ("runtime jvm": "no JDK")
    skipped: dict[str, str] = field(default_factory=dict)
    #: topologies the plan names that are unavailable here, with the reason
    skipped_topologies: dict[str, str] = field(default_factory=dict)
    #: what builds ``lab:FILE`` topologies: ``netns`` or ``mininet`` (``pan lab up --backend``)
    lab_backend: str = "netns"
    #: fast-path threads of every pan node (``limits.threads``)
    threads: int = 1
    #: capacity: source ports the generator sends from toward a pan middle
    flows: int = 1
    #: capacity: how the sink reads (``SINKS``)
    sink: str = "gro"
    #: how the middle node runs its runtimes (``ISOLATIONS``): each one named is a set of cells
    isolations: list[str] = field(default_factory=lambda: ["in_process"])
    #: process cells: the middle's workers run on ``worker_cpu`` (a CPU the middle does not run
    #: on) and poll their rings this long after each batch (``limits.worker_poll_us``; 0: no)
    worker_poll_us: int = 0
    worker_cpu: int | None = None
    #: in-process cells: run beside a busy loop on ``worker_cpu`` (``busyloop.py``), the control
    #: for process cells whose workers poll there
    busy_worker_cpu: bool = False
    #: the middle's fast-path threads each on one CPU of its own placement (``--pin-threads``)
    pin_threads: bool = False

    @property
    def worker_poll(self) -> tuple[int, int] | None:
        """(CPU, µs) for the process cells' middle (``node_toml``), or None: its workers sleep."""
        return (self.worker_cpu, self.worker_poll_us) if self.worker_poll_us and self.worker_cpu is not None else None

    @property
    def thread_cpus(self) -> list[int]:
        """``limits.thread_cpus`` of the middle node ([]: its threads go where the scheduler puts them)."""
        return middle_thread_cpus(self.placement) if self.pin_threads else []

    def cell_runtimes(self, runtimes: list[str]) -> list[str]:
        """``runtimes`` (plain names) as the cells' runtimes: one per isolation of the plan,
        each runtime's next to each other (``native``, ``native/process``, ``wasm``, ...). The
        dispatch baselines ``null`` and ``bare`` run no code object in the node: in-process only."""
        return [cell_runtime(r, i) for r in runtimes for i in self.isolations if i == "in_process" or r not in BASELINES]

    def options(self) -> dict[str, object]:
        return {
            "experiments": self.experiments,
            "topologies": self.topologies,
            "configs": self.configs,
            "runtimes": self.runtimes,
            "sizes": self.sizes,
            "counts": self.counts,
            "trials": self.trials,
            "warmup": self.warmup,
            "batch": self.batch,
            "placement": self.placement,
            "quick": self.quick,
            **({"capacity": {"duration_s": self.duration, "loss": self.loss, "steps": self.steps, "top_rate": self.top_rate,
                             **({"drain": self.drain} if self.drain else {})}}
               if "capacity" in self.experiments else {}),
            "lab_backend": self.lab_backend,
            "threads": self.threads,
            "flows": self.flows,
            **({"sink": self.sink} if "capacity" in self.experiments else {}),
            "isolations": self.isolations,
            **({"worker_poll_us": self.worker_poll_us, "worker_cpu": self.worker_cpu} if self.worker_poll_us else {}),
            **({"busy_worker_cpu": True} if self.busy_worker_cpu else {}),
            **({"thread_cpus": self.thread_cpus} if self.pin_threads else {}),
        }


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _names(text: str | None, known: tuple[str, ...], what: str, default: tuple[str, ...]) -> list[str]:
    items = _csv(text) or list(default)
    for t in items:
        if t not in known:
            raise PanError(f"unknown {what} {t!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(items))


def _topologies(text: str | None) -> list[str]:
    """The named topologies and ``lab:FILE`` ones (each file checked now, before anything runs)."""
    items = _csv(text)
    labs = [t for t in items if t.startswith(LAB_PREFIX)]
    for t in labs:
        from pan_runtime.lab.topology import load_topology

        load_topology(t[len(LAB_PREFIX):])
    rest = _names(",".join(t for t in items if t not in labs), TOPOLOGIES, "topology", () if labs else ("inproc",))
    return list(dict.fromkeys(rest + labs))


def parse_sizes(text: str | None, experiments: list[str], default: tuple[int, ...]) -> list[int]:
    items = _csv(text)
    if not items:
        return list(default)
    smallest = min(min_size(e) for e in experiments)
    out = []
    for t in items:
        if not t.isdigit():
            raise PanError(f"size {t!r} is not a whole number of bytes")
        n = int(t)
        if n < IP_UDP_OVERHEAD + HEADER_SIZE:
            raise PanError(_too_small(n, smallest))
        if n > MAX_SIZE:
            raise PanError(f"size {n} is above what a datagram can carry ({MAX_SIZE} bytes incl. IP/UDP headers)")
        out.append(n)
    # a size too small for one experiment's capsule skips that experiment's cells (with the
    # reason in the results); a size list in which nothing could run is refused
    if max(out) < smallest:
        raise PanError(_too_small(max(out), smallest))
    return list(dict.fromkeys(out))


def _too_small(n: int, smallest: int) -> str:
    return (
        f"size {n} is below the smallest capsule these experiments send ({smallest} bytes incl. "
        f"{IP_UDP_OVERHEAD} bytes of IP/UDP headers and the {HEADER_SIZE}-byte capsule header)"
    )


#: the built-in runtimes, first in the default list and in tables
BUILTIN_ORDER = ("native", "wasm", "jvm", "restricted_py")


def make_plan(args: argparse.Namespace, known_runtimes: dict[str, str | None], with_protocols: set[str] | None = None) -> Plan:
    """Check the command line; ``known_runtimes`` maps runtime name to None or why it is
    unavailable, ``with_protocols`` names the runtimes whose plugins registered reference
    protocols (None: every known runtime has them). The default runtimes are every available
    runtime that has them, the built-in ones first."""
    experiments = _names(args.experiment, EXPERIMENTS, "experiment", ("dispatch",))
    topologies = _topologies(args.topology)
    configs = _names(args.config, CONFIGS, "configuration",
                     CONFIGS if "capacity" in experiments else tuple(c for c in CONFIGS if c != "cbatch"))
    placement = args.placement
    if placement not in PLACEMENTS:
        raise PanError(f"unknown placement {placement!r}; known: {', '.join(PLACEMENTS)}")
    known = tuple(sorted(set(known_runtimes) | set(BASELINES)))
    protocols = set(known_runtimes) if with_protocols is None else with_protocols
    default_rt = tuple(n for n in BUILTIN_ORDER if n in known_runtimes and n in protocols) + tuple(
        sorted(n for n, why in known_runtimes.items() if n not in BUILTIN_ORDER and n in protocols and why is None)
    )
    runtimes = _names(args.runtime, known, "runtime", default_rt)
    if experiments == ["capacity"]:
        default_sizes = QUICK_CAPACITY_SIZES if args.quick else CAPACITY_SIZES
    else:
        default_sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    sizes = parse_sizes(args.size, experiments, default_sizes)
    base = QUICK_COUNTS if args.quick else DEFAULT_COUNTS
    counts = {e: (args.count if args.count is not None else base[e]) for e in experiments}
    trials = args.trials if args.trials is not None else (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 1)
    if any(c <= 0 for c in counts.values()) or trials <= 0:
        raise PanError("--count and --trials must be positive")
    if warmup < 0:
        raise PanError("--warmup must be zero or more")
    if args.batch < 1:
        raise PanError("--batch must be at least 1")
    if placement == "hosts" and _cpus() < 2:
        raise PanError("--placement hosts needs two CPUs (one for the middle, one for the ends); this process may use one")
    threads, flows = getattr(args, "threads", 1), getattr(args, "flows", 1)
    if not 1 <= threads <= MAX_THREADS:
        raise PanError(f"--threads must be 1..{MAX_THREADS} (limits.threads)")
    if not 1 <= flows <= MAX_FLOWS:
        raise PanError(f"--flows must be 1..{MAX_FLOWS}")
    sink = getattr(args, "sink", "gro")
    if sink not in SINKS:
        raise PanError(f"--sink must be one of {', '.join(SINKS)}")
    isolations = _names(getattr(args, "isolation", None), ISOLATIONS, "isolation", ("in_process",))
    if "process" in isolations:
        from pan_runtime.isolation.mechanism import process_unavailable

        why = process_unavailable()
        if why:
            raise PanError(f"--isolation process: process isolation is unavailable here: {why}")
    poll = getattr(args, "worker_poll_us", None) or 0
    worker_cpu = None
    if poll:
        if not 0 < poll <= MAX_POLL_US:
            raise PanError(f"--worker-poll-us must be 1..{MAX_POLL_US} (limits.worker_poll_us)")
        if "process" not in isolations:
            raise PanError("--worker-poll-us is for the middle's workers: it needs --isolation process")
        worker_cpu = cpu_apart(placement)
        if worker_cpu is None:
            raise PanError("--worker-poll-us needs a CPU the middle does not run on: --placement onecpu or hosts, "
                           "on a machine where this process may use two CPUs or more")
    busy = bool(getattr(args, "busy_worker_cpu", False))
    if busy and (not poll or "in_process" not in isolations):
        raise PanError("--busy-worker-cpu is the in-process cells' control for workers that poll: "
                       "it needs --worker-poll-us and --isolation in_process,process")
    plan = Plan(experiments, topologies, configs, runtimes, sizes, counts, trials, warmup, args.batch, placement, args.quick,
                **_capacity_settings(args), lab_backend=getattr(args, "lab_backend", "netns"), threads=threads, flows=flows,
                sink=sink, isolations=isolations, worker_poll_us=poll, worker_cpu=worker_cpu, busy_worker_cpu=busy,
                pin_threads=bool(getattr(args, "pin_threads", False)))
    for r in runtimes:
        why = known_runtimes.get(r)
        if not why and r not in BASELINES and r not in protocols:
            why = "no reference protocols: its plugin registers none (the pan_register_sources hook)"
        if why:
            plan.skipped[f"runtime {r}"] = why
    return plan


def _capacity_settings(args: argparse.Namespace) -> dict[str, float | int]:
    """--duration, --loss (percent on the command line), --steps, --top-rate, --drain, checked."""
    base = QUICK_CAPACITY if args.quick else CAPACITY_DEFAULTS
    duration = getattr(args, "duration", None)
    loss = getattr(args, "loss", None)
    steps = getattr(args, "steps", None)
    top = getattr(args, "top_rate", None)
    drain = getattr(args, "drain", None) or 0
    out: dict[str, float | int] = {
        "drain": drain,
        "duration": base["duration"] if duration is None else duration,
        "loss": base["loss"] if loss is None else loss / 100,
        "steps": int(base["steps"]) if steps is None else steps,
        "top_rate": base["top_rate"] if top is None else top,
    }
    if not 0.01 <= out["duration"] <= 600:
        raise PanError("--duration must be between 0.01 and 600 seconds")
    if not 0 <= out["loss"] < 1:
        raise PanError("--loss is a percentage from 0 up to (not including) 100")
    if not 1 <= out["steps"] <= 64:
        raise PanError("--steps must be between 1 and 64")
    if not 1000 <= out["top_rate"] <= 1e8:
        raise PanError("--top-rate must be between 1000 and 100000000 capsules per second")
    if drain and not MIN_DRAIN <= drain <= MAX_DRAIN:
        raise PanError(f"--drain must be between {MIN_DRAIN} and {MAX_DRAIN} capsules")
    return out


def _cpus() -> int:
    return len(os.sched_getaffinity(0))
