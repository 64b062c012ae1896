"""Soft state (``pan_runtime.node.softstate``): bounded by entries and bytes, LRU, TTL, and
private to one code object."""

import random

import pyfunc_runtime as pf

from pan_runtime.data.segments import SegmentPool
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.net.network import ManualClock
from pan_runtime.node import pni
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.node.softstate import ENTRY_OVERHEAD, SoftState, SoftStateStore
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
    entry = 6 + ENTRY_OVERHEAD  # key, value and what the entry itself costs
    st = SoftState(max_bytes=entry + 4, default_ttl_ms=0)
    assert st.put(b"k1", b"abcd") and st.bytes_used == entry
    assert st.put(b"k2", b"efgh")  # two entries do not fit: k1 goes
    assert st.get(b"k1") is None and st.bytes_used == entry
    assert not st.fits(3, 20) and not st.put(b"big", b"x" * 20) and st.get(b"k2") == b"efgh"


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


def test_the_node_store_bounds_all_code_objects_and_the_largest_holder_gives_way():
    entry = 2 + 10 + ENTRY_OVERHEAD
    store = SoftStateStore(max_bytes=4 * entry)
    hoarder = SoftState(max_bytes=3 * entry, default_ttl_ms=0, store=store)
    other = SoftState(max_bytes=3 * entry, default_ttl_ms=0, store=store)
    for i in range(10):  # no more than its own bound, whatever it puts
        assert hoarder.put(b"h%d" % i, bytes(10))
    assert hoarder.bytes_used == 3 * entry and store.bytes_used == 3 * entry
    assert other.put(b"o0", bytes(10))  # fits beside it
    assert other.put(b"o1", bytes(10))  # the store is full: the hoarder, holding most, gives way
    assert hoarder.bytes_used == 2 * entry and other.bytes_used == 2 * entry and store.evictions == 1
    assert hoarder.get(b"h7") is None and hoarder.get(b"h9") is not None
    assert hoarder.put(b"hA", bytes(10))  # as large as the other: its own oldest goes
    assert store.bytes_used == 4 * entry and other.bytes_used == 2 * entry and hoarder.get(b"h8") is None
    other.clear()
    hoarder.clear()
    assert store.bytes_used == 0


def test_a_stored_segment_is_a_copy_holding_no_receive_buffer():
    got = []

    def keep(host, env):
        assert host.state_put_seg(b"body", env.BODY_HANDLE, 0) == pni.OK
        host.seg_write(env.BODY_HANDLE, 0, b"X")  # the capsule's own bytes change; the copy does not
        h = host.state_get_seg(b"body")
        got.append(host.current.segment(h).tobytes())
        return pni.VERDICT_DONE

    pf.FUNCS["keep"] = keep
    code = pf.code("keep")
    with Node(1, plugins=PLUGINS, config=NodeConfig(pool_buffers=16)) as n:
        entry = n.install(code)
        n.receive_buffers([memoryview(capsule_bytes(code, b"hello", n.address))], None)
        assert n.pool.available == 15
        n.process()
        assert got == [b"hello"] and n.pool.whole
        value = entry.state.get(b"body")
        assert value.tobytes() == b"hello" and value.pooled_buffers() == 0
        assert n.soft_state.bytes_used == entry.state.bytes_used == len(b"body") + 5 + ENTRY_OVERHEAD


def test_a_value_larger_than_the_bound_is_refused_and_counted():
    def big(host, env):
        return host.state_put(b"k", bytes(200), 0) or pni.VERDICT_DONE

    pf.FUNCS["big"] = big
    code = pf.code("big")
    with Node(1, plugins=PLUGINS, config=NodeConfig(state_bytes=128)) as n:
        entry = n.install(code)
        Application(n).send(code, b"")
        n.process()
        assert entry.stats.drops["status:NO_SPACE"] == 1
        assert n.stats.refused["state_bytes"] == 1 and entry.stats.refused["state_bytes"] == 1
        assert n.statistics()["refused"] == {"state_bytes": 1}


def test_the_store_always_evicts_from_a_largest_holder_among_many():
    rng = random.Random(7)
    picks: list[tuple[int, int]] = []  # (bytes the chosen holder holds, most any holder holds)

    class Watched(SoftStateStore):
        def _largest(self, putter):
            chosen = super()._largest(putter)
            picks.append((chosen.bytes_used, max(s.bytes_used for s in states)))
            return chosen

    store = Watched(max_bytes=20_000)
    states = [SoftState(max_bytes=5_000, default_ttl_ms=0, store=store) for _ in range(40)]
    for i in range(3000):
        st = rng.choice(states[: 5 + i // 100])  # more holders over time
        assert st.put(b"%d" % i, bytes(rng.randrange(1, 400)))
        assert store.bytes_used == sum(s.bytes_used for s in states) <= store.max_bytes
    assert len(picks) > 500 and all(held == most for held, most in picks)
    assert len(store._heap) <= 4 * len(store._holders) + 64


def test_peek_items_reads_without_touching_order_or_expiry():
    clock = ManualClock()
    st = SoftState(default_ttl_ms=0, clock=clock)
    st.put(b"a", b"1")
    st.put(b"b", b"22", ttl_ms=10)
    st.put(b"c", b"333")
    clock.advance(3_000_000)
    items, cut = st.peek_items(10, 1000)
    assert items == [(b"a", b"1", 0), (b"b", b"22", 7), (b"c", b"333", 0)] and not cut
    assert st.peek_items(2, 1000) == ([(b"a", b"1", 0), (b"b", b"22", 7)], True)
    assert st.peek_items(10, 5) == ([(b"a", b"1", 0), (b"b", b"22", 7)], True)  # key + value bytes
    clock.advance(10_000_000)
    assert [k for k, _, _ in st.peek_items(10, 1000)[0]] == [b"a", b"c"]
    assert len(st) == 3 and st.expirations == 0  # the expired entry is left to the owner's next use
    st.put(b"d", b"4")
    st.max_entries = 3
    assert st.put(b"e", b"5")  # least recently used first: peeking moved nothing
    assert st.get(b"a") is None and st.get(b"c") == b"333"
