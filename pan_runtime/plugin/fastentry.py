"""The optional capability of a ``LoadedCode``: running on the node's UDP fast path.

A loaded code object that also derives from ``FastEntry`` can be run by the fast path on a
capsule whose environment is not built: through a C entry (``fast_entry``), else through a
Python entry (``fast_accept``). The node asks ``isinstance(loaded, FastEntry)``; code that is
not a ``FastEntry`` is run through ``accept`` with a full environment. During such a run the
node's ``PniServer`` builds the environment itself on the first call that needs it, so a
runtime's host calls need no fast-path case of their own.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FastEntry"]


class FastEntry:
    """What the fast path calls on a loaded code object that offers it (a mixin beside
    ``LoadedCode``); every member has a default meaning "not offered", so a runtime implements
    only the entry it has."""

    #: a method ``(body, prev_hop) -> verdict`` the fast path calls from C without an
    #: environment, its PNI a generated ``pan_runtime.pni_hot.BodyHost``; faults raise
    #: ``RuntimeFault``. None: no Python entry.
    fast_accept: Callable[[memoryview, bytes], int] | None = None


    def fast_entry(self) -> tuple[int, int] | None:
        """The C addresses of a ``pan_fast_run_fn`` (``include/pan_fast.h``) and of its state,
        or None: no C entry (the fast path then uses ``fast_accept``, else ``accept``)."""
        return None

    def fast_batch_entry(self) -> int | None:
        """The C address of a ``pan_fast_batch_fn`` taking the same state as ``fast_entry``'s run
        (several capsules of one receive in one crossing), or None: the fast path calls the
        run once per capsule."""
        return None

    #: True when the C entry answers ``env_origin_kind`` from ``pan_fast_ctx.origin_kind``, so a
    #: capsule from an application can run through it too; False: it assumes the network
    #: origin the node's UDP fast path gives it (a worker then runs other capsules in Python)
    fast_any_origin: bool = False

    def take_fast_usage(self) -> tuple[int, int]:
        """(steps, fuel) the fast runs used since the last call; the node adds them to the code
        object's statistics (runs finished in C report no environment)."""
        return 0, 0

    def after_fast_run(self) -> None:
        """Raise the ``RuntimeFault`` a fast run recorded, if any (or the host's own failure,
        which the node counts as ``runtime_error``, not against the code); called after each
        run whose capsule the node then finishes in Python."""
