"""The reference protocols (forward, ping, flood, portmapper) and the distance-vector routing
protocol (dv) as sources, shipped as data.

Installed as the package ``pan_protocols`` so that ``pan demo``, ``pan ping``, ``pan flood``
and ``pan bench`` find them in a wheel as in a checkout (``pan_runtime.resources``): C for
``native`` and ``wasm`` with their header codecs ``headers.h``, Java under ``java/``, and
Python for ``restricted_py``. The ``.py`` files here are code-object sources run by the
restricted_py runtime with the PNI's names as globals, not modules to import. Behaviour:
``docs/protocols.md``; headers: ``headers.toml``.
"""
