"""The one error of the spec package, so that ``pni_spec`` stays a leaf that imports no core."""

from __future__ import annotations

__all__ = ["SpecError"]


class SpecError(ValueError):
    """A spec file (the PNI or a header spec) is malformed; the message names the table and key."""
