"""Loading and unloading the same objects thousands of times leaks no mappings, fds or memory."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from native_helpers import SOURCES, make_env

from pan_native.elfobject import parse_object
from pan_native.image import link
from pan_native.runtime import NativeRuntime
from pan_runtime.data.codeobj import CodeObject


def _counts() -> tuple[int, int, int]:
    gc.collect()
    maps = len(Path("/proc/self/maps").read_text().splitlines())
    fds = len(os.listdir("/proc/self/fd"))
    rss_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return maps, fds, rss_kb


def _ran_in_child(name: str) -> bool:
    """Run test ``name`` in a fresh interpreter: process-wide counts are only meaningful where
    no other engine (a JVM's threads, wasmtime) maps memory at the same time."""
    if os.environ.get("PAN_LEAK_CHILD") == name:
        return False
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{name}"],
        env={**os.environ, "PAN_LEAK_CHILD": name},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return True


# A leak of one mapping or fd per load would show as thousands here; the allocator's own
# arenas (anonymous mappings too) may add a few while Python objects come and go.
MAPS_SLACK = 8


def test_link_and_close_thousands_of_times(cc):
    if _ran_in_child("test_link_and_close_thousands_of_times"):
        return
    obj = parse_object(cc(SOURCES / "dep.c", ["-O2", "-fPIC"], "dep"))
    for _ in range(200):  # warm up allocator caches
        link(obj, lambda name: None).close()
    maps0, fds0, rss0 = _counts()
    for _ in range(5000):
        link(obj, lambda name: None).close()
    maps1, fds1, rss1 = _counts()
    assert maps1 <= maps0 + MAPS_SLACK and fds1 == fds0
    assert rss1 - rss0 < 2048, f"RSS grew {rss1 - rss0} KiB"


def test_load_run_unload_thousands_of_times(cc, host, pool):
    if _ran_in_child("test_load_run_unload_thousands_of_times"):
        return
    code = CodeObject.create("native", cc(SOURCES / "body.c", ["-O2", "-fPIC"], "body"))
    rt = NativeRuntime()
    env = make_env(pool, bytes(16), code)

    def cycle() -> None:
        loaded = rt.load(code, [], host)
        assert loaded.accept(env) & 0xFF == 3  # runs host callbacks and the support object
        loaded.unload()

    for _ in range(100):
        cycle()
    maps0, fds0, rss0 = _counts()
    for _ in range(2000):
        cycle()
    maps1, fds1, rss1 = _counts()
    assert maps1 <= maps0 + MAPS_SLACK and fds1 == fds0
    assert rss1 - rss0 < 4096, f"RSS grew {rss1 - rss0} KiB"
