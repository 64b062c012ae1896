"""What a node reports happened, as small past-tense records (for logs, tests and tools)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "CapsuleDropped", "CodeLoaded", "CodeUnloaded", "CodeQuarantined", "CapsuleDelivered", "NeighbourThrottled"]


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class CapsuleDropped(Event):
    reason: str
    code: str = ""  # hex name of the code object, if known
    detail: str = ""


@dataclass(frozen=True)
class CapsuleDelivered(Event):
    code: str
    port: int
    size: int


@dataclass(frozen=True)
class CodeLoaded(Event):
    code: str
    runtime: str
    origin: str


@dataclass(frozen=True)
class CodeUnloaded(Event):
    code: str
    reason: str


@dataclass(frozen=True)
class CodeQuarantined(Event):
    code: str
    faults: int
    until_ns: int


@dataclass(frozen=True)
class NeighbourThrottled(Event):
    """A neighbour's capsules kept using up their budget: its capsules are dropped until ``until_ns``."""

    neighbour: str
    throttles: int
    until_ns: int
