"""A node's tunables (``NodeConfig``): queue, batches, budgets, caches, pool, hop limit, runtimes,
load limits.

``pan_runtime.net.config`` reads them from a configuration file; an embedding program makes
one directly. The bounds on what code objects hold (soft state, pool buffers; see
``pan_runtime.node.quota``) are checked here, since a node built with them out of order would
not keep its promises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT
from pan_runtime.errors import ConfigError
from pan_runtime.node.env import Budget
from pan_runtime.plugin.loadlimits import LoadLimits

__all__ = ["NodeConfig"]


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
        self._check_holding_bounds()

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
