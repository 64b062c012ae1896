"""Shared fixtures for pan's tests."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci")


@pytest.fixture
def pool():
    from pan_runtime.data.segments import SegmentPool

    p = SegmentPool(256, 64)
    yield p
    assert p.whole, f"{p.count - p.available} pool buffers leaked"
    p.close()


pytest_plugins = ["refuse_skips"]
