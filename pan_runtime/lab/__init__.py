"""``pan lab``: any topology of ``pan node`` processes, from a file, on network namespaces.

``topology`` reads and checks the file (``shapes`` expands generated shapes), ``nodeconfig``
addresses the lab and writes each node's configuration, ``netns`` builds it and tears it
down, ``record`` is what a running lab left on disk so that ``down``, ``status`` and
``exec`` (and the reaper, when the lab's process was killed) find it. ``docs/lab.md``
describes the file and the commands.
"""

from __future__ import annotations

from .topology import LabNode, Link, Topology, load_topology, parse_topology

__all__ = ["LabNode", "Link", "Topology", "load_topology", "parse_topology"]
