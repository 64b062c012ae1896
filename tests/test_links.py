"""Links (``pan_runtime.node.links``): in-process netlinks with loss and delay, the scheduler
that delays them, and application links that die with their application."""

import random

import pytest

from pan_runtime.errors import ClosedError, LinkError
from pan_runtime.net.network import ManualClock
from pan_runtime.node.links import Delivery, InprocLink, Scheduler
from pan_runtime.node.node import Node
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt], entry_points=False)


@pytest.fixture
def pair():
    clock = ManualClock()
    with Node(1, plugins=PLUGINS, clock=clock) as a, Node(2, plugins=PLUGINS, clock=clock) as b:
        yield clock, a, b


def test_a_link_hands_the_datagram_to_the_other_node(pair):
    _, a, b = pair
    link = InprocLink(a, b)
    assert link.send([memoryview(b"ab"), memoryview(b"cd")], b.address)
    (queued,) = b.queue
    assert b.stats.received == 1 and link.sent == 1
    assert bytes(queued.seg.view()) == b"abcd" and queued.prev_hop == a.address


def test_a_lossy_link_loses_what_its_random_source_says(pair):
    _, a, b = pair
    link = InprocLink(a, b, loss=0.5, rng=random.Random(1))
    sent = [link.send([memoryview(b"x")], b.address) for _ in range(40)]
    assert link.lost == sent.count(False) and 0 < link.lost < 40
    assert len(b.queue) == sent.count(True)


def test_a_delayed_link_arrives_when_the_scheduler_is_due(pair):
    clock, a, b = pair
    sched = Scheduler()
    link = InprocLink(a, b, delay_ns=1000, scheduler=sched)
    assert link.send([memoryview(b"late")], b.address) and not b.queue
    assert sched.next_time() == clock() + 1000 and sched.due(clock() + 999) == 0
    assert sched.due(clock() + 1000) == 1 and len(b.queue) == 1 and len(sched) == 0


def test_bad_link_parameters_are_refused(pair):
    _, a, b = pair
    with pytest.raises(LinkError, match="loss rate"):
        InprocLink(a, b, loss=1.0)
    with pytest.raises(LinkError, match="scheduler"):
        InprocLink(a, b, delay_ns=5)


def test_an_application_link_queues_or_sinks_deliveries_until_closed(pair):
    _, a, _ = pair
    got = []
    sunk = a.attach("sink", got.append)
    queued = a.attach("queue")
    d = Delivery(7, b"data", b"\x01" * 32)
    assert sunk.deliver(d) and queued.deliver(d)
    assert got == [d] and list(queued.inbox) == [d] and queued.delivered == 1
    queued.close()
    assert not queued.deliver(d) and queued not in a.services.apps
    with pytest.raises(ClosedError, match="queue"):
        queued.check_open()
