"""Per-capsule costs of the wasm runtime (a measuring script, not a test).

    python -m pan_wasm.measure [--quick]

Prints best-of-5 µs per capsule for: the forward capsule through ``accept`` under the epoch
and fuel budgets and several tick periods, at body sizes 128/1500/8192, a plain Python
``accept`` doing the same decision through the same node-side steps, batches of 64, and
a guest → host PNI call.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

FORWARD_WAT = """
(module
  (memory (export "memory") 1)
  (data (i32.const 1028) "\\40\\00\\00\\00")
  (func $accept (export "accept") (param i32 i32) (result i32) i32.const 2)
  (func (export "pni_batch_area") (result i32) i32.const 1024)
  (func (export "accept_batch") (param $n i32) (result i32)
    (local $i i32) (local $slot i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store (i32.const 1024) (local.get $i))
        (local.set $slot (i32.add (i32.const 1032) (i32.mul (local.get $i) (i32.const 12))))
        (i32.store offset=8 (local.get $slot)
          (call $accept (i32.load (local.get $slot)) (i32.load offset=4 (local.get $slot))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $n)))
"""

HOSTCALL_WAT = """
(module
  (import "pan_pni_1" "neighbor_count" (func $nc (result i32)))
  (memory (export "memory") 1)
  (func (export "accept") (param i32 i32) (result i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get 1)))
      (drop (call $nc))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    i32.const 2))
"""


def best(fn: Callable[[], None], n: int, rounds: int = 5) -> float:
    out = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out = min(out, (time.perf_counter() - t) / n * 1e6)
    return out


def main(argv: list[str]) -> None:
    import wasmtime

    from pan_runtime.data.address import NodeAddress
    from pan_runtime.data.capsule import Capsule
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.env import Budget, Environment, Origin
    from pan_runtime.node.pni import PniServer
    from pan_wasm.code import WasmCode
    from pan_wasm.runtime import WasmRuntime

    n = 20_000 if "--quick" in argv else 200_000
    here = NodeAddress.from_int(1)

    class Node:
        address = here

        def neighbor_addresses(self) -> list[NodeAddress]:
            return [here]

    host = PniServer(Node())  # type: ignore[arg-type]
    code = CodeObject.create("wasm", bytes(wasmtime.wat2wasm(FORWARD_WAT)))
    budget = Budget()

    def env_for(size: int) -> Environment:
        from pan_runtime.data.segments import Segment

        return Environment().setup(
            code, Capsule(code.name, here, Segment.owned(size)), Origin.NETWORK, None, None, budget
        )

    def node_loop(accept: Callable[[Environment], int], env: Environment) -> Callable[[], None]:
        def go() -> None:  # the node-side steps around one capsule's call
            for _ in range(n):
                host.current = env
                if accept(env) & 0xFF != 2:
                    raise SystemExit("wrong verdict")

        return go

    def py_accept(env: Environment) -> int:
        return 2

    print(f"{'case':44s} {'128':>8s} {'1500':>8s} {'8192':>8s}   (µs per capsule, best of 5)")
    row = [best(node_loop(py_accept, env_for(s)), n) for s in (128, 1500, 8192)]
    print(f"{'plain Python accept (same node steps)':44s} " + " ".join(f"{v:8.3f}" for v in row))
    base = row
    for label, opts in [
        ("wasm accept, epoch 1 ms ticks", {"epoch_tick_ms": 1.0}),
        ("wasm accept, epoch 2 ms ticks", {"epoch_tick_ms": 2.0}),
        ("wasm accept, epoch 10 ms ticks", {"epoch_tick_ms": 10.0}),
        ("wasm accept, fuel (set per call)", {"budget": "fuel"}),
    ]:
        rt = WasmRuntime(opts)
        loaded = rt.load(code, [], host)
        row = [best(node_loop(loaded.accept, env_for(s)), n) for s in (128, 1500, 8192)]
        ratio = " ".join(f"{v / b:4.1f}x" for v, b in zip(row, base, strict=True))
        print(f"{label:44s} " + " ".join(f"{v:8.3f}" for v in row) + f"   vs Python {ratio}")
        envs = [env_for(128) for _ in range(64)]

        def batches(loaded: WasmCode = loaded, envs: list[Environment] = envs) -> None:
            for _ in range(n // 64):
                loaded.accept_batch(envs)

        batch = best(batches, (n // 64) * 64)
        loaded._batch = None  # the host-side loop, for comparison
        loop = best(batches, (n // 64) * 64)
        print(f"{'   batch of 64: one crossing / host loop':44s} {batch:8.3f} {loop:8.3f}")
        rt.close()

    rt = WasmRuntime({"epoch_tick_ms": 2.0})
    hc = rt.load(CodeObject.create("wasm", bytes(wasmtime.wat2wasm(HOSTCALL_WAT))), [], host)
    env = env_for(0)
    env.length = 1000
    host.current = env
    empty = env_for(0)
    per = best(lambda: [hc.accept(env) for _ in range(n // 1000)], (n // 1000) * 1000)
    zero = best(lambda: [hc.accept(empty) for _ in range(n // 1000)], (n // 1000) * 1000)
    print(f"{'guest -> host PNI call (neighbor_count)':44s} {per - zero:8.3f}")
    rt.close()


if __name__ == "__main__":
    main(sys.argv[1:])
