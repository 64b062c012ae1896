"""Demotion of a worker whose batch runs long (``pan_runtime.isolation.priority``, driven by
the node's event loop: ``Offload.tick``).

For every runtime in process isolation, on an embedded node with its event loop: a capsule of a
code object that loops until its budget ends gets its worker demoted (every thread at
``SCHED_IDLE``) once it has used ``worker_demote_ms`` of CPU, while another code object's
worker and the node's own threads stay at the normal priority; once the looping batch has
ended (stopped by its runtime, or the worker killed and replaced), the code object's worker is
at the normal priority again. States and counts only; the budget is long and only a hang guard.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from embedded_node import embedded_node, forward_home, turn_until
from worker_procs import policies as _policies
from worker_procs import workers_of

from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import FaultReason
from pan_runtime.isolation import priority
from pan_runtime.isolation.mechanism import process_unavailable
from pan_runtime.net.application import Application
from pan_runtime.node.trust import CodeOrigin
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.plugin.plugins import default_plugins

SOURCES = Path(__file__).parent / "isolation_sources"
SPIN = {"native": "spin.c", "wasm": "spin.c", "restricted_py": "spin.py", "jvm": "Spin.java"}
PORT = 9
ENDED = (FaultReason.BUDGET.value, FaultReason.KILLED_BUDGET.value)

pytestmark = [
    pytest.mark.skipif(process_unavailable() is not None, reason=f"process isolation: {process_unavailable()}"),
    pytest.mark.skipif(priority.restorable(0) is not None, reason=f"demotion: {priority.restorable(0)}"),
]


def _spin(runtime: str) -> CodeObject:
    src = SOURCES / SPIN[runtime]
    return default_plugins().builders.find(runtime, src.suffix).build(BuildRequest([src], runtime, [], [], f"spin-{runtime}"))


@pytest.mark.parametrize("runtime", sorted(SPIN))
def test_a_runaway_worker_is_demoted_until_its_batch_ends(runtime: str):
    spin, fwd = _spin(runtime), reference_code(runtime, "forward")
    daemon = embedded_node(runtime, "worker_demote_ms = 2\nworker_standbys = 1\n", budget_ms=5000)
    try:
        node = daemon.node
        a = node.install(spin, origin=CodeOrigin.LOCAL)
        b = node.install(fwd, origin=CodeOrigin.LOCAL)
        stats = node.runtime(runtime).statistics
        app = Application(node)
        app.bind(PORT)
        app.send(spin, bytes(32))
        assert turn_until(daemon, lambda: stats()["worker_demotions"] >= 1), stats()
        a_pid = a.loaded.pid  # type: ignore[attr-defined]
        assert a_pid is not None and a.stats.done == 0 and sum(a.stats.drops.values()) == 0, a.stats.as_dict()
        assert _policies(a_pid) == {os.SCHED_IDLE}, runtime  # every thread, not only the main one
        # another code object's capsules go through its worker, which stays at the normal priority
        assert forward_home(daemon, app, fwd, PORT, 3) == 3, b.stats.as_dict()
        assert _policies(b.loaded.pid) == {os.SCHED_OTHER}  # type: ignore[attr-defined]
        assert _policies(os.getpid()) == {os.SCHED_OTHER}  # the node's own threads
        # the looping batch ends: its runtime stops it (wasm, jvm, restricted_py: the worker
        # stays, back at the normal priority), or the node kills the worker (native: its
        # replacement, started for the next capsule, starts at the normal priority)
        assert turn_until(daemon, lambda: sum(a.stats.drops.get(r, 0) for r in ENDED) == 1), a.stats.as_dict()
        if a.loaded.pid == a_pid:  # type: ignore[attr-defined]
            assert turn_until(daemon, lambda: _policies(a_pid) == {os.SCHED_OTHER}), stats()
        else:
            app.send(spin, bytes(32))
            guard = time.monotonic() + 120  # a hang guard
            while a.loaded.pid in (None, a_pid) and time.monotonic() < guard:  # type: ignore[attr-defined]
                daemon.run_once(0.002)
            # the turn that restarted it handed it the capsule: demotion takes a later look
            assert _policies(a.loaded.pid) == {os.SCHED_OTHER}  # type: ignore[attr-defined]
        live = node.runtime(runtime).live  # type: ignore[attr-defined] # native: the portmapper's too
        idle = {wc.standby.proc.proc.pid for wc in live if wc.standby is not None and wc.deaths}
        for pid in workers_of(os.getpid()):  # standbys after a death wait idle until used
            assert _policies(pid) == ({os.SCHED_IDLE} if pid in idle else {os.SCHED_OTHER}), pid
        assert stats()["worker_demotions"] == 1, stats()
    finally:
        daemon.close()


@pytest.mark.parametrize("runtime", sorted(SPIN))
def test_a_standby_made_after_a_death_starts_idle_and_serves_at_the_normal_priority(runtime: str):
    """The standby made after a code object's worker died makes its runtime at ``SCHED_IDLE``,
    so a code object that keeps killing its worker does not delay other code's capsules with
    interpreter or JVM starts; the restart that takes it raises every one of its threads before
    it serves. The first standby starts at the normal priority (ready for a first restart on a
    busy machine too)."""
    fwd = reference_code(runtime, "forward")
    daemon = embedded_node(runtime, "worker_standbys = 2\n")  # native: the portmapper has a worker too
    try:
        node = daemon.node
        entry = node.install(fwd, origin=CodeOrigin.LOCAL)
        wc = entry.loaded
        stats = node.runtime(runtime).statistics
        first = wc.standby.proc.proc.pid  # type: ignore[attr-defined]
        assert _policies(first) == {os.SCHED_OTHER}, runtime
        for deaths, standby in ((1, first), (2, None)):
            if standby is None:  # the standby made after the first death
                assert turn_until(daemon, lambda: wc.standby is not None), stats()  # type: ignore[attr-defined]
                standby = wc.standby.proc.proc.pid  # type: ignore[attr-defined]
                assert _policies(standby) == {os.SCHED_IDLE}, runtime
            os.kill(wc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            # restarted (after the back-off) from the standby, raised when the restart was due
            assert turn_until(daemon, lambda: wc.pid == standby and stats()["worker_warm_restarts"] == deaths), stats()  # type: ignore[attr-defined]  # noqa: B023
            assert _policies(standby) == {os.SCHED_OTHER}, runtime
        app = Application(node)
        app.bind(PORT)
        assert forward_home(daemon, app, fwd, PORT, 3) == 3, entry.stats.as_dict()
        assert stats()["worker_demotions"] == 0, stats()  # not a demotion: no batch ran long
    finally:
        daemon.close()


def test_restorable_names_what_is_missing():
    """Demotion needs the right to restore: CAP_SYS_NICE or RLIMIT_NICE (else it is off)."""
    assert priority.restorable(0) is None  # this process may (the module is skipped otherwise)
    assert priority.read_clock(-1) is None
