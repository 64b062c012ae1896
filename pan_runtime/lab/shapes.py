"""Shapes a topology file can ask for instead of listing links: line, ring, star, tree, grid
and random (connected, reproducible from a seed). Each gives node names and the pairs to link."""

from __future__ import annotations

import random

__all__ = ["SHAPES", "expand"]

SHAPES = ("line", "ring", "star", "tree", "grid", "random")


def _need(name: str, value: int | None, lo: int) -> int:
    if value is None:
        raise ValueError(f"this shape needs {name}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}")
    return value


def expand(
    shape: str,
    prefix: str = "n",
    *,
    n: int | None = None,
    fanout: int = 2,
    rows: int | None = None,
    cols: int | None = None,
    extra: int = 0,
    seed: int = 0,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Node names (``prefix`` + 1, 2, ...) and links of ``shape``; ValueError when its
    parameters do not make one. ``tree`` is complete in breadth-first order with ``fanout``
    children per node (node 1 the root); ``random`` is a random spanning tree plus ``extra``
    further links, the same for the same ``seed``."""
    if shape == "grid":
        r, c = _need("rows", rows, 1), _need("cols", cols, 1)
        count = r * c
    else:
        count = _need("n", n, 3 if shape == "ring" else 1)
    names = [f"{prefix}{i + 1}" for i in range(count)]
    idx: list[tuple[int, int]] = []
    if shape == "line":
        idx = [(i, i + 1) for i in range(count - 1)]
    elif shape == "ring":
        idx = [(i, (i + 1) % count) for i in range(count)]
    elif shape == "star":
        idx = [(0, i) for i in range(1, count)]
    elif shape == "tree":
        f = _need("fanout", fanout, 1)
        idx = [((i - 1) // f, i) for i in range(1, count)]
    elif shape == "grid":
        idx = [(y * c + x, y * c + x + 1) for y in range(r) for x in range(c - 1)]
        idx += [(y * c + x, (y + 1) * c + x) for y in range(r - 1) for x in range(c)]
    elif shape == "random":
        rng = random.Random(seed)
        order = list(range(count))
        rng.shuffle(order)
        idx = [(order[rng.randrange(i)], order[i]) for i in range(1, count)]
        have = {frozenset(p) for p in idx}
        room = count * (count - 1) // 2 - len(have)
        if extra > room:
            raise ValueError(f"extra = {extra}: only {room} more links fit {count} nodes")
        while extra:
            a, b = rng.sample(range(count), 2)
            if frozenset((a, b)) not in have:
                have.add(frozenset((a, b)))
                idx.append((a, b))
                extra -= 1
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return names, [(names[a], names[b]) for a, b in idx]
