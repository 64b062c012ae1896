"""The distance-vector code object (``protocols/dv.*``) built for any of pan's runtimes.

The same protocol is written three times: ``dv.c`` (native and wasm), ``java/Dv.java`` (jvm)
and ``dv.py`` (restricted_py); the behaviour is in ``docs/protocols.md``. It is not one of
the reference protocols every runtime plugin must ship, so the lab builds it here from pan's
own sources, once per runtime and process.
"""

from __future__ import annotations

import functools

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError

__all__ = ["DV_RUNTIMES", "dv_code"]

#: runtime -> the dv source its builder reads, relative to the protocols directory
_SOURCES = {"native": "dv.c", "wasm": "dv.c", "jvm": "java/Dv.java", "restricted_py": "dv.py"}
DV_RUNTIMES = tuple(_SOURCES)


@functools.cache
def dv_code(runtime: str) -> CodeObject:
    """The dv code object for ``runtime`` (unsigned); ``BuildError`` when it cannot be built."""
    from pan_runtime.plugin.builders import BuildRequest
    from pan_runtime.plugin.plugins import default_plugins
    from pan_runtime.resources import protocols_dir

    if runtime not in _SOURCES:
        raise BuildError(f"the dv code object is written for {', '.join(DV_RUNTIMES)}, not {runtime!r}")
    src = protocols_dir() / _SOURCES[runtime]
    builder = default_plugins().builders.find(runtime, src.suffix)
    reason = builder.available()
    if reason is not None:
        raise BuildError(f"cannot build dv for {runtime}: {reason}")
    return builder.build(BuildRequest([src], runtime, [], [], f"dv-{runtime}"))
