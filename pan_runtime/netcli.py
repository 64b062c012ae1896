"""Subcommands for nodes on a real network: ``pan node``, ``pan ping``, ``pan flood``, ``pan stats``."""

from __future__ import annotations

import argparse

__all__ = ["add_subcommands"]


def add_subcommands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the network subcommands on the ``pan`` parser."""
