"""The lab tests' state folder: short (node application sockets live in the lab's folder, and
a socket path has 107 bytes), removed after each test; a removal that fails fails the test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from lab_helpers import ROOT


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    short = tempfile.mkdtemp(prefix="pl-", dir="/tmp")
    yield dict(os.environ, PAN_LAB_DIR=f"{short}/state", TMPDIR=short, PYTHONPATH=str(ROOT))
    shutil.rmtree(short)
