"""Fixtures for the ``pan bench`` tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A directory for TMPDIR of a bench run; it must be empty again when the run ends."""
    d = tmp_path / "t"
    d.mkdir()
    return d
