"""Pins (``pan_runtime.node.pins``): code an application pinned is its own to uninstall, and
stops being pinned when the application goes."""

from __future__ import annotations

import pyfunc_runtime as pf
import pytest

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import OwnershipError
from pan_runtime.net.application import Application
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[pf])
pf.FUNCS["idle"] = lambda host, env: 0


def code(label: str) -> CodeObject:
    return pf.code("idle", label=label)


def test_only_the_pinning_application_uninstalls_pinned_code_and_its_pin_ends_with_it():
    lib = code("lib")
    with Node(1, plugins=PLUGINS) as n:
        owner, other = Application(n, "owner"), Application(n, "other")
        owner.install(lib, pin=True)
        with pytest.raises(OwnershipError, match="pinned by 1 other application"):
            n.uninstall(lib, by=other.link)
        assert lib.name in n.cache
        other.install(lib, pin=True)  # a second pin: now neither may uninstall it alone
        with pytest.raises(OwnershipError):
            n.uninstall(lib, by=owner.link)
        other.close()
        owner.close()
        entry = n.cache.peek(lib.name)
        assert entry is not None and not entry.pinned  # installed still, evictable again
        n.uninstall(lib, by=Application(n, "third").link)
        assert lib.name not in n.cache


def test_a_closed_applications_pins_make_room_for_others():
    a_code, b_code, c_code = code("a"), code("b"), code("c")
    with Node(1, plugins=PLUGINS, config=NodeConfig(cache_bytes=a_code.size * 2 + 10)) as n:
        hog = Application(n, "hog")
        hog.install(a_code, pin=True)
        hog.install(b_code, pin=True)
        with pytest.raises(Exception, match="does not fit"):
            Application(n, "late").install(c_code)
        hog.close()
        Application(n, "late").install(c_code)  # evicts one the hog no longer pins
        assert c_code.name in n.cache and n.cache.evictions == 1


def test_root_uninstalls_anothers_pinned_code_only_with_force_and_the_node_may_always():
    lib, mine = code("lib"), code("mine")
    with Node(1, plugins=PLUGINS) as n:
        n.install(mine, pin=True)  # pinned by the node itself (the embedding program)
        owner = n.attach("owner", uid=1000)
        user = n.attach("user", uid=1001)
        root = n.attach("root", uid=0)
        n.install(lib, pin=True, owner=owner)
        with pytest.raises(OwnershipError):
            n.uninstall(lib, by=user, force=True)
        with pytest.raises(OwnershipError, match="use force"):
            n.uninstall(lib, by=root)
        with pytest.raises(OwnershipError, match="pinned by the node"):
            n.uninstall(mine, by=owner)
        n.uninstall(lib, by=root, force=True)
        n.uninstall(mine)
        assert len(n.cache) == 0
