"""Spreading neighbours' sockets over fast-path threads by their traffic (``pan_runtime.net.balance``).

The moves a look makes from the datagrams each socket brought; the transport applying them
on a real node is tested with the threads themselves (``test_lanes.py``).
"""

from __future__ import annotations

import pytest

from pan_runtime.net.balance import MIN_DATAGRAMS, MOVES, SLACK, moves


def _per_thread(loads, threads, done, count):
    place = dict(threads)
    place.update(dict(done))
    per = [0] * count
    for k, v in loads.items():
        per[place[k]] += v
    return per


def test_one_flow_more_on_one_thread_moves_one_socket():
    # 32 equal flows taken in turn with one idle neighbour first: 16 on thread 1, 16 + the idle one on 0... and
    # one flow more: 17 against 15
    loads = {f"f{i}": 100 for i in range(32)}
    threads = {f"f{i}": 0 if i < 17 else 1 for i in range(32)}
    done = moves(loads, threads, 2)
    assert len(done) == 1 and done[0][1] == 1 and threads[done[0][0]] == 0
    assert _per_thread(loads, threads, done, 2) == [1600, 1600]


def test_two_heavy_neighbours_on_one_thread_are_split_and_the_light_ones_stay():
    loads = {"heavy1": 5000, "heavy2": 5000, "light1": 10, "light2": 10}
    threads = {"heavy1": 0, "heavy2": 0, "light1": 1, "light2": 1}
    done = moves(loads, threads, 2)
    assert len(done) == 1 and done[0][0] in ("heavy1", "heavy2") and done[0][1] == 1


def test_an_even_load_a_quiet_node_and_one_thread_move_nothing():
    loads = {"a": 1000, "b": 1000 + int(SLACK * 1000) - 1}
    assert moves(loads, {"a": 0, "b": 1}, 2) == []
    assert moves({"a": MIN_DATAGRAMS - 1}, {"a": 0, "b": 0} | {}, 2) == []
    assert moves({"a": 5000, "b": 5000}, {"a": 0, "b": 0}, 1) == []


def test_a_single_socket_that_is_the_whole_gap_stays():
    # moving it would only make the other thread the busy one
    assert moves({"a": 5000, "idle": 0}, {"a": 0, "idle": 1}, 2) == []


@pytest.mark.parametrize("count", [2, 3, 4])
def test_moves_never_raise_the_busiest_thread_and_stop_at_the_limit(count):
    loads = {f"s{i}": (i * 37) % 500 + 1 for i in range(40)}
    threads = dict.fromkeys(loads, 0)  # all on the first thread
    done = moves(loads, threads, count)
    assert 1 <= len(done) <= MOVES
    assert max(_per_thread(loads, threads, done, count)) < sum(loads.values())
    assert all(0 <= to < count for _, to in done)
