"""The PNI as WebAssembly imports: wasm signatures from the spec, and the host callbacks.

Each spec call becomes an import ``pan_pni_1.<call>``. Parameter mapping: ``handle``/
``u32``/``i32`` → i32; ``i64``/``u64``/``link`` → i64; ``bytes_in``/``bytes_out`` → two
i32 (pointer, length); ``addr_in``/``addr_out``/``name_out`` → one i32 pointer to 16 or
32 bytes. Results are i32 or i64 as the spec says.

A callback is generated per call as straight-line Python (no loop over parameter kinds at
run time): it reads the raw argument slots, checks every (pointer, length) against the
instance's linear memory — a range outside it returns ``OUT_OF_RANGE`` to the code
without reaching the host — passes memoryviews of linear memory to ``host.<call>`` and
writes the result back. When ``host.current`` is None, the node's UDP fast path is running
the capsule and the callback has its environment built first (``fastpath.materialize``).
Nothing a guest passes can make a callback raise; a host method
that raises (a host bug) becomes a trap recorded on the calling code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pan_runtime.net.fastpath import materialize
from pni_spec.spec import Call, Spec

__all__ = ["WASM_PARAM", "wasm_signature", "CallbackState", "make_callback"]

#: wasm value types of each spec parameter type ("ptr" is an i32 into linear memory)
WASM_PARAM: dict[str, tuple[str, ...]] = {
    "handle": ("i32",),
    "u32": ("i32",),
    "i32": ("i32",),
    "i64": ("i64",),
    "u64": ("i64",),
    "link": ("i64",),
    "bytes_in": ("i32", "i32"),
    "bytes_out": ("i32", "i32"),
    "addr_in": ("i32",),
    "addr_out": ("i32",),
    "name_out": ("i32",),
}
_FIXED = {"addr_in": 16, "addr_out": 16, "name_out": 32}


def wasm_signature(call: Call) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(param types, result types) of the import for ``call``, as "i32"/"i64" strings."""
    params: list[str] = []
    for p in call.params:
        params.extend(WASM_PARAM[p.type])
    return tuple(params), (call.result,)


class CallbackState(Protocol):
    """What a generated callback needs from the code object it serves."""

    #: the environments of a running batch, or None outside a batch
    batch_envs: Any

    def sync_batch(self) -> None:
        """Point ``host.current`` at the capsule the batch loop is on."""

    def host_failed(self, call: str, exc: BaseException) -> int:
        """Record a host exception; returns the trap pointer for the callback to return."""


def _source(call: Call, slot: int) -> str:
    """Python source of ``make(method, mem, state, OOR)`` returning the callback."""
    lines: list[str] = []
    args: list[str] = []
    checks: list[str] = []
    k = 0  # wasm value index
    for i, p in enumerate(call.params):
        a = f"a[{k * slot}]"
        if p.type in ("handle", "u32"):
            args.append(f"{a} & 0xFFFFFFFF")
        elif p.type == "i32":
            args.append(f"(({a} & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000")
        elif p.type == "u64":
            args.append(f"{a} & 0xFFFFFFFFFFFFFFFF")
        elif p.type in ("i64", "link"):
            args.append(a)
        elif p.type in ("bytes_in", "bytes_out"):
            lines.append(f"p{i} = {a} & 0xFFFFFFFF")
            lines.append(f"e{i} = p{i} + (a[{(k + 1) * slot}] & 0xFFFFFFFF)")
            checks.append(f"e{i}")
            args.append(f"view[p{i}:e{i}]")
        else:  # fixed-size pointer
            lines.append(f"p{i} = {a} & 0xFFFFFFFF")
            lines.append(f"e{i} = p{i} + {_FIXED[p.type]}")
            checks.append(f"e{i}")
            args.append(f"view[p{i}:e{i}]")
        k += len(WASM_PARAM[p.type])
    body = [
        "if state.batch_envs is not None:",
        "    state.sync_batch()",
        "elif host.current is None:",  # the node's fast path is running this capsule
        "    materialize()",
        *lines,
    ]
    if checks:
        far = checks[0] if len(checks) == 1 else f"max({', '.join(checks)})"
        body += [
            f"far = {far}",
            "if far > mem.size and mem.refresh(caller) < far:",
            "    a[0] = OOR",
            "    return 0",
            "view = mem.view",
        ]
    body.append(f"a[0] = method({', '.join(args)})")
    inner = "\n".join("        " + line for line in body)
    return (
        "def make(method, mem, state, OOR, host, materialize):\n"
        "    def callback(env, caller, a, n):\n"
        "      try:\n"
        f"{inner}\n"
        "      except BaseException as exc:\n"
        f"        return state.host_failed({call.name!r}, exc)\n"
        "      return 0\n"
        "    return callback\n"
    )


_FACTORIES: dict[tuple[str, str, int], Callable[..., Any]] = {}


def make_callback(
    spec: Spec, call: Call, method: Callable[..., int], mem: Any, state: CallbackState, slot: int
) -> Callable[[int, int, Any, int], int]:
    """The raw callback for ``call``: ``callback(env, caller, slots, n) -> 0 | trap``.

    ``mem`` is a ``fastcall.LinearMemory`` (rebound in place when the instance is reset),
    ``slot`` the int64 stride of the raw value array.
    """
    key = (spec.version, call.name, slot)
    make = _FACTORIES.get(key)
    if make is None:
        namespace: dict[str, Any] = {}
        exec(compile(_source(call, slot), f"<pni import {call.name}>", "exec"), namespace)
        make = _FACTORIES[key] = namespace["make"]
    host = getattr(method, "__self__", None)
    if not hasattr(host, "current"):
        host = _NO_FAST_PATH
    return make(method, mem, state, spec.status_value("OUT_OF_RANGE"), host, materialize)


class _NoFastPath:
    """Stands in for a host that is not a node's (a method that is not bound to one)."""

    current = False


_NO_FAST_PATH = _NoFastPath()
