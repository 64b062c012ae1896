"""Size and depth limits that keep one step of restricted code bounded in time and memory."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits:
    """Bounds checked by the guards; one guarded operation never exceeds them.

    ``max_items`` bounds the length of any string, bytes or sequence made in one operation
    (``*``, ``+``, ``%``, ``join``, ``bytes(n)``, ``range(n)``, ...); ``max_int_bits`` the
    size of an integer made by ``*``, ``**`` or ``<<``; ``chunk`` how many steps run between
    two checks of the wall-clock budget and the call depth; ``max_depth`` the nesting of
    calls between functions of one code object, checked once per chunk, so code never nests
    deeper than ``max_depth + chunk`` frames (well inside CPython's recursion limit).
    """

    max_items: int = 1 << 18
    max_int_bits: int = 1 << 16
    max_depth: int = 64
    max_args: int = 256
    max_width: int = 4096
    chunk: int = 128


DEFAULT_LIMITS = Limits()
