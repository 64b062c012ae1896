"""The code cache (``pan_runtime.node.cache``): LRU by bytes, pins, dependants, the circuit
breaker and the on-disk store."""

import pyfunc_runtime as pf

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.node.cache import Breaker, CacheEntry, CodeCache, DiskStore
from pan_runtime.node.config import NodeConfig
from pan_runtime.node.node import Node
from pan_runtime.node.softstate import SoftState
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt, pf])


def entry(label: str, size: int = 100, **kw) -> CacheEntry:
    code = CodeObject.create("null", label.encode().ljust(size, b"."))
    return CacheEntry(code=code, runtime="null", loaded=None, state=SoftState(), origin="local", **kw)


def test_victims_are_least_recently_used_first_and_skip_pinned_and_depended_on():
    a, b, c, d = entry("a"), entry("b", pinned=True), entry("c", dependants={b"x"}), entry("d")
    cache = CodeCache(max_bytes=a.code.size * 4)
    for e in (a, b, c, d):
        cache.add(e)
    assert cache.victims(0) == []
    cache.get(a.code.name)  # a is now the most recently used
    assert cache.victims(a.code.size) == [d.code.name]
    assert cache.victims(2 * a.code.size) == [d.code.name, a.code.name]
    assert cache.victims(3 * a.code.size) is None  # only pinned and depended-on ones left


def test_peek_does_not_refresh_and_add_remove_track_bytes_and_generation():
    a, b = entry("a"), entry("b")
    cache = CodeCache(max_bytes=a.code.size * 2)
    cache.add(a)
    cache.add(b)
    generation = cache.generation
    cache.peek(a.code.name)
    assert cache.victims(1) == [a.code.name]
    assert cache.remove(a.code.name) is a and cache.remove(a.code.name) is None
    assert cache.bytes_used == b.code.size and cache.generation == generation + 1
    assert len(cache) == 1 and b.code.name in cache and a.code.name not in cache


def test_breaker_trips_at_the_threshold_within_its_window_and_backs_off_doubling():
    br = Breaker(threshold=3, window_ns=100, backoff_ns=10, max_backoff_ns=25)
    assert not br.record_fault(0) and not br.record_fault(50)
    assert not br.record_fault(200)  # the first two left the window
    assert not br.record_fault(210)
    assert br.record_fault(220) and br.open_until == 230 and not br.allows(229) and br.allows(230)
    assert br.record_fault(231) and br.current_backoff == 20  # half-open fault: back off doubled
    assert br.record_fault(252) and br.current_backoff == 25  # capped
    br.record_success()
    assert br.open_until == 0 and br.allows(0)


def test_disk_store_keeps_code_by_name_and_rejects_a_corrupt_file(tmp_path):
    store = DiskStore(tmp_path / "codes")
    a, b = CodeObject.create("null", b"forward"), CodeObject.create("null", b"other")
    store.put(a)
    store.put(b)
    assert sorted(store.names()) == sorted([a.name, b.name])
    assert store.get(a.name) == a
    (tmp_path / "codes" / f"{b.name.hex()}.pco").write_bytes(b"not a code object")
    assert store.get(b.name) is None and store.rejected == 1
    store.remove(a.name)
    assert store.get(a.name) is None


def test_a_disk_store_that_cannot_write_counts_it_and_lets_the_install_go_on(tmp_path):
    pf.FUNCS["kept"] = lambda host, env: 0
    code = pf.code("kept")
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / f"{code.name.hex()}.tmp").mkdir()  # the file the copy is written to first
    with Node(1, plugins=PLUGINS, config=NodeConfig(cache_dir=str(tmp_path / "codes"))) as n:
        n.install(code)
        assert code.name in n.cache
        assert n.disk.write_errors == 1 and n.disk.names() == []


def test_a_node_evicts_lru_but_never_pinned_and_reloads_from_its_cache_dir(tmp_path):
    pf.FUNCS["e"] = lambda host, env: 0
    codes = [pf.code("e", label=f"c{i}") for i in range(4)]
    size = codes[0].size
    with Node(1, plugins=PLUGINS, config=NodeConfig(cache_bytes=size * 2 + 10, cache_dir=str(tmp_path))) as n:
        n.install(codes[0], pin=True)
        n.install(codes[1])
        n.install(codes[2])  # evicts codes[1], not the pinned codes[0]
        assert codes[0].name in n.cache and codes[1].name not in n.cache and codes[2].name in n.cache
        assert n.cache.evictions == 1
    # a restarted node reloads from its cache directory
    with Node(1, plugins=PLUGINS, config=NodeConfig(cache_dir=str(tmp_path))) as n2:
        assert n2.install_from_disk() == 3
