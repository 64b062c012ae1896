"""Results of a bench run: one row per (experiment, topology, config, runtime, size, metric,
stat), the run's ``meta``, the JSON document and the schema it follows.

The JSON shape is a public contract (``docs/bench.md``): other tools read it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pan_runtime.errors import PanError

from .options import PROCESS_SUFFIX

__all__ = [
    "METRICS",
    "STATS",
    "Result",
    "index",
    "summarize",
    "meta",
    "document",
    "write_json",
    "read_json",
    "validate_document",
]

METRICS = (
    "dispatch_us", "rtt_us", "added_us", "overhead_pct", "capsules_per_s", "mbit_per_s", "gc_pauses", "fast_share",
    "others_cpu",
    # the capacity experiment (pan_runtime.bench.capacity)
    "capacity_kpps", "cpu_us_per_capsule", "syscalls_per_capsule", "loss_pct",
    # experiments on a lab (pan_runtime.lab.experiments)
    "spread_ms", "code_bytes", "chunks", "resent", "hops", "per_hop_us",
    "converge_start_ms", "converge_down_ms", "converge_up_ms", "dv_period_ms", "dv_ticks",
    # cells whose middle ran its runtimes in process isolation (--isolation process); with
    # --worker-poll-us, the share of batches whose worker had gone to sleep
    "middle_workers", "worker_woke_share",
)
#: ``trial_min`` and ``trial_max``: the lowest and highest of the cell's per-trial values (the
#: spread a reader sets a difference against; ``pan_runtime.bench.noise``)
STATS = ("median", "p99", "mean", "min", "max", "trial_min", "trial_max")
FIELDS = ("experiment", "topology", "config", "runtime", "size", "metric", "stat", "value")
#: a row's fields a document may leave out (those of files from before they existed)
OPTIONAL_FIELDS = ("isolation",)
#: how the middle node ran the row's runtime (``--isolation``); a ``process`` row's runtime
#: name ends in ``/process`` (``options.cell_runtime``), so rows of both stay apart
ISOLATIONS = ("in_process", "process")
#: the Python distributions whose versions a run records
DISTRIBUTIONS = ("pan-runtime", "wasmtime", "ziglang", "pyelftools", "RestrictedPython", "JPype1", "pluggy", "cryptography", "matplotlib")


@dataclass
class Result:
    """One number of a run."""

    experiment: str
    topology: str
    config: str
    runtime: str
    size: int
    metric: str
    stat: str
    value: float
    isolation: str = "in_process"

    def __post_init__(self) -> None:
        if PROCESS_SUFFIX in self.runtime:  # "native/process", "jvm/process-nogc"
            self.isolation = "process"


def index(results: Iterable[Result] | Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str, int, str, str], float]:
    """Results keyed by (experiment, topology, config, runtime, size, metric, stat)."""
    out = {}
    for r in results:
        d = r if isinstance(r, dict) else r.__dict__
        out[(d["experiment"], d["topology"], d["config"], d["runtime"], d["size"], d["metric"], d["stat"])] = d["value"]
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank (no interpolation: a value that was measured)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Every stat of ``samples``: median, p99, mean, min, max."""
    if not samples:
        raise PanError("no samples to summarise")
    return {
        "median": statistics.median(samples),
        "p99": percentile(samples, 0.99),
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "max": max(samples),
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions(runtime_versions: dict[str, dict[str, str]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    if runtime_versions:
        out["runtimes"] = runtime_versions
    return out


def meta(options: dict[str, Any], *, runtime_versions: dict[str, dict[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
    """The ``meta`` object: machine, python, versions, date, options (and anything in ``extra``)."""
    try:
        load: list[float] | None = list(os.getloadavg())
    except OSError:
        load = None
    doc: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpus": _cpus(),
            "loadavg": load,
        },
        "python": sys.version.split()[0],
        "versions": _versions(runtime_versions),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options,
    }
    doc.update(extra)
    return doc


def document(meta_: dict[str, Any], results: Iterable[Result]) -> dict[str, Any]:
    return {"meta": meta_, "results": [asdict(r) for r in results]}


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    validate_document(doc)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    """Read and validate a bench JSON file; a ``PanError`` names what is wrong with it."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise PanError(f"{p}: no such file (write one with `pan bench --json {p}`)") from None
    except (OSError, ValueError) as exc:
        raise PanError(f"{p}: not a bench JSON file: {exc}") from None
    try:
        validate_document(doc)
    except PanError as exc:
        raise PanError(f"{p}: {exc}") from None
    return doc


#: JSON Schema (draft 2020-12) of the document; ``validate_document`` checks the same rules
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "pan bench results",
    "type": "object",
    "required": ["meta", "results"],
    "additionalProperties": False,
    "properties": {
        "meta": {
            "type": "object",
            "required": ["machine", "python", "versions", "date", "options"],
            "properties": {
                "machine": {"type": "object"},
                "python": {"type": "string"},
                "versions": {"type": "object"},
                "date": {"type": "string"},
                "options": {"type": "object"},
            },
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": list(FIELDS),
                "additionalProperties": False,
                "properties": {
                    "experiment": {"type": "string"},
                    "topology": {"type": "string"},
                    "config": {"type": "string"},
                    "runtime": {"type": "string"},
                    "size": {"type": "integer", "minimum": 1},
                    "metric": {"enum": list(METRICS)},
                    "stat": {"enum": list(STATS)},
                    "value": {"type": "number"},
                    "isolation": {"enum": list(ISOLATIONS)},
                },
            },
        },
    },
}


def validate_document(doc: Any) -> None:
    """Raise ``PanError`` naming the first place where ``doc`` departs from ``SCHEMA``."""
    if not isinstance(doc, dict) or set(doc) != {"meta", "results"}:
        raise PanError("a bench document is an object with exactly the keys 'meta' and 'results'")
    m = doc["meta"]
    if not isinstance(m, dict):
        raise PanError("'meta' must be an object")
    for key, kind in (("machine", dict), ("python", str), ("versions", dict), ("date", str), ("options", dict)):
        if not isinstance(m.get(key), kind):
            raise PanError(f"meta.{key} is missing or not a {kind.__name__}")
    rows = doc["results"]
    if not isinstance(rows, list):
        raise PanError("'results' must be a list")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not set(FIELDS) <= set(r) <= set(FIELDS) | set(OPTIONAL_FIELDS):
            raise PanError(f"results[{i}] must have the keys {', '.join(FIELDS)} (and may have {', '.join(OPTIONAL_FIELDS)})")
        if "isolation" in r and r["isolation"] not in ISOLATIONS:
            raise PanError(f"results[{i}].isolation {r['isolation']!r} is not one of {', '.join(ISOLATIONS)}")
        for key in ("experiment", "topology", "config", "runtime"):
            if not isinstance(r[key], str) or not r[key]:
                raise PanError(f"results[{i}].{key} must be a non-empty string")
        if not isinstance(r["size"], int) or isinstance(r["size"], bool) or r["size"] < 1:
            raise PanError(f"results[{i}].size must be a positive integer")
        if r["metric"] not in METRICS:
            raise PanError(f"results[{i}].metric {r['metric']!r} is not one of {', '.join(METRICS)}")
        if r["stat"] not in STATS:
            raise PanError(f"results[{i}].stat {r['stat']!r} is not one of {', '.join(STATS)}")
        v = r["value"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise PanError(f"results[{i}].value must be a finite number")
