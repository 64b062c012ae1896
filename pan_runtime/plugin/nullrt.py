"""The ``null`` runtime: a built-in baseline that runs plain Python functions compiled into
the node, so the benchmark can set every mobile-code runtime against the node's own cost.

Its code objects carry only the name of a built-in function (``forward``, ``drop``); no
foreign code runs, which is why it counts as sandboxed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
from pan_runtime.node import pni
from pan_runtime.node.env import Environment
from pan_runtime.plugin.hookspecs import hookimpl
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

__all__ = ["NullRuntime", "null_code"]

_FORWARD0 = pni.VERDICT_FORWARD  # FORWARD(0): dest at body offset 0


def _forward(env: Environment) -> int:
    return _FORWARD0


def _drop(env: Environment) -> int:
    return pni.VERDICT_DROP


BUILTINS: dict[str, Callable[[Environment], int]] = {"forward": _forward, "drop": _drop}


class _LoadedNull(LoadedCode):
    def __init__(self, code: CodeObject, host: pni.PniServer, fn: Callable[[Environment], int]):
        super().__init__(code, host)
        self.accept = fn  # type: ignore[method-assign]  # one Python call per capsule, nothing more

    def accept(self, env: Environment) -> int:  # pragma: no cover - replaced per instance
        raise NotImplementedError


class NullRuntime(Runtime):
    name = "null"
    isolation = Isolation.SANDBOXED
    payload = "the name of a function built into the node"

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host: pni.PniServer) -> LoadedCode:
        fname = code.payload.decode("ascii", "replace")
        fn = BUILTINS.get(fname)
        if fn is None:
            raise CodeObjectError(f"null runtime has no built-in {fname!r}; known: {', '.join(sorted(BUILTINS))}")
        return _LoadedNull(code, host, fn)


def null_code(function: str = "forward") -> CodeObject:
    """A code object for the null runtime."""
    return CodeObject.create("null", function.encode(), meta={"label": f"null-{function}"})


@hookimpl
def pan_register_runtimes(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add(NullRuntime)
