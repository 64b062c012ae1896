"""The capacity search (``pan_runtime.bench.search``) against model middles whose capacity is
known: it brackets the capacity, reports the offered rate of the highest passing trial, and
says when the top of the range or the generator was the limit."""

from __future__ import annotations

import pytest

from pan_runtime.bench.search import Probe, find_capacity


def _middle(capacity: float, generator: float = float("inf"), seconds: float = 1.0):
    """A trial against a middle that forwards up to ``capacity`` per second, fed by a
    generator that offers at most ``generator`` per second."""
    tried: list[float] = []

    def trial(rate: float) -> Probe:
        tried.append(rate)
        offered = min(rate, generator)
        sent = int(offered * seconds)
        return Probe(rate, sent, min(sent, int(capacity * seconds)), seconds)

    return trial, tried


@pytest.mark.parametrize("capacity", [850.0, 12_345.0, 97_000.0, 480_000.0])
def test_the_search_finds_the_capacity_within_its_resolution(capacity):
    trial, tried = _middle(capacity)
    s = find_capacity(trial, top=1_000_000, threshold=0.001, steps=12, resolution=0.02)
    assert not s.ceiling and not s.generator_limited
    assert capacity * 0.95 <= s.capacity <= capacity * 1.001
    assert len(tried) <= 12 and tried[0] == 1_000_000
    assert all(p.loss <= 0.001 for p in s.probes if p.offered <= s.capacity)
    assert s.best is not None and s.best.loss <= 0.001


def test_a_middle_faster_than_the_top_is_reported_at_the_top():
    trial, tried = _middle(2_000_000)
    s = find_capacity(trial, top=500_000, threshold=0.001, steps=8)
    assert s.ceiling and s.capacity == 500_000 and tried == [500_000]


def test_a_generator_short_of_its_target_is_named_and_its_offered_rate_is_kept():
    trial, _ = _middle(2_000_000, generator=70_000)
    s = find_capacity(trial, top=1_000_000, threshold=0.001, steps=8)
    assert s.ceiling and s.generator_limited and s.capacity == 70_000


def test_the_loss_threshold_is_what_a_trial_may_lose():
    # a middle that loses 0.5 % of everything: passes at a 1 % threshold, never at 0.1 %
    def lossy(rate: float) -> Probe:
        return Probe(rate, int(rate), int(rate * 0.995), 1.0)

    assert find_capacity(lossy, top=100_000, threshold=0.01, steps=4).capacity == pytest.approx(100_000, rel=1e-3)
    s = find_capacity(lossy, top=100_000, threshold=0.001, steps=6)
    assert s.best is None and s.capacity == 0.0 and len(s.probes) <= 6


def test_the_search_stops_after_its_steps():
    trial, tried = _middle(33_333)
    s = find_capacity(trial, top=1_000_000, threshold=0.0, steps=3)
    assert len(tried) == 3 and len(s.probes) == 3


def test_nonsense_settings_are_refused():
    trial, _ = _middle(1000)
    with pytest.raises(ValueError):
        find_capacity(trial, top=50, threshold=0.001, steps=3)
    with pytest.raises(ValueError):
        find_capacity(trial, top=5000, threshold=1.5, steps=3)
