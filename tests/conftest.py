"""Shared fixtures for pan's tests."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None)
# the harness's long fuzzing run: HYPOTHESIS_PROFILE=long python -m pytest -m fuzz
settings.register_profile(
    "long", max_examples=50_000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def pool():
    from pan_runtime.data.segments import SegmentPool

    p = SegmentPool(256, 64)
    yield p
    assert p.whole, f"{p.count - p.available} pool buffers leaked"
    p.close()


pytest_plugins = ["refuse_skips"]
