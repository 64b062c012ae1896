"""pan_runtime.lab.shapes: the generated shapes have the nodes and links their names promise."""

from __future__ import annotations

from collections import deque

import pytest

from pan_runtime.lab.shapes import SHAPES, expand


def connected(names: list[str], links: list[tuple[str, str]]) -> bool:
    nbs: dict[str, set[str]] = {n: set() for n in names}
    for a, b in links:
        nbs[a].add(b)
        nbs[b].add(a)
    seen, todo = {names[0]}, deque([names[0]])
    while todo:
        for nb in nbs[todo.popleft()] - seen:
            seen.add(nb)
            todo.append(nb)
    return seen == set(names)


@pytest.mark.parametrize(
    ("shape", "params", "nodes", "links"),
    [
        ("line", {"n": 5}, 5, 4),
        ("ring", {"n": 5}, 5, 5),
        ("star", {"n": 6}, 6, 5),
        ("tree", {"n": 32, "fanout": 2}, 32, 31),
        ("tree", {"n": 13, "fanout": 3}, 13, 12),
        ("grid", {"rows": 3, "cols": 4}, 12, 17),
        ("random", {"n": 10, "extra": 4, "seed": 7}, 10, 13),
    ],
)
def test_each_shape_has_its_nodes_and_links_and_is_connected(shape, params, nodes, links):
    names, pairs = expand(shape, "x", **params)
    assert len(names) == nodes and len(pairs) == links
    assert names[0] == "x1" and len(set(names)) == nodes
    assert len({frozenset(p) for p in pairs}) == links and all(a != b for a, b in pairs)
    assert connected(names, pairs)


def test_a_tree_is_breadth_first_with_fanout_children():
    _, pairs = expand("tree", n=7, fanout=2)
    assert pairs == [("n1", "n2"), ("n1", "n3"), ("n2", "n4"), ("n2", "n5"), ("n3", "n6"), ("n3", "n7")]


def test_random_is_the_same_for_a_seed_and_differs_between_seeds():
    a = expand("random", n=12, extra=5, seed=1)
    assert a == expand("random", n=12, extra=5, seed=1)
    assert a[1] != expand("random", n=12, extra=5, seed=2)[1]


@pytest.mark.parametrize(
    ("shape", "params", "message"),
    [
        ("ring", {"n": 2}, "n must be at least 3"),
        ("line", {}, "needs n"),
        ("grid", {"rows": 2}, "needs cols"),
        ("random", {"n": 3, "extra": 5}, "only 1 more links fit"),
        ("tree", {"n": 3, "fanout": 0}, "fanout must be at least 1"),
        ("blob", {"n": 3}, "unknown shape"),
    ],
)
def test_a_shape_without_what_it_needs_is_refused(shape, params, message):
    with pytest.raises(ValueError, match=message):
        expand(shape, **params)


def test_every_shape_is_tested():
    assert set(SHAPES) == {"line", "ring", "star", "tree", "grid", "random"}
