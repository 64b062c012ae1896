"""Size, depth, memory and time limits that keep restricted code bounded; the runtime's options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pan_runtime.errors import ConfigError

__all__ = ["Limits", "DEFAULT_LIMITS", "limits_from_options"]


@dataclass(frozen=True)
class Limits:
    """Bounds checked by the guards, the meter and the memory accounts.

    ``max_items`` bounds the length of any string, bytes or sequence made in one operation
    (``*``, ``+``, ``%``, ``join``, ``bytes(n)``, ``range(n)``, ...) and of any sequence
    sorted, and the items compared when sorting or taking ``min``/``max`` of containers;
    ``max_int_bits`` the size of an integer made by ``*``, ``**`` or ``<<``; ``chunk`` how
    many steps run between two checks of the account (time used up, refused allocations) and
    the call depth; ``max_depth`` the nesting of calls between functions of one code
    object, checked once per chunk, so code never nests deeper than ``max_depth + chunk``
    frames (well inside CPython's recursion limit).

    A call may allocate the budget's ``memory_bytes`` (``env.Budget``, 16 MiB by default) on
    top of what the code object already holds, never more than ``max_call_memory_bytes``;
    ``held_memory_bytes`` is what a code object may hold between calls (module globals, and the soft state its calls
    stored as Python objects). Bytes are those of every block CPython allocates for the
    code, plus 32 bytes of bookkeeping per block. ``tick_ms`` is how often the account's
    ticker samples a running call's CPU time (one ticker per process).
    """

    max_items: int = 1 << 18
    max_int_bits: int = 1 << 16
    max_depth: int = 64
    max_args: int = 256
    max_width: int = 4096
    chunk: int = 128
    max_call_memory_bytes: int = 64 << 20
    held_memory_bytes: int = 16 << 20
    tick_ms: float = 2.0


DEFAULT_LIMITS = Limits()

_POSITIVE_INTS = {f.name for f in dataclasses.fields(Limits) if f.type in ("int", int)}


def limits_from_options(options: Mapping[str, Any]) -> Limits:
    """The runtime's limits from its options (``[runtimes.options.restricted_py]`` in the
    node TOML): each field of ``Limits`` by name, or ``limits``, a whole ``Limits``."""
    opts = dict(options)
    opts.pop("cache_dir", None)  # the node offers every runtime its cache; compiled Python stays in memory
    whole = opts.pop("limits", None)
    if whole is not None and not isinstance(whole, Limits):
        raise ConfigError(f"restricted_py option 'limits' must be a Limits, not {type(whole).__name__}")
    base = whole or DEFAULT_LIMITS
    known = {f.name for f in dataclasses.fields(Limits)}
    unknown = set(opts) - known
    if unknown:
        raise ConfigError(f"restricted_py runtime: unknown options {sorted(unknown)}; known: {sorted(known | {'limits'})}")
    for key, value in opts.items():
        if key in _POSITIVE_INTS:
            if type(value) is not int or value <= 0:
                raise ConfigError(f"restricted_py runtime: {key} must be a positive integer, got {value!r}")
        elif type(value) not in (int, float) or not 0.1 <= value <= 1000:
            raise ConfigError(f"restricted_py runtime: {key} must be a number of ms in [0.1, 1000], got {value!r}")
        else:
            opts[key] = float(value)
    return dataclasses.replace(base, **opts)
