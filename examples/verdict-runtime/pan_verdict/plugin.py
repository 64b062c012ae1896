"""The ``verdict`` runtime: a code object's payload is one line of text naming what to do
with every capsule: ``forward OFFSET``, ``deliver PORT``, ``drop`` or ``done``.

It shows everything a runtime needs: a class with a name and an isolation level, a
``load`` that validates the payload and returns a ``LoadedCode``, a builder for
``pan build``, and the two hook implementations pan finds through the ``pan.runtimes``
entry point. Nothing in pan's core knows this package exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from pan_runtime import hookimpl
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError
from pan_runtime.plugin.builders import Builder, BuildRequest
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime
from pan_runtime.pni_api import DONE, DROP, deliver, forward


def parse_rule(text: str) -> int:
    """The verdict a one-line rule stands for; raises ValueError naming the problem."""
    words = text.split()
    if words == ["drop"]:
        return DROP
    if words == ["done"]:
        return DONE
    if len(words) == 2 and words[0] in ("forward", "deliver") and words[1].isdigit():
        arg = int(words[1])
        return forward(arg) if words[0] == "forward" else deliver(arg)
    raise ValueError(f"expected 'forward N', 'deliver PORT', 'drop' or 'done', got {text.strip()!r}")


class LoadedVerdict(LoadedCode):
    def __init__(self, code: CodeObject, host, verdict: int):  # type: ignore[no-untyped-def]
        super().__init__(code, host)
        self.verdict = verdict

    def accept(self, env) -> int:  # type: ignore[no-untyped-def]
        return self.verdict


class VerdictRuntime(Runtime):
    name = "verdict"
    isolation = Isolation.SANDBOXED  # the payload is data, not code
    payload = "one line: forward OFFSET | deliver PORT | drop | done"

    def load(self, code: CodeObject, deps: Sequence[LoadedCode], host) -> LoadedCode:  # type: ignore[no-untyped-def]
        try:
            verdict = parse_rule(code.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CodeObjectError(f"verdict code object {code.short_name}: {exc}") from None
        return LoadedVerdict(code, host, verdict)


class VerdictBuilder(Builder):
    runtime = "verdict"
    suffixes = (".verdict",)

    def build(self, request: BuildRequest) -> CodeObject:
        text = request.sources[0].read_text()
        try:
            parse_rule(text)
        except ValueError as exc:
            raise BuildError(f"{request.sources[0]}: {exc}") from None
        return CodeObject.create("verdict", text.strip().encode(), meta=self.meta_for(request))


@hookimpl
def pan_register_runtimes(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add(VerdictRuntime)


@hookimpl
def pan_register_builders(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add(VerdictBuilder())
