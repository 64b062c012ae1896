"""Measure the native runtime's per-capsule costs (a script, not a test).

    python -m pan_native.measure [--n 200000]

Prints µs per capsule for ``forward`` one capsule per crossing and 64 per crossing, µs per
native→Python host callback, and ns per hot segment call answered in C.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pan_native.builder import NativeBuilder
from pan_native.runtime import NativeRuntime
from pan_runtime.data.segments import SegmentPool
from pan_runtime.node.env import Environment
from pan_runtime.node.pni import PniServer
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.resources import protocols_dir

_LOOPS = r"""
#include "pni.h"
int64_t callbacks(int64_t n, int64_t a1) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += pni_env_origin_kind();
    return s + a1;
}
int64_t hot(int64_t n, int64_t a1) {
    pni_handle_t seg = (pni_handle_t)a1;
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += pni_seg_get_u32(seg, (uint32_t)(i & 7));
    return s;
}
int32_t accept(pni_handle_t capsule, uint32_t length) {
    return (int32_t)(hot((int64_t)length * 1000, capsule) & 0);
}
"""


class _Node:
    def now_ns(self) -> int:
        return time.monotonic_ns()


def _best(fn, n: int, rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return min(samples), statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    n = ap.parse_args().n
    builder = NativeBuilder()
    forward = builder.build(BuildRequest([protocols_dir() / "forward.c"], "native"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "loops.c"
        src.write_text(_LOOPS)
        loops = builder.build(BuildRequest([src], "native", exports=["callbacks", "hot"]))
    host = PniServer(_Node())  # type: ignore[arg-type]
    rt = NativeRuntime()
    pool = SegmentPool(2048, 64)
    envs = []
    for _ in range(64):
        env = Environment()
        seg = pool.allocate(128)
        env.body = env.handles[1] = seg
        env.length = 128
        envs.append(env)

    t = time.perf_counter()
    fwd = rt.load(forward, [], host)
    load_ms = (time.perf_counter() - t) * 1e3
    accept, batch = fwd.accept, fwd.accept_batch

    def single() -> None:
        for i in range(n):
            accept(envs[i & 63])

    def batched() -> None:
        for _ in range(n // 64):
            batch(envs)

    lp = rt.load(loops, [], host)
    host.current = envs[0]
    call = lp.call_export
    rows = {
        "forward, 1 capsule per crossing (µs/capsule)": _best(single, n),
        "forward, 64 capsules per crossing (µs/capsule)": _best(batched, n // 64 * 64),
        "native→Python host callback pni_env_origin_kind (µs/call)": _best(lambda: call("callbacks", n, 0), n),
        "hot segment call pni_seg_get_u32 on the body, in C (µs/call)": _best(
            lambda: lp.accept(envs[0]), 128 * 1000
        ),
        "pni_seg_get_u32 outside accept (host fallback, µs/call)": _best(lambda: call("hot", n // 10, 1), n // 10),
    }
    t = time.perf_counter()
    rt.load(forward, [], host).unload()
    again_ms = (time.perf_counter() - t) * 1e3
    print(f"load forward.o: first {load_ms:.2f} ms (builds/parses support), then {again_ms:.2f} ms")
    for name, (best, median) in rows.items():
        print(f"{name}: best {best:.4f}, median {median:.4f}")
    fwd.unload()
    lp.unload()
    for env in envs:
        env.body.release()
    pool.close()


if __name__ == "__main__":
    main()
