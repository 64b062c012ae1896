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
]

IP_UDP_OVERHEAD = 28
MAX_SIZE = 65535
EXPERIMENTS = ("dispatch", "ping", "flood", "spread", "path", "converge")
#: experiments that run only on a lab (``--topology lab:FILE``)
LAB_ONLY = ("spread", "path", "converge")
CONFIGS = ("none", "passive", "cforw", "active", "activecopy")
TOPOLOGIES = ("inproc", "udp", "netns", "mininet")
#: a lab from a topology file (``pan lab``): ``lab:FILE``
LAB_PREFIX = "lab:"
PLACEMENTS = ("onecpu", "hosts", "free")
#: runtimes built into the harness for ``dispatch`` only: a Python function in the node, and a
#: loop without the node
BASELINES = ("null", "bare")
DEFAULT_SIZES = (128, 156, 512, 1024, 1500, 1504, 2048, 8192)
QUICK_SIZES = (156, 1500)
#: body header each experiment's protocol needs (forward_hdr, ping_hdr, flood_hdr)
_BODY_HEADER = {"dispatch": 20, "ping": 56, "flood": 68, "spread": 56, "path": 56, "converge": 4}
#: capsules per trial (and trials) when --count/--trials are not given
DEFAULT_COUNTS = {"dispatch": 2000, "ping": 300, "flood": 4000, "spread": 1, "path": 300, "converge": 1}
QUICK_COUNTS = {"dispatch": 200, "ping": 40, "flood": 400, "spread": 1, "path": 40, "converge": 1}


def min_size(experiment: str) -> int:
    """The smallest IP packet size that carries ``experiment``'s capsule."""
    return IP_UDP_OVERHEAD + HEADER_SIZE + _BODY_HEADER[experiment]


def config_unsupported(experiment: str, topology: str, config: str) -> str | None:
    """Why ``config`` cannot run ``experiment`` on ``topology`` (None when it can)."""
    if experiment == "dispatch":
        return None if config in ("active", "activecopy") else "dispatch measures a node: active or activecopy only"
    if experiment in LAB_ONLY and not topology.startswith(LAB_PREFIX):
        return f"{experiment} runs on a lab (--topology lab:FILE)"
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
    #: what the plan names but cannot run here ("runtime jvm": "no JDK")
    skipped: dict[str, str] = field(default_factory=dict)
    #: topologies the plan names that are unavailable here, with the reason
    skipped_topologies: dict[str, str] = field(default_factory=dict)
    #: what builds ``lab:FILE`` topologies: ``netns`` or ``mininet`` (``pan lab up --backend``)
    lab_backend: str = "netns"

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
            "lab_backend": self.lab_backend,
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
    configs = _names(args.config, CONFIGS, "configuration", CONFIGS)
    placement = args.placement
    if placement not in PLACEMENTS:
        raise PanError(f"unknown placement {placement!r}; known: {', '.join(PLACEMENTS)}")
    known = tuple(sorted(set(known_runtimes) | set(BASELINES)))
    protocols = set(known_runtimes) if with_protocols is None else with_protocols
    default_rt = tuple(n for n in BUILTIN_ORDER if n in known_runtimes and n in protocols) + tuple(
        sorted(n for n, why in known_runtimes.items() if n not in BUILTIN_ORDER and n in protocols and why is None)
    )
    runtimes = _names(args.runtime, known, "runtime", default_rt)
    sizes = parse_sizes(args.size, experiments, QUICK_SIZES if args.quick else DEFAULT_SIZES)
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
    plan = Plan(experiments, topologies, configs, runtimes, sizes, counts, trials, warmup, args.batch, placement, args.quick,
                lab_backend=getattr(args, "lab_backend", "netns"))
    for r in runtimes:
        why = known_runtimes.get(r)
        if not why and r not in BASELINES and r not in protocols:
            why = "no reference protocols: its plugin registers none (the pan_register_sources hook)"
        if why:
            plan.skipped[f"runtime {r}"] = why
    return plan


def _cpus() -> int:
    return len(os.sched_getaffinity(0))
