"""The node's input queue (``pan_runtime.node.queue``): bounded intake into the node's pool,
the drops it counts, requeueing a parked capsule, and the runs a batch is formed from."""

from collections import Counter

import pytest

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import Capsule, encode_header
from pan_runtime.data.segments import Segment, SegmentPool
from pan_runtime.errors import ClosedError
from pan_runtime.net.application import Application
from pan_runtime.net.network import Network
from pan_runtime.node.env import Origin
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.node.queue import CapsuleQueue
from pan_runtime.node.stats import NodeStats
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt], entry_points=False)
HOP = NodeAddress.from_int(9)
A, B = b"\xaa" * 32, b"\xbb" * 32


def wire(name: bytes, body: bytes = b"body") -> bytes:
    return encode_header(name, HOP) + body


class Rig:
    """A queue over a small pool, recording what it drops."""

    def __init__(self, limit: int = 8, buffers: int = 4, size: int = 128):
        self.pool = SegmentPool(size, buffers)
        self.stats = NodeStats()
        self.drops: Counter[str] = Counter()
        self.details: list[str] = []
        self.queue = CapsuleQueue(self.pool, limit, self.stats, self._drop)

    def _drop(self, reason: str, detail: str) -> None:
        self.drops[reason] += 1
        self.details.append(detail)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.queue.clear()
    assert r.pool.whole
    r.pool.close()


def test_a_datagram_is_copied_into_one_pool_segment(rig):
    src = bytearray(b"abcd")
    link = object()
    assert rig.queue.receive_buffers([memoryview(src)[:2], memoryview(src)[2:]], HOP, link)
    src[:] = b"zzzz"  # the queue holds its own copy
    (item,) = rig.queue
    assert bytes(item.seg.view()) == b"abcd" and item.seg.length == 4
    assert item.origin is Origin.NETWORK and item.prev_hop == HOP and item.link is link
    assert rig.pool.available == rig.pool.count - 1 and rig.stats.received == 1 and not rig.drops


def test_capsules_leave_in_arrival_order(rig):
    for i in range(3):
        rig.queue.receive_buffers([memoryview(bytes([i]))], HOP)
    assert [bytes(item.seg.view()) for item in rig.queue] == [b"\0", b"\1", b"\2"]
    assert len(rig.queue) == 3 and rig.queue


def test_a_full_queue_drops_each_kind_of_intake_and_keeps_no_segment():
    r = Rig(limit=1)
    assert r.queue.receive_buffers([memoryview(b"first")], HOP)
    seg = r.pool.allocate(3)
    assert not r.queue.receive_segment(seg, HOP)
    assert not seg.live  # its reference moved to the queue, which let it go
    assert not r.queue.receive_buffers([memoryview(b"x")], HOP)
    assert not r.queue.inject(b"y", object())  # type: ignore[arg-type]
    assert r.drops == {"queue_full": 3} and len(r.queue) == 1
    assert r.stats.received == 3 and r.stats.injected == 1
    assert r.pool.available == r.pool.count - 1
    r.queue.clear()


def test_a_datagram_larger_than_a_pool_buffer_is_too_big(rig):
    assert rig.queue.receive_buffers([memoryview(bytes(128))], HOP)
    assert not rig.queue.receive_buffers([memoryview(bytes(100)), memoryview(bytes(29))], HOP)
    assert rig.drops == {"too_big": 1} and rig.details == ["129 bytes > pool buffer 128"]
    assert len(rig.queue) == 1 and rig.pool.available == rig.pool.count - 1


def test_an_exhausted_pool_drops_datagrams(rig):
    for _ in range(rig.pool.count):
        assert rig.queue.receive_buffers([memoryview(b"x")], HOP)
    assert not rig.queue.receive_buffers([memoryview(b"x")], HOP)
    assert rig.drops == {"pool_exhausted": 1} and len(rig.queue) == rig.pool.count


def test_an_exhausted_pool_drops_injected_capsules_too(rig):
    """Counted like a datagram's, not raised into the application link that injected it."""
    for _ in range(rig.pool.count):
        assert rig.queue.inject(b"x", object())  # type: ignore[arg-type]
    assert not rig.queue.inject(b"x", object())  # type: ignore[arg-type]
    assert rig.drops == {"pool_exhausted": 1} and len(rig.queue) == rig.pool.count


def test_injected_capsules_carry_their_application_link(rig):
    app = object()
    assert rig.queue.inject(b"small", app)  # type: ignore[arg-type]
    assert rig.queue.inject(bytes(500), app)  # type: ignore[arg-type]  # larger than a pool buffer: a segment of its own
    small, large = rig.queue
    assert small.origin is Origin.APPLICATION and small.link is app and small.prev_hop is None
    assert bytes(small.seg.view()) == b"small" and large.seg.length == 500
    assert rig.pool.available == rig.pool.count - 1 and rig.stats.injected == 2


def test_requeue_puts_a_parked_capsule_first_as_it_was_queued(rig):
    link = object()
    rig.queue.receive_buffers([memoryview(wire(A))], HOP, link)
    rig.queue.receive_buffers([memoryview(wire(B))], HOP)
    first = rig.queue.items.popleft()
    cap = Capsule.parse(first.seg)
    first.seg.release()  # the capsule holds the wire now, as dispatch leaves it
    rig.queue.requeue(cap, first)
    assert cap.wire is None
    again, _ = rig.queue
    assert again.seg.live and bytes(again.seg.view()) == wire(A)
    assert (again.origin, again.link, again.prev_hop) == (Origin.NETWORK, link, HOP)


def test_a_run_is_the_capsules_of_one_code_object_behind_the_first(rig):
    for name in (A, A, A, B):
        rig.queue.receive_buffers([memoryview(wire(name))], HOP)
    items = rig.queue.items
    run = rig.queue.pop_run(items.popleft(), most=2)
    assert run is not None and [bytes(i.seg.view()) for i in run] == [wire(A)] * 2  # at most ``most``
    last_a = items.popleft()
    assert rig.queue.pop_run(last_a, most=8) is None  # the next capsule's code differs: no batch
    assert [bytes(i.seg.view()) for i in rig.queue] == [wire(B)]
    for item in [*run, last_a]:
        item.seg.release()


def test_a_capsule_shorter_than_a_header_starts_no_run(rig):
    rig.queue.receive_buffers([memoryview(b"\1" * 10)], HOP)
    rig.queue.receive_buffers([memoryview(b"\1" * 10)], HOP)
    first = rig.queue.items.popleft()
    assert rig.queue.pop_run(first, most=4) is None and len(rig.queue) == 1
    first.seg.release()


def test_clear_releases_every_waiting_segment(rig):
    for _ in range(3):
        rig.queue.receive_buffers([memoryview(b"x")], HOP)
    rig.queue.inject(bytes(500), object())  # type: ignore[arg-type]
    rig.queue.clear()
    assert not rig.queue and rig.pool.whole


# ---------------------------------------------------------------------------- through the node
def test_a_node_drops_what_exceeds_its_queue_limit_and_evaluates_the_rest():
    net = Network.line(2, plugins=PLUGINS, config=NodeConfig(queue_limit=3))
    try:
        a, _ = net.nodes
        app = Application(a)
        assert all(a.inject(b"\x05" + bytes(60), app.link) for _ in range(3))
        assert not a.inject(b"one too many", app.link)
        assert a.stats.drops["queue_full"] == 1 and len(a.queue) == 3
        assert [e.reason for e in a.events] == ["queue_full"]
        assert a.process() == 3 and not a.queue
    finally:
        net.close()


def test_a_node_refuses_injection_through_a_closed_link_or_after_closing():
    n = Node(1, plugins=PLUGINS)
    app = n.attach("app")
    app.close()
    with pytest.raises(ClosedError):
        n.inject(b"x", app)
    live = n.attach("live")
    n.close()
    with pytest.raises(ClosedError):
        n.inject(b"x", live)
    assert n.stats.injected == 0


def test_closing_a_node_releases_what_waits_in_its_queue():
    n = Node(1, plugins=PLUGINS)
    pool = n.pool
    n.receive_buffers([memoryview(b"waiting")], HOP)
    owned = Segment.owned(b"owned")
    n.receive_segment(owned, HOP)
    assert len(n.queue) == 2 and pool.available == pool.count - 1
    n.close()  # closing the pool with a buffer in use would raise
    assert not n.queue and not owned.live
