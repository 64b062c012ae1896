"""Measure the jvm runtime's per-capsule cost: ``python -m pan_jvm.measure [capsules]``.

Forwards pooled capsules through the Java ``Forward`` protocol one call per capsule and in
batches of 64, and counts the JVM's garbage collections over the run. Not a test.
"""

from __future__ import annotations

import sys
import time

from pan_jvm.builder import JvmBuilder
from pan_jvm.runtime import JvmRuntime
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.segments import SegmentPool
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.pni import PniServer
from pan_runtime.plugin.builders import BuildRequest
from pan_runtime.resources import protocols_dir


class _Node:
    address = NodeAddress.from_int(1)

    def now_ns(self) -> int:
        return time.monotonic_ns()


def main(n: int = 100_000) -> None:
    src = protocols_dir() / "java" / "Forward.java"
    code = JvmBuilder().build(BuildRequest([src], "jvm"))
    rt = JvmRuntime()
    host = PniServer(_Node())  # type: ignore[arg-type]
    loaded = rt.load(code, [], host)
    pool = SegmentPool(2048, 64)
    budget = Budget()
    envs = []
    for _ in range(64):
        seg = pool.allocate(128)
        envs.append(
            Environment().setup(
                code, Capsule(code.name, _Node.address, seg), Origin.NETWORK, None, None, budget
            )
        )
    accept = loaded.accept
    for env in envs * 200:  # warm up the JIT
        accept(env)
    gc0 = rt.gc_pauses()
    rows = []
    for _ in range(3):
        t = time.perf_counter()
        for i in range(n):
            accept(envs[i & 63])
        rows.append((time.perf_counter() - t) / n * 1e6)
    print(f"single: {min(rows):.3f} us/capsule (best of 3; runs {', '.join(f'{r:.3f}' for r in rows)})")
    rows = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n // 64):
            loaded.accept_batch(envs)
        rows.append((time.perf_counter() - t) / (n // 64 * 64) * 1e6)
    print(f"batch64: {min(rows):.3f} us/capsule (best of 3; runs {', '.join(f'{r:.3f}' for r in rows)})")
    print(f"GC pauses over {6 * n} capsules: {rt.gc_pauses() - gc0}")
    rt.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
