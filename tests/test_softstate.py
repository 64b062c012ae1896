"""Soft state (``pan_runtime.node.softstate``): bounded by entries and bytes, LRU, TTL, and
private to one code object."""

import pyfunc_runtime as pf

from pan_runtime.data.segments import SegmentPool
from pan_runtime.net.application import Application
from pan_runtime.net.network import ManualClock
from pan_runtime.node import pni
from pan_runtime.node.node import Node
from pan_runtime.node.softstate import SoftState
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt, pf])


def test_least_recently_used_entries_go_first_when_full():
    st = SoftState(max_entries=2, default_ttl_ms=0)
    st.put(b"a", b"1")
    st.put(b"b", b"2")
    assert st.get(b"a") == b"1"  # b is now the oldest
    assert st.put(b"c", b"3")
    assert st.get(b"b") is None and st.get(b"a") == b"1" and st.get(b"c") == b"3"
    assert st.evictions == 1


def test_bytes_bound_evicts_and_refuses_what_can_never_fit():
    st = SoftState(max_bytes=10, default_ttl_ms=0)
    assert st.put(b"k1", b"abcd") and st.bytes_used == 6
    assert st.put(b"k2", b"efgh")  # 12 > 10: k1 goes
    assert st.get(b"k1") is None and st.bytes_used == 6
    assert not st.put(b"big", b"x" * 20) and st.get(b"k2") == b"efgh"


def test_entries_expire_after_their_ttl():
    clock = ManualClock()
    st = SoftState(default_ttl_ms=5, clock=clock)
    st.put(b"short", b"1")
    st.put(b"long", b"2", ttl_ms=50)
    clock.advance(5_000_000)
    assert st.get(b"short") is None and st.get(b"long") == b"2" and st.expirations == 1
    clock.advance(50_000_000)
    assert st.expire() == 1 and len(st) == 0


def test_segments_are_kept_without_copy_and_released_on_clear():
    with SegmentPool(64, 4) as pool:
        seg = pool.allocate(8)
        st = SoftState()
        assert st.put(b"seg", seg)
        assert st.get(b"seg") is seg and pool.available == 3
        assert st.delete(b"seg") and not st.delete(b"seg")
        assert pool.available == 4


def test_soft_state_is_private_and_dies_with_its_code_object():
    def put(host, env):
        return host.state_put(b"k", b"secret", 0) or pni.VERDICT_DONE

    def get(host, env):
        return pni.VERDICT_DONE if host.state_get(b"k", memoryview(bytearray(8))) == pni.NOT_FOUND else pni.VERDICT_DROP

    pf.FUNCS.update({"put": put, "get": get})
    PUT, GET = pf.code("put"), pf.code("get")
    with Node(1, plugins=PLUGINS) as n:
        n.install(PUT)
        n.install(GET)
        app = Application(n)
        app.send(PUT, b"")
        app.send(GET, b"")
        n.process()
        assert n.cache.peek(GET.name).stats.done == 1
        assert len(n.cache.peek(PUT.name).state) == 1
        entry = n.cache.peek(PUT.name)
        n.uninstall(PUT)
        assert len(entry.state) == 0
        assert "put" in pf.FINALIZED
