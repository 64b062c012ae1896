"""The code cache (``pan_runtime.node.cache``): LRU by bytes, pins, dependants, the circuit
breaker and the on-disk store, on a disk that fills up."""

import json
import logging
import subprocess
import sys

import pyfunc_runtime as pf
import pytest

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import DiskError
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


def big(label: str, size: int = 20_000) -> CodeObject:
    """A null-runtime code object of about ``size`` bytes (the padding is in its manifest)."""
    return CodeObject.create("null", b"forward", meta={"label": label, "pad": "x" * size})


@pytest.fixture
def small_fs(tmp_path):
    """A real 64 KiB filesystem (tmpfs) that fills up."""
    d = tmp_path / "fs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"[allowed-skip] mounting a tmpfs needs root: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_disk_keeps_the_code_installed_and_leaves_no_partial_file(small_fs, caplog):
    codes = [big(f"c{i}") for i in range(6)]  # 120 KB for 64 KiB of disk
    cache_dir = small_fs / "codes"
    with caplog.at_level(logging.WARNING, "pan.cache"):
        with Node(1, plugins=PLUGINS, config=NodeConfig(cache_dir=str(cache_dir))) as n:
            for c in codes:
                n.install(c)  # never raises: the cache directory is best effort
            assert all(c.name in n.cache for c in codes)
            errors = n.statistics()["cache"]["disk_errors"]
            assert errors >= 2  # the disk filled and stayed full
            failing = [r for r in caplog.records if "not kept on disk" in r.getMessage()]
            assert len(failing) == 1  # logged once for the run of failures, not per write
            files = sorted(p.name for p in cache_dir.iterdir())
            assert not [f for f in files if not f.endswith(".pco")]  # no temporary left behind
            store = DiskStore(cache_dir)
            kept = [c for c in codes if store.get(c.name) is not None]
            assert len(kept) == len(files) == len(codes) - errors and store.rejected == 0
            with pytest.raises(DiskError, match="No space left"):
                store.put(codes[-1])
            n.uninstall(kept[0])  # frees room: writes succeed again, and say so
            n.install(big("late", 1000))
            assert any("succeed again" in r.getMessage() for r in caplog.records)
    with Node(1, plugins=PLUGINS, config=NodeConfig(cache_dir=str(cache_dir))) as again:
        assert again.install_from_disk() == len(kept)  # everything written is whole


FSIZE_CHILD = """
import json, resource, signal, sys
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit is then EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
code = CodeObject.create("null", b"forward", meta={"label": "big", "pad": "x" * 20000})
small = CodeObject.create("null", b"forward", meta={"label": "small"})
with Node(1, plugins=load_plugins(extra=[nullrt]), config=NodeConfig(cache_dir=sys.argv[1])) as n:
    n.install(code)
    n.install(small)
    print(json.dumps({"installed": [c.name in n.cache for c in (code, small)], "cache": n.statistics()["cache"]}))
"""


def test_a_write_past_the_file_size_limit_is_a_counted_disk_error(tmp_path):
    p = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(tmp_path / "codes")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["installed"] == [True, True]
    assert out["cache"]["disk_errors"] == 1
    assert "File too large" in p.stderr and "Traceback" not in p.stderr
    assert sorted(f.suffix for f in (tmp_path / "codes").iterdir()) == [".pco"]  # only the small one


def test_the_disk_store_refuses_what_it_cannot_use_with_typed_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DiskError, match="cannot make the code cache directory"):
        DiskStore(blocker / "codes")
    store = DiskStore(tmp_path / "codes")
    code = big("dir", 10)
    (store.path / f"{code.name.hex()}.pco").mkdir()  # not a file: counted, not raised
    assert store.get(code.name) is None and store.rejected == 1
    (store.path / "abcd.pco").write_bytes(b"")  # hex, but not a 32-byte name
    assert store.names() == [code.name]
