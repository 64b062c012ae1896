"""How a runtime runs its code: in the node's process, or in supervised worker processes.

``in_process`` (the default) links code into the node: fastest, and as safe as the runtime's
own containment (``Isolation``). ``process`` runs each code object in a worker process under
kernel limits (``pan_runtime.isolation.confine``), so a crash, an abort, a hang or a memory
bomb costs one capsule, never the node. A node picks it per runtime (``NodeConfig.isolation``,
``[runtimes.NAME] isolation`` in the node TOML); the trust policy can ask for it per origin and
isolation level (a rule ``process``). ``PAN_ISOLATION`` in the environment gives the default for
runtimes a configuration does not name (``process``, or ``native=process,jvm=process``): how
the conformance kit runs a whole suite contained.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping

from pan_runtime.errors import ConfigError

__all__ = ["ENV", "Mechanism", "parse_mechanisms", "process_unavailable", "env_default"]

#: the environment variable with the default mechanism of runtimes a configuration leaves out
ENV = "PAN_ISOLATION"


class Mechanism(enum.StrEnum):
    IN_PROCESS = "in_process"
    PROCESS = "process"


def _mechanism(runtime: str, value: object, where: str) -> Mechanism:
    try:
        return Mechanism(value)  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(
            f"{where}: isolation of runtime {runtime!r} must be one of "
            f"{', '.join(m.value for m in Mechanism)}, got {value!r}"
        ) from None


def parse_mechanisms(values: Mapping[str, object] | None, where: str = "NodeConfig.isolation") -> dict[str, Mechanism]:
    """``{runtime: Mechanism}`` from names, or a ``ConfigError`` naming the bad entry."""
    out: dict[str, Mechanism] = {}
    for runtime, value in (values or {}).items():
        if not isinstance(runtime, str) or not runtime:
            raise ConfigError(f"{where}: runtime names are non-empty strings, got {runtime!r}")
        out[runtime] = _mechanism(runtime, value, where)
    return out


def env_default(environ: Mapping[str, str] | None = None) -> tuple[Mechanism | None, dict[str, Mechanism]]:
    """``PAN_ISOLATION``: a mechanism for every runtime (``process``), and/or per runtime
    (``native=process,jvm=in_process``); ``ConfigError`` when it is malformed."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    every: Mechanism | None = None
    per: dict[str, Mechanism] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if sep:
            per[name.strip()] = _mechanism(name.strip(), value.strip(), ENV)
        else:
            every = _mechanism("*", name, ENV)
    return every, per


def process_unavailable() -> str | None:
    """``None`` when this machine can run workers (Linux, memfd, eventfd, libseccomp through
    pyseccomp), else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"process isolation needs Linux, this is {sys.platform}"
    if not hasattr(os, "memfd_create") or not hasattr(os, "eventfd") or not hasattr(os, "pidfd_open"):
        return "this Python has no os.memfd_create/os.eventfd/os.pidfd_open (Python 3.10+ on Linux 5.3+)"
    try:
        import pyseccomp  # noqa: F401
    except ImportError:
        return "pyseccomp is not installed (pip install 'pan-runtime[isolation]')"
    except OSError as exc:  # pyseccomp loads libseccomp.so.2 on import
        return f"libseccomp is missing: {exc}"
    return None
