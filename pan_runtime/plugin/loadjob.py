"""A load job: the costly part of loading one code object, to run outside the node's thread.

A runtime's ``prepare`` returns one when loading would compile or check for long; the node
runs it in a child process under its ``compile_*`` limits and hands the result to the
runtime's ``adopt``, after which ``load`` is cheap. The child calls
``target(payload, settings)``: ``target`` names a module-level function
(``"package.module:function"``) that the child imports; it returns bytes, or raises
``CodeObjectError`` (with a ``FaultReason``) to refuse the code object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadJob"]


@dataclass(frozen=True)
class LoadJob:
    """What to run off the node's thread: ``target(payload, settings)``; settings are JSON."""

    target: str
    payload: bytes
    settings: Mapping[str, Any] = field(default_factory=dict)
