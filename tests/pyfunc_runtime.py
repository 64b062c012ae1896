"""A test-only runtime whose code objects name Python functions registered by the tests.

It lets the node tests drive every outcome (faults, sends, state, deliveries) without any
engine; the real runtimes are exercised by the conformance suite.
"""

from __future__ import annotations

from collections.abc import Callable

from pan_runtime import hookimpl
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime

FUNCS: dict[str, Callable] = {}


def code(fn_name: str, *, exports=(), deps=(), label=None) -> CodeObject:
    entry = {"accept": "accept"}
    return CodeObject.create(
        "pyfunc", fn_name.encode(), exports=list(exports), dependencies=[d.name for d in deps], meta={"label": label or fn_name}, entry=entry
    )


class _Loaded(LoadedCode):
    def __init__(self, code, host, fn):
        super().__init__(code, host)
        self.fn = fn
        self.finalized = False

    def init(self) -> int:
        init = FUNCS.get(self.code.payload.decode() + ".init")
        return init(self.host) if init else 0

    def accept(self, env) -> int:
        return self.fn(self.host, env)

    def call_export(self, name, a0, a1):
        fn = FUNCS.get(f"{self.code.payload.decode()}.{name}")
        if fn is None:
            return super().call_export(name, a0, a1)
        return fn(self.host, a0, a1)

    def finalize(self) -> int:
        self.finalized = True
        FINALIZED.append(self.code.payload.decode())
        return 0


FINALIZED: list[str] = []


class PyFuncRuntime(Runtime):
    name = "pyfunc"
    isolation = Isolation.SANDBOXED

    def load(self, code, deps, host):
        fn = FUNCS.get(code.payload.decode())
        if fn is None:
            raise CodeObjectError(f"no test function {code.payload.decode()!r}")
        return _Loaded(code, host, fn)


@hookimpl
def pan_register_runtimes(registry):
    registry.add(PyFuncRuntime)
