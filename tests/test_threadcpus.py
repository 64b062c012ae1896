"""``pan_runtime.node.threadcpus``: fast-path threads on CPUs of their own (``limits.thread_cpus``).

Each test pins a thread of its own, never the test's, and makes ``threadcpus`` forget what it
saw afterwards.
"""

from __future__ import annotations

import os
import threading

import pytest

from pan_runtime.errors import ConfigError
from pan_runtime.node import threadcpus
from pan_runtime.node.config import NodeConfig


@pytest.fixture(autouse=True)
def _forget(monkeypatch):
    monkeypatch.setattr(threadcpus, "_before", None)


def _in_thread(fn):
    """``fn()``'s result (or exception) and the affinity of the thread that ran it."""
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as exc:  # handed to the test
            out["error"] = exc
        out["cpus"] = os.sched_getaffinity(threading.get_native_id())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out


def test_a_thread_goes_on_its_cpu_of_the_list_in_turn():
    mine = sorted(os.sched_getaffinity(0))
    cpus = [mine[-1], mine[0]]
    for index in range(4):
        out = _in_thread(lambda index=index: threadcpus.pin(index, cpus))
        assert out["result"] == cpus[index % 2] and out["cpus"] == {cpus[index % 2]}
    assert os.sched_getaffinity(0) == set(mine)  # the test's own thread stayed where it was


def test_no_list_leaves_the_thread_and_records_nothing():
    out = _in_thread(lambda: threadcpus.pin(0, []))
    assert out["result"] is None and out["cpus"] == os.sched_getaffinity(0)
    assert threadcpus.free_cpus() is None
    assert NodeConfig().worker_cpu_set() == frozenset()


def test_the_cpus_from_before_the_first_pin_are_what_workers_get():
    mine = os.sched_getaffinity(0)
    _in_thread(lambda: threadcpus.pin(0, [min(mine)]))
    assert threadcpus.free_cpus() == mine
    assert NodeConfig().worker_cpu_set() == mine  # a worker started by the pinned thread
    assert NodeConfig(worker_cpus=[max(mine)]).worker_cpu_set() == {max(mine)}  # worker_cpus still rule


def test_a_cpu_the_process_may_not_run_on_is_refused_by_check_and_by_the_kernel():
    outside = max(os.sched_getaffinity(0)) + 1
    threadcpus.check(sorted(os.sched_getaffinity(0)))
    with pytest.raises(ConfigError, match=f"names CPU {outside}, which this node may not run on"):
        threadcpus.check([outside])
    out = _in_thread(lambda: threadcpus.pin(0, [outside]))
    assert isinstance(out["error"], ConfigError) and f"on CPU {outside}" in str(out["error"])
    assert out["cpus"] == os.sched_getaffinity(0)
