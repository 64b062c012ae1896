"""The memory and time accounts of restricted_py calls (the C extension ``_account``).

One ``Account`` per loaded code object. The runtime calls ``enter()`` before and
``leave()`` after every call of the code (module body, ``accept``, ``init``, exports);
between the two, every block CPython's object and memory allocators hand out on that
thread is charged to the account, and its charge is returned when the block is freed,
whenever that is. ``leave()`` returns the call's flags: ``MEMORY`` (an allocation was
refused: the call would have held more than its per-call limit), ``TIME`` (it used up
its CPU time budget) and ``HELD`` (what the code object holds between calls is over
its limit).

This is the in-process line of defence: it bounds what restricted code can make CPython
allocate for it, it does not bound the process (a later isolation layer runs code in
processes with ``RLIMIT_AS``).
"""

from __future__ import annotations

import atexit
from typing import Any

from pan_restricted_py.meter import HELD, MEMORY, TIME, Late

__all__ = ["problem", "install", "new_account", "stats", "MEMORY", "TIME", "HELD", "OVERHEAD"]

try:
    from pan_restricted_py import _account as _c
except ImportError as exc:  # built without a C compiler
    _c = None
    _WHY = f"the memory accounting extension pan_restricted_py._account is not built ({exc})"
else:
    _WHY = ""

#: bytes charged per block on top of its size (the side table's entry)
OVERHEAD = 48 if _c is None else _c.OVERHEAD
_installed = False


def problem() -> str | None:
    """Why accounts cannot be had here, or None."""
    return _WHY or None


def install(tick_ms: float) -> None:
    """Wrap the allocators and start the ticker (once per process); set the ticker's period."""
    global _installed
    if _c is None:
        raise RuntimeError(_WHY)
    if not _installed:
        _c.install()
        _c.set_late(Late)
        atexit.register(_c.shutdown)
        _installed = True
    else:
        _c.ensure_ticker()  # after a fork the child has no ticker
    _c.set_tick(int(tick_ms * 1e6))


def new_account(call_limit: int, held_limit: int, time_ns: int) -> Any:
    """An account: a call may add ``call_limit`` bytes, the code may hold ``held_limit``."""
    assert _c is not None
    return _c.Account(call_limit, held_limit, time_ns)


def stats() -> dict[str, int]:
    """The side table's size, the calls on the stack, whether the ticker runs."""
    return dict(_c.stats()) if _c is not None else {}
