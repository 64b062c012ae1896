"""Contained execution: any runtime's code in supervised worker processes.

``mechanism`` names how a runtime runs its code (``in_process`` or ``process``) and whether
this machine can do ``process``; ``ring`` and ``channel`` are the shared-memory rings and
eventfd wake-ups between the node and a worker; ``wire`` the strict record codec on them and
``protocol`` the records; ``confine`` the kernel limits a worker puts on itself (seccomp,
rlimits, no new privileges, death with the node); ``supervisor`` the node's side (the
``Runtime`` and ``LoadedCode`` that stand for code in a worker, deadlines, kills, restarts),
and ``standby`` the warm standbys a restart takes (a worker with the code object linked and
confined, waiting for ``INIT``).
The worker's main is ``pan_runtime.net.worker``: it serves the PNI with the node's own
``PniServer``, so it sits above the node in the layers, as the compile child does.

The package imports ``plugin`` and ``data`` (``node`` for annotations only), so that the node's
code table can make a runtime's worker stand-in.
See ``docs/isolation.md``.
"""
