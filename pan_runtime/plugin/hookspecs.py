"""The plugin boundary: pluggy hook specifications for pan.

A plugin is any module or object with functions decorated by ``pan_runtime.hookimpl``.
Third parties expose one through an entry point in the group ``pan.runtimes``; the
built-in runtimes register through the very same hooks.

Hooks are called at start-up and on lifecycle events only; pluggy is never on the
per-capsule path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pan_runtime.plugin.builders import BuilderRegistry
    from pan_runtime.plugin.plugins import RuntimeRegistry

PROJECT = "pan"
ENTRY_POINT_GROUP = "pan.runtimes"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def pan_register_runtimes(registry: RuntimeRegistry) -> None:
    """Add runtime classes with ``registry.add(RuntimeClass)``.

    Called once when a plugin manager is made. A runtime class is registered under its
    class-level ``name``; registering a name twice is an error naming both classes.
    Importing the engine (wasmtime, JPype, ...) belongs in ``Runtime.available`` or
    ``Runtime.__init__``, not here, so a missing engine never breaks registration.
    """


@hookspec
def pan_register_builders(registry: BuilderRegistry) -> None:
    """Add code object builders used by ``pan build`` with ``registry.add(builder)``.

    A builder turns source files (``.c``, ``.wat``, ``.java``, ``.py``, ...) into a code
    object for one runtime; see ``pan_runtime.plugin.builders.Builder``.
    """


@hookspec
def pan_node_started(node: Any) -> None:
    """A node finished starting: its runtimes are loaded and its links are open."""


@hookspec
def pan_node_stopping(node: Any) -> None:
    """A node is about to close its links and unload its code objects."""


@hookspec
def pan_code_loaded(node: Any, name: str, runtime: str) -> None:
    """A code object (by hex name) was installed in a node's cache and initialised."""


@hookspec
def pan_code_unloaded(node: Any, name: str, reason: str) -> None:
    """A code object left a node's cache (``reason``: uninstall, evicted, quarantine)."""
