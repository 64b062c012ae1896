"""Application ports: which application link each port belongs to, and who may change that.

Applications bind ports through the node's portmapper, a code object (``docs/protocols.md``:
a ``portmap_req`` capsule, ``lookup`` export). The node keeps who owns each port: the link that
bound it, until that link unbinds it or closes. Another link can neither rebind nor unbind it;
a link whose peer is root may, when it asks to (``force``). A link holds at most
``NodeConfig.app_ports`` ports.

A binding request runs the portmapper at once (not through the queue), so the asker learns the
outcome. The portmapper keeps its record in soft state, which expires and is evicted; the node
does not let that end a binding: when a delivery finds the record lost or pointing elsewhere,
the node binds the port for its owner again and looks once more. A binding therefore lasts as
long as its connection, and capsules reach only the port's owner, whatever the portmapper says.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from pan_runtime.data.capsule import Capsule, encode_header
from pan_runtime.errors import (
    CapsuleError,
    CodeObjectError,
    LimitError,
    OwnershipError,
    PanError,
    RuntimeFault,
)
from pan_runtime.node import pni
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.links import AppLink
from pan_runtime.plugin.runtime import as_fault

if TYPE_CHECKING:
    from pan_runtime.node.cache import CacheEntry
    from pan_runtime.node.node import Node

__all__ = ["Ports", "PORTMAP_BIND", "PORTMAP_UNBIND", "PORTMAP_FORCE", "PORTMAP_REQ", "may_force"]

log = logging.getLogger("pan.node")

#: ``portmap_req`` (protocols/headers.toml): port u16, op u8, flags u8
PORTMAP_REQ = struct.Struct(">HBB")
PORTMAP_BIND = 0
PORTMAP_UNBIND = 1
#: flags bit: take the port even from another link (honoured only for a root peer)
PORTMAP_FORCE = 1
_COUNTERS = ("binds", "unbinds", "rebound", "rebind_failed", "taken", "refused_owner", "refused_limit", "refused_portmapper")


def may_force(link: AppLink, force: bool) -> bool:
    """Whether ``link`` may override another link's ownership: it asked, and its peer is root."""
    return force and link.uid == 0


class Ports:
    """The node's port table: port -> owning application link, per-link sets, counters."""

    def __init__(self, node: Node, per_link: int):
        self._node = node
        self.per_link = per_link
        self._owners: dict[int, AppLink] = {}
        self._held: dict[AppLink, set[int]] = {}
        #: binds, unbinds, rebound (a lost portmapper record restored), rebind_failed, taken
        #: (forced), refused_owner, refused_limit, refused_portmapper
        self.counters: Counter[str] = Counter()
        self._rebinding = False

    # ------------------------------------------------------------------ reading
    def owner(self, port: int) -> AppLink | None:
        return self._owners.get(port)

    def held(self, link: AppLink) -> frozenset[int]:
        return frozenset(self._held.get(link, ()))

    def holders(self) -> set[AppLink]:
        """The links that hold at least one port."""
        return set(self._held)

    def __len__(self) -> int:
        return len(self._owners)

    def info(self) -> dict[str, Any]:
        counts = {k: self.counters[k] for k in _COUNTERS}
        return {"bound": len(self._owners), "links": len(self._held), **counts}

    # ------------------------------------------------------------------ requests
    def bind(self, link: AppLink, port: int, force: bool = False) -> None:
        """Bind ``port`` to ``link`` through the portmapper; ``OwnershipError`` if another link
        holds it, ``LimitError`` past the per-link limit, ``CodeObjectError`` if the portmapper
        is missing or refuses."""
        self._check_port(port)
        self._request(link, self._capsule(port, PORTMAP_BIND, PORTMAP_FORCE if force else 0), port, PORTMAP_BIND, force)

    def unbind(self, link: AppLink, port: int, force: bool = False) -> None:
        """Unbind ``port``; ``OwnershipError`` if another link holds it (a free port: nothing to do)."""
        self._check_port(port)
        self._request(link, self._capsule(port, PORTMAP_UNBIND, PORTMAP_FORCE if force else 0), port, PORTMAP_UNBIND, force)

    def request(self, link: AppLink, data: bytes | bytearray | memoryview) -> None:
        """A capsule ``link`` injected that names the portmapper, run now: a bind or unbind is
        checked like ``bind``/``unbind`` (and raises like them); anything else (a short body,
        another op) changes no ownership and is the portmapper's to refuse."""
        data = bytes(data)
        cap = Capsule.parse_bytes(data)  # CapsuleError: not a capsule
        try:
            head = cap.body.tobytes()[: PORTMAP_REQ.size]
        finally:
            cap.release()
        if len(head) == PORTMAP_REQ.size:
            port, op, flags = PORTMAP_REQ.unpack(head)
            if op in (PORTMAP_BIND, PORTMAP_UNBIND):
                self._request(link, data, port, op, bool(flags & PORTMAP_FORCE))
                return
        link.check_open()
        self._run(link, data)

    def _request(self, link: AppLink, capsule: bytes, port: int, op: int, force: bool) -> None:
        link.check_open()
        holder = self._owners.get(port)
        if holder is not None and holder is not link:
            if not may_force(link, force):
                self.counters["refused_owner"] += 1
                what = "bound" if op == PORTMAP_BIND else "unbound"
                raise OwnershipError(
                    f"port {port} belongs to another application ({holder.name}); it cannot be {what} by "
                    f"{link.name}" + (" without force" if link.uid == 0 else "")
                )
            self.counters["taken"] += 1
            log.warning("port %d taken from %s by root link %s (force)", port, holder.name, link.name)
        if op == PORTMAP_UNBIND:
            if holder is not None:
                self._forget(holder, port)
            self.counters["unbinds"] += 1
            self._run(link, capsule)  # the portmapper's record goes too; its refusal changes nothing
            return
        if holder is not link and len(self._held.get(link, ())) >= self.per_link:
            self.counters["refused_limit"] += 1
            raise LimitError(f"application link {link.name} holds {self.per_link} ports, the most limits.app_ports allows")
        self._run(link, capsule, check=True)
        if holder is not None and holder is not link:
            self._forget(holder, port)
        self._owners[port] = link
        self._held.setdefault(link, set()).add(port)
        self.counters["binds"] += 1

    def release(self, link: AppLink) -> None:
        """Forget every port of ``link`` (it closed); their portmapper records die with its tokens."""
        for port in self._held.pop(link, ()):
            if self._owners.get(port) is link:
                del self._owners[port]

    def _forget(self, link: AppLink, port: int) -> None:
        self._owners.pop(port, None)
        held = self._held.get(link)
        if held is not None:
            held.discard(port)
            if not held:
                del self._held[link]

    # ------------------------------------------------------------------ deliveries
    def resolve(self, port: int) -> tuple[AppLink | None, str]:
        """The open link that owns ``port``, checked against the portmapper's ``lookup`` (and
        bound again for its owner if the portmapper lost or moved it); else None and the drop
        reason: ``no_port`` (nobody owns it), ``portmap_lost`` (the portmapper will not map it)."""
        owner = self._owners.get(port)
        if owner is None or owner.closed:
            return None, "no_port"
        if self._maps(port, owner):
            return owner, ""
        if self._rebinding:
            return None, "portmap_lost"
        self._rebinding = True
        try:
            self._run(owner, self._capsule(port, PORTMAP_BIND, 0), check=True)
        except PanError as exc:  # counted per capsule by the caller's drop; not logged per capsule
            self.counters["rebind_failed"] += 1
            log.debug("port %d: the portmapper would not bind it again for %s: %s", port, owner.name, exc)
            return None, "portmap_lost"
        finally:
            self._rebinding = False
        self.counters["rebound"] += 1
        if self._maps(port, owner):
            return owner, ""
        return None, "portmap_lost"

    def _maps(self, port: int, owner: AppLink) -> bool:
        node = self._node
        codes = node.codes
        token = codes.portmap(port)
        if token is None or token < 0 or codes.portmapper is None:
            return False
        return node.services.resolve_token(codes.portmapper, token) is owner

    # ------------------------------------------------------------------ running the portmapper
    @staticmethod
    def _check_port(port: int) -> None:
        if not 0 <= port <= 0xFFFF:
            raise CapsuleError(f"port {port} is outside 0..65535", "portmap_req")

    def _portmapper(self) -> CacheEntry:
        codes = self._node.codes
        pm = codes.portmapper
        entry = codes.cache.peek(pm) if pm is not None else None
        if entry is None:
            raise CodeObjectError("this node has no portmapper; install one and call use_portmapper()")
        return entry

    def _capsule(self, port: int, op: int, flags: int) -> bytes:
        node = self._node
        return encode_header(self._portmapper().code.name, node.address) + PORTMAP_REQ.pack(port, op, flags)

    def _run(self, link: AppLink, capsule: bytes, check: bool = False) -> None:
        """Run the portmapper's ``accept`` on ``capsule`` from ``link`` now, in an environment of
        its own (the one of a capsule being finished is put back after); with ``check``, anything
        but ``DONE`` is a ``CodeObjectError``."""
        node = self._node
        entry = self._portmapper()
        cap = Capsule.parse_bytes(capsule)
        env = Environment()
        env.setup(entry.code, cap, Origin.APPLICATION, link, None, node.config.budget)
        host = node.host
        saved = host.current
        host.current = env
        stats = entry.stats
        stats.capsules_in += 1
        t0 = time.perf_counter_ns()
        try:
            verdict: int | RuntimeFault = entry.loaded.accept(env)
        except Exception as exc:
            verdict = as_fault(exc, entry.runtime, entry.code.short_name)
        finally:
            stats.add_time(time.perf_counter_ns() - t0)
            host.current = saved
            env.clear()
            cap.release()
        if isinstance(verdict, RuntimeFault):
            node.count_fault(entry, verdict)
            why = f"faulted: {verdict}"
        elif verdict >= 0 and verdict & 0xFF == pni.VERDICT_DONE:
            stats.done += 1
            return
        else:
            why = f"answered {pni.status_name(verdict) if verdict < 0 else f'verdict {verdict:#x}'}"
            node._drop(entry, "portmap_refused", why)  # counted and reported like any drop
        if check:
            self.counters["refused_portmapper"] += 1
            raise CodeObjectError(f"the portmapper {entry.code.short_name} refused the request: it {why}")
