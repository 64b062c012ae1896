"""The one error of the spec package, so that ``pni_spec`` stays a leaf that imports no core."""

from __future__ import annotations

__all__ = ["SpecError"]


class SpecError(ValueError):
    """A spec file (the PNI or a header spec) is malformed; the message names the table and key.

    ``key`` is the path of the offending key (``("struct", 0, "fields", 1, "type")``) where the
    checker knows it, so that a loader can add the file and line (``pni_spec.toml_lines``).
    """

    def __init__(self, message: str, key: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
