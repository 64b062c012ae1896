"""A node's tunables (``NodeConfig``): queue, batches, budgets, caches, pool, hop limit, runtimes,
load limits, and the shares and budgets of its neighbours.

``pan_runtime.net.config`` reads them from a configuration file; an embedding program makes
one directly. The bounds on what code objects hold (soft state, pool buffers; see
``pan_runtime.node.quota``) are checked here, since a node built with them out of order would
not keep its promises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT
from pan_runtime.errors import ConfigError
from pan_runtime.isolation.mechanism import Mechanism, env_default, parse_mechanisms
from pan_runtime.node.env import Budget
from pan_runtime.node.threadcpus import free_cpus
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = ["MAX_THREADS", "NodeConfig"]

#: the most fast-path threads a node runs (``limits.threads``)
MAX_THREADS = 64


class NodeConfig:
    """Tunables of a node; every field has a default that suits an embedded node."""

    def __init__(
        self,
        *,
        queue_limit: int = 4096,
        batch: int = 1,
        budget: Budget | None = None,
        cache_bytes: int = 256 << 20,
        cache_dir: str | None = None,
        state_entries: int = 4096,
        state_bytes: int = 4 << 20,
        state_ttl_ms: int = 60_000,
        state_total_bytes: int = 64 << 20,
        pool_buffers: int = 1024,
        pool_buffer_size: int = 9216,
        pool_reserve: int | None = None,
        code_buffers: int | None = None,
        hop_limit: int = DEFAULT_HOP_LIMIT,
        runtime_options: Mapping[str, Mapping[str, Any]] | None = None,
        runtimes: Sequence[str] | None = None,
        breaker_threshold: int = 5,
        copy_on_send: bool = False,
        fast_path: bool = True,
        app_ports: int = 256,
        load_limits: LoadLimits | None = None,
        fair_quantum_us: int = 100,
        neighbour_sockets: int = 256,
        neighbour_buffer: int = 1 << 20,
        neighbour_exhaustions: int = 5,
        neighbour_window_ms: int = 10_000,
        neighbour_backoff_ms: int = 1_000,
        neighbour_max_backoff_ms: int | None = None,
        isolation: Mapping[str, str] | None = None,
        workers: int = 16,
        worker_memory: int = 256 << 20,
        worker_grace_ms: int = 100,
        worker_start_ms: int = 30_000,
        worker_init_ms: int = 1_000,
        worker_backoff_ms: int = 10,
        worker_spares: int = 1,
        threads: int = 1,
        worker_standbys: int = 4,
        worker_inflight: int = 256,
        worker_queue: int = 4096,
        worker_nice: int = 0,
        worker_demote_ms: int = 2,
        worker_cpus: Sequence[int] = (),
        worker_poll_us: int = 0,
        thread_cpus: Sequence[int] = (),
    ):
        self.queue_limit = queue_limit
        self.batch = max(1, batch)
        self.budget = budget or Budget()
        self.cache_bytes = cache_bytes
        self.cache_dir = cache_dir
        self.state_entries = state_entries
        self.state_bytes = state_bytes
        self.state_ttl_ms = state_ttl_ms
        #: soft-state bytes of every code object together (``state_bytes`` is one code object's)
        self.state_total_bytes = state_total_bytes
        self.pool_buffers = pool_buffers
        self.pool_buffer_size = pool_buffer_size
        #: pool buffers code objects can never hold: the receive paths always find them
        self.pool_reserve = pool_buffers // 4 if pool_reserve is None else pool_reserve
        #: pool buffers one code object may hold past its calls (queued sends, kept segments)
        self.code_buffers = max(1, pool_buffers // 16) if code_buffers is None else code_buffers
        self.hop_limit = hop_limit
        self.runtime_options = {k: dict(v) for k, v in (runtime_options or {}).items()}
        self.runtimes = list(runtimes) if runtimes is not None else None
        self.breaker_threshold = breaker_threshold
        #: copy capsule data before sending (the bench's ``activecopy`` configuration)
        self.copy_on_send = copy_on_send
        #: let UDP netlinks finish common capsules in compiled code (pan_runtime.net.udp_fast)
        self.fast_path = fast_path
        #: ports one application link may hold bound at once
        self.app_ports = app_ports
        #: limits on code objects' size and shape and on compiling them (``LoadLimits``)
        self.load_limits = load_limits or LoadLimits()
        # fair share between neighbours (pan_runtime.net.fairshare, docs/network.md): how far a
        # backlogged neighbour's service may run ahead of the others' before they get a turn
        self.fair_quantum_us = _bounded("fair_quantum_us", fair_quantum_us, 1, 1_000_000)
        #: neighbours that get a receive socket (and so a receive buffer) of their own
        self.neighbour_sockets = _bounded("neighbour_sockets", neighbour_sockets, 0, 65_536)
        #: bytes of each neighbour's receive buffer (what it may queue at the node)
        self.neighbour_buffer = _bounded("neighbour_buffer", neighbour_buffer, 4096, 1 << 30)
        # the neighbour ledger (pan_runtime.node.ledger): this many budget exhaustions within
        # the window throttle a neighbour for the back-off, doubled on repeats up to the max
        self.neighbour_exhaustions = _bounded("neighbour_exhaustions", neighbour_exhaustions, 1, 1_000_000)
        self.neighbour_window_ms = _bounded("neighbour_window_ms", neighbour_window_ms, 1, 86_400_000)
        self.neighbour_backoff_ms = _bounded("neighbour_backoff_ms", neighbour_backoff_ms, 1, 86_400_000)
        #: (default: a minute, or the first back-off when that is longer)
        self.neighbour_max_backoff_ms = _bounded(
            "neighbour_max_backoff_ms",
            max(60_000, self.neighbour_backoff_ms) if neighbour_max_backoff_ms is None else neighbour_max_backoff_ms,
            self.neighbour_backoff_ms,
            86_400_000,
        )
        # process isolation (pan_runtime.isolation, docs/isolation.md): the mechanism of each
        # runtime named (the others: PAN_ISOLATION's default, else in_process)
        self.isolation: dict[str, Mechanism] = parse_mechanisms(isolation)
        #: worker processes one runtime may run (one per code object)
        self.workers = _bounded("workers", workers, 1, 4096)
        #: address space a worker may map beyond what its runtime holds when it starts
        self.worker_memory = _bounded("worker_memory", worker_memory, 16 << 20, 1 << 40)
        #: how long past a call's time budget the node waits before it kills the worker
        self.worker_grace_ms = _bounded("worker_grace_ms", worker_grace_ms, 1, 60_000)
        #: how long a worker has to start and load its code object (the node's own work)
        self.worker_start_ms = _bounded("worker_start_ms", worker_start_ms, 100, 600_000)
        #: how long a code object's init may run in its worker before the node kills the
        #: worker (killed_budget): init is the code's, so the node bounds it as it bounds a call
        self.worker_init_ms = _bounded("worker_init_ms", worker_init_ms, 1, 600_000)
        #: the first wait before a dead worker is started again (doubled on repeats, up to 5 s)
        self.worker_backoff_ms = _bounded("worker_backoff_ms", worker_backoff_ms, 0, 5_000)
        #: started workers each runtime in process isolation keeps waiting for a code object,
        #: so that a restart need not start an interpreter and a runtime (0: none)
        self.worker_spares = _bounded("worker_spares", worker_spares, 0, 16)
        #: threads the UDP fast path reads the node's sockets on (pan_runtime.net.lanes): the
        #: kernel spreads datagrams over their sockets; node work stays one at a time
        self.threads = _bounded("threads", threads, 1, MAX_THREADS)
        #: the CPU each fast-path thread runs on: thread I on ``thread_cpus[I % len]``, the
        #: event loop's thread being 0 (empty: where the kernel's scheduler puts them;
        #: pan_runtime.node.threadcpus)
        self.thread_cpus = tuple(_bounded("thread_cpus[]", c, 0, MAX_CPU) for c in thread_cpus)
        #: code objects per runtime in process isolation that keep a warm standby: a second
        #: worker with the code linked and confined, so a restart only runs ``init`` (0: none;
        #: one per code object at most, so never more than ``workers`` are used)
        self.worker_standbys = _bounded("worker_standbys", worker_standbys, 0, 4096)
        #: capsules handed to one worker whose verdicts have not come back; past it, a code
        #: object's capsules wait in the node (in order) for its worker to catch up
        self.worker_inflight = _bounded("worker_inflight", worker_inflight, 1, 1 << 16)
        #: capsules of one code object waiting in the node for its worker; past it they are
        #: dropped (``worker_busy``)
        self.worker_queue = _bounded("worker_queue", worker_queue, 0, 1 << 20)
        #: niceness of every worker (0 .. 19); 10 makes a runaway capsule yield the CPU to the
        #: node and to other code objects' workers (0 by default: budgets are wall time, and a
        #: nice worker on a machine busy with other work runs honest capsules past them)
        self.worker_nice = _bounded("worker_nice", worker_nice, 0, 19)
        #: a worker whose current batch has run this long (CPU time per capsule) is put at the
        #: lowest priority (``SCHED_IDLE``) until the batch ends, and so is a restarted worker
        #: whose ``init`` has, until it answers, so that a runaway yields the CPU to the node
        #: and to other code objects' workers; honest batches end well before (0: never)
        self.worker_demote_ms = _bounded("worker_demote_ms", worker_demote_ms, 0, 60_000)
        #: the CPUs every worker process runs on (empty: the node's own)
        self.worker_cpus = frozenset(_bounded("worker_cpus[]", c, 0, MAX_CPU) for c in worker_cpus)
        #: a worker on CPUs none of which the node may run on polls its ring this long after its
        #: last record before it sleeps, and the node spins up to ``POLL_SPIN_US`` of it for a
        #: batch's verdicts before it sleeps: a capsule then crosses to its worker and back
        #: without a wake-up, at the price of those CPUs (0: workers sleep at once)
        self.worker_poll_us = _bounded("worker_poll_us", worker_poll_us, 0, MAX_POLL_US)
        self._check_holding_bounds()

    def worker_poll_ns(self) -> int:
        """``worker_poll_us`` in ns where it applies: workers on CPUs none of which this process
        may run on, or its fast-path threads when ``thread_cpus`` places them (a worker polling
        on a CPU the node shares would take it from the node, and the node's spin from the
        worker); else 0."""
        node_cpus = set(self.thread_cpus) or os.sched_getaffinity(0)
        if not self.worker_poll_us or not self.worker_cpus or self.worker_cpus & node_cpus:
            return 0
        return self.worker_poll_us * 1000

    def worker_cpu_set(self) -> frozenset[int]:
        """The CPUs worker processes run on: ``worker_cpus``, else the process's own from before
        ``thread_cpus`` pinned a fast-path thread (a process inherits the CPUs of the thread that
        starts it; empty: nothing was pinned, it inherits them as they are)."""
        return self.worker_cpus or free_cpus() or frozenset()

    def mechanism(self, runtime: str) -> Mechanism:
        """How ``runtime`` runs its code on this node: configured, else ``PAN_ISOLATION``'s
        default, else ``in_process``."""
        if runtime in self.isolation:
            return self.isolation[runtime]
        every, per = env_default()
        return per.get(runtime) or every or Mechanism.IN_PROCESS

    def _check_holding_bounds(self) -> None:
        """``ConfigError`` unless the bounds on what code objects hold fit together."""
        if not 0 < self.state_bytes <= self.state_total_bytes:
            raise ConfigError(
                f"state_bytes ({self.state_bytes}) must be positive and at most state_total_bytes "
                f"({self.state_total_bytes}): one code object's soft state is part of the node's"
            )
        if not 0 <= self.pool_reserve < self.pool_buffers:
            raise ConfigError(f"pool_reserve ({self.pool_reserve}) must be 0..{self.pool_buffers - 1} (below pool_buffers)")
        if not 0 <= self.code_buffers <= self.pool_buffers - self.pool_reserve:
            raise ConfigError(
                f"code_buffers ({self.code_buffers}) must be 0..{self.pool_buffers - self.pool_reserve} "
                "(pool_buffers less pool_reserve)"
            )


#: the highest CPU number a worker may be given (``worker_cpus``)
MAX_CPU = 1023
#: the longest ``worker_poll_us`` (µs)
MAX_POLL_US = 100_000
#: the longest the node spins for a polling worker's verdicts (µs; ``worker_poll_us``)
POLL_SPIN_US = 50


def _bounded(name: str, value: int, lo: int, hi: int) -> int:
    """``value`` if it is an integer in lo..hi, else a ``ConfigError`` naming the limit."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"NodeConfig.{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"NodeConfig.{name} = {value} is outside {lo}..{hi}")
    return value
