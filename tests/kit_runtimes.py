"""Test-only runtimes that misbehave, for the conformance kit's own tests (a plugin module
the kit's worker loads with ``--plugin kit_runtimes``).

* ``loops``: contains code (isolation guarded) and says it enforces a time limit, but every
  ``accept`` loops for ever: the kit's outer time limit must stop it.
* ``aborts``: isolation none; every ``accept`` writes a line to standard error and aborts the
  process: the kit must report the crash with that line, and skip the cases that need
  containment by its isolation level.
* ``unlimited``: contains code but declares no limit that stops a run.

Each builds any ``.py`` source into a code object that ignores it.
"""

from __future__ import annotations

import os
import sys

from pan_runtime import hookimpl
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.plugin.builders import Builder, BuildRequest
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime


class _Loops(LoadedCode):
    def accept(self, env):
        while True:
            pass


class _Aborts(LoadedCode):
    def accept(self, env):
        sys.stderr.write("aborts: the code took the process down\n")
        sys.stderr.flush()
        os.abort()


class Loops(Runtime):
    name = "loops"
    isolation = Isolation.GUARDED
    limits = frozenset({"time_ms"})  # a claim the runtime does not keep

    def load(self, code, deps, host):
        return _Loops(code, host)


class Aborts(Runtime):
    name = "aborts"
    isolation = Isolation.NONE

    def load(self, code, deps, host):
        return _Aborts(code, host)


class Unlimited(Runtime):
    name = "unlimited"
    isolation = Isolation.GUARDED

    def load(self, code, deps, host):
        return _Loops(code, host)


def _builder(runtime: str) -> Builder:
    class Ignores(Builder):
        suffixes = (".py",)

        def build(self, request: BuildRequest) -> CodeObject:
            return CodeObject.create(runtime, request.sources[0].read_bytes(), exports=request.exports,
                                     dependencies=[d.name for d in request.dependencies], meta=self.meta_for(request))

    Ignores.runtime = runtime
    return Ignores()


@hookimpl
def pan_register_runtimes(registry):
    for cls in (Loops, Aborts, Unlimited):
        registry.add(cls)


@hookimpl
def pan_register_builders(registry):
    for name in ("loops", "aborts", "unlimited"):
        registry.add(_builder(name))
