"""Pins: who keeps a code object installed, and so who may uninstall it.

A pin is held by the application link that asked for it (``install(pin=True)``) until that link
closes, or by the node itself (``None``: the embedding program's own ``Node.install``). While
anyone holds a pin the code is never evicted (``CacheEntry.pinned``; the node's portmapper is
pinned too, for as long as it is the portmapper). A link may uninstall code only if no one else
pins it; a link whose peer is root may, when it asks to (``force``). A closed link's pins go,
and code no one else pins becomes evictable again (it stays installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pan_runtime.errors import OwnershipError
from pan_runtime.node.links import AppLink
from pan_runtime.node.ports import may_force

if TYPE_CHECKING:
    from pan_runtime.node.node import Node

__all__ = ["Pins"]


class Pins:
    """Code object name -> the holders of its pins (links, or ``None`` for the node)."""

    def __init__(self, node: Node):
        self._node = node
        self._holders: dict[bytes, set[AppLink | None]] = {}
        self._by_link: dict[AppLink, set[bytes]] = {}

    def pin(self, name: bytes, holder: AppLink | None) -> None:
        self._holders.setdefault(name, set()).add(holder)
        if holder is not None:
            self._by_link.setdefault(holder, set()).add(name)
        self.refresh(name)

    def holders(self, name: bytes) -> set[AppLink | None]:
        return set(self._holders.get(name, ()))

    def check_uninstall(self, name: bytes, by: AppLink | None, force: bool = False) -> None:
        """``OwnershipError`` unless ``by`` (None: the node itself) may uninstall ``name``."""
        if by is None:
            return
        others = self._holders.get(name, set()) - {by}
        if others and not may_force(by, force):
            who = "the node" if None in others else f"{len(others)} other application(s)"
            raise OwnershipError(
                f"code object {name.hex()[:12]} is pinned by {who}; only they can uninstall it"
                + (" (root: use force)" if by.uid == 0 else "")
            )

    def forget(self, name: bytes) -> None:
        """``name`` was unloaded: its pins go with it."""
        for holder in self._holders.pop(name, ()):
            if holder is not None:
                names = self._by_link.get(holder)
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._by_link[holder]

    def release(self, link: AppLink) -> None:
        """``link`` closed: drop its pins; code no one else pins becomes evictable."""
        for name in self._by_link.pop(link, ()):
            holders = self._holders.get(name)
            if holders is not None:
                holders.discard(link)
                if not holders:
                    del self._holders[name]
            self.refresh(name)

    def refresh(self, name: bytes) -> None:
        """Set ``CacheEntry.pinned`` from the holders (and whether it is the portmapper)."""
        codes = self._node.codes
        entry = codes.cache.peek(name)
        if entry is not None:
            entry.pinned = bool(self._holders.get(name)) or name == codes.portmapper
