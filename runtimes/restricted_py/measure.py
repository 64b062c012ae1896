"""Per-capsule cost of restricted_py against plain Python: ``python -m pan_restricted_py.measure``.

Both sides run the same protocol source on the same environment the way the node does
(``host.current = env`` then one call): plain Python compiles the source with CPython and
calls ``accept(HostPNI(host), 1, length)``; restricted_py goes through ``LoadedCode.accept``
(guards, meter, fault mapping). Prints the best of several runs
(microseconds per capsule; the machine is shared, so the best run is the least noisy).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from pan_restricted_py.runtime import RestrictedPyRuntime
from pan_runtime import pni_api, protocol_headers
from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.pni import PniServer
from pan_runtime.node.softstate import SoftState
from pan_runtime.resources import protocols_dir

_HERE = NodeAddress.from_int(0x0A000001)
_OTHER = NodeAddress.from_int(0x0A000009)


class _Node:
    address = _HERE

    def __init__(self) -> None:
        self.state = SoftState()

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def soft_state(self, code: Any) -> SoftState:
        return self.state

    def __getattr__(self, name: str) -> Any:
        return lambda *a: 0


def _time(fns: list[Any], arg: Any, n: int, rounds: int = 15) -> list[float]:
    """Best µs per call of each of FNS, rounds interleaved so load hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(arg)
            best[i] = min(best[i], (time.perf_counter() - t0) / n * 1e6)
    return best


def measure(name: str, source: bytes, body: bytes, n: int = 100_000) -> tuple[float, float, float]:
    """(plain µs, restricted µs, empty-loop µs) per capsule for SOURCE on BODY."""
    host = PniServer(_Node())
    code = CodeObject.create("restricted_py", source)
    env = Environment()
    env.setup(code, Capsule(code.name, _HERE, Segment.owned(body)), Origin.NETWORK, None, None, Budget())
    host.current = env

    plain_g: dict[str, Any] = {n: getattr(m, n) for m in (pni_api, protocol_headers) for n in m.__all__}
    exec(compile(source, f"{name}.py", "exec"), plain_g)
    plain_accept = plain_g["accept"]
    plain_pni = pni_api.HostPNI(host)

    def plain(env: Environment) -> int:
        host.current = env
        return plain_accept(plain_pni, 1, env.length)

    loaded = RestrictedPyRuntime().load(code, [], host)
    accept = loaded.accept

    def restricted(env: Environment) -> int:
        host.current = env
        return accept(env)

    def empty(env: Environment) -> None:
        host.current = env

    assert plain(env) == restricted(env), "plain and restricted disagree"
    _time([plain, restricted], env, n // 10, 1)
    p, r, e = _time([plain, restricted, empty], env, n // 5)
    return p, r, e


_TTL_LOOP = b"""
def accept(pni, capsule, length):
    total = 0
    for i in range(4):
        total = (total + pni.seg_get_u32(capsule, 12 + 4 * i)) & 0xFFFFFFFF
    return forward(0) if total & 15 != 99 else DROP
"""


def main(argv: list[str] | None = None) -> int:
    ping = protocol_headers.PingHdr(dest=_OTHER.raw, phase=0).pack() + bytes(72)
    def proto(name: str) -> bytes:
        return (protocols_dir() / f"{name}.py").read_bytes()

    cases = [
        ("forward", proto("forward"), bytes(128)),
        # metered: a call makes accept count a step (and its depth)
        ("forward(0)", b"def accept(pni, capsule, length):\n    return forward(0)\n", bytes(128)),
        ("ttl-loop", _TTL_LOOP, bytes(128)),
        ("ping", proto("ping"), ping),
    ]
    print(f"{'case':12} {'plain µs':>9} {'rpy µs':>9} {'ratio':>6} {'loop µs':>8}")
    for name, source, body in cases:
        p, r, e = measure(name, source, body)
        print(f"{name:12} {p:9.3f} {r:9.3f} {r / p:6.2f} {e:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
