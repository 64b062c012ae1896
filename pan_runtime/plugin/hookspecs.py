"""The plugin boundary: pluggy hook specifications for pan.

A plugin is any module or object with functions decorated by ``pan_runtime.hookimpl``.
Third parties expose one through an entry point in the group ``pan.runtimes``; the
built-in runtimes register through the very same hooks.

One mechanism per thing:

* **hooks** (this module) are the plugin boundary: registering runtimes, builders and the
  sources pan builds for a runtime (reference protocols, conformance cases) when a
  plugin manager is loaded (``pan_runtime.plugin.plugins.load_plugins``), and a node's own
  life (``pan_node_started``, ``pan_node_stopping``). They are called through the manager,
  never per capsule.
* **events** (``pan_runtime.node.events``) report what happens inside a running node: code
  loaded, unloaded or quarantined, capsules dropped. A node keeps the last ones in
  ``node.events`` and passes each to ``node.on_event``; a plugin that wants them sets that
  callback from ``pan_node_started`` (keeping any callback already there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pan_runtime.plugin.builders import BuilderRegistry
    from pan_runtime.plugin.plugins import RuntimeRegistry
    from pan_runtime.plugin.sources import SourceRegistry

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
def pan_register_sources(registry: SourceRegistry) -> None:
    """Add the sources pan builds for a runtime (``pan_runtime.plugin.sources``).

    ``registry.add_protocols(runtime, directory, files)``: the four reference protocols
    (``forward``, ``ping``, ``flood``, ``portmapper``), which put the runtime in ``pan demo`` and
    ``pan bench`` and let ``pan conformance`` compare it with a reference runtime.
    ``registry.add_cases(runtime, directory)``: conformance-case sources in the runtime's
    language, when pan ships none in it. Both are built with the runtime's builder.
    """


@hookspec
def pan_node_started(node: Any) -> None:
    """A node was constructed and is ready to take code objects, links and capsules.

    Called once per node, at the end of ``Node.__init__``; the node has no links and no code
    yet. A plugin may install code or subscribe to the node's events here.
    """


@hookspec
def pan_node_stopping(node: Any) -> None:
    """A node is about to close: its links and code objects are still there.

    Called once, at the start of ``Node.close``; afterwards every code object is unloaded
    (a ``CodeUnloaded`` event each) and the links are closed.
    """
