"""What code objects hold of the node's pool (``pan_runtime.node.quota``): a quota per code
object and a reserve no code object reaches, refused with ``NO_SPACE`` and counted."""

import pyfunc_runtime as pf
import pytest

from pan_runtime.data.segments import Segment
from pan_runtime.errors import ConfigError
from pan_runtime.net.application import Application
from pan_runtime.node import pni
from pan_runtime.node.node import Node, NodeConfig
from pan_runtime.node.quota import BufferQuota, CodeBuffers, Refusal
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.plugins import load_plugins

PLUGINS = load_plugins(extra=[nullrt, pf])


def _sender(name: str, statuses: list[int]):
    """Code that sends its capsule to its own node as often as the body's first byte says
    (the copies carry 0), records each send's status and answers the first failure."""

    def accept(host, env):
        n = host.seg_get_u8(env.BODY_HANDLE, 0)
        host.seg_set_u8(env.BODY_HANDLE, 0, 0)
        me = bytearray(16)
        host.node_address(memoryview(me))
        for _ in range(n):
            st = host.send_toward(me, env.BODY_HANDLE)
            statuses.append(st)
            if st < 0:
                return st
        return pni.VERDICT_DONE

    pf.FUNCS[name] = accept
    return pf.code(name)


def test_queued_sends_past_the_code_objects_quota_get_no_space():
    statuses: list[int] = []
    code = _sender("selfsend", statuses)
    with Node(1, plugins=PLUGINS, config=NodeConfig(pool_buffers=32, pool_reserve=8, code_buffers=4)) as n:
        entry = n.install(code)
        Application(n).send(code, bytes([10]))
        n.process(limit=1)  # the first capsule only: its copies wait in the queue
        assert statuses == [pni.OK] * 4 + [pni.NO_SPACE]
        assert entry.buffers.held == 4 and n.statistics()["pool"]["held_by_code"] == 4
        assert n.stats.refused == {"code_buffers": 1} and entry.stats.refused == {"code_buffers": 1}
        n.process()  # the copies are evaluated: their buffers come back
        assert entry.buffers.held == 0 and n.pool.whole
        assert entry.stats.drops["status:NO_SPACE"] == 1 and entry.stats.done == 4


def test_code_objects_together_never_take_the_reserve():
    statuses: list[int] = []
    codes = [_sender(f"selfsend{i}", statuses) for i in range(4)]
    with Node(1, plugins=PLUGINS, config=NodeConfig(pool_buffers=16, pool_reserve=6, code_buffers=4)) as n:
        entries = [n.install(c) for c in codes]
        app = Application(n)
        for c in codes:
            app.send(c, bytes([4]))
        n.process(limit=4)  # each code object's first capsule; their copies stay queued
        # the running capsule holds a buffer too: the first takes its quota, the others what
        # is left above the reserve, and the fourth still gets one (its own quota is untouched)
        assert [e.buffers.held for e in entries] == [4, 3, 1, 1]
        assert n.pool.available == 7 and sum(e.buffers.held for e in entries) <= 16 - 6
        assert n.stats.refused == {"pool_reserve": 3}
        assert [e.stats.refused["pool_reserve"] for e in entries] == [0, 1, 1, 1]
        n.process()
        assert n.pool.whole


def test_kept_segments_count_the_pool_buffers_they_hold_until_released():
    with Node(1, plugins=PLUGINS, config=NodeConfig(pool_buffers=16, pool_reserve=4, code_buffers=2)) as n:
        quota, holder = n.buffers, CodeBuffers()
        segs = [n.pool.allocate(10) for _ in range(3)]
        body = segs[0].overlay(2, 4)
        both = Segment.container(segs[1:])
        assert quota.keep(holder, body) is None and holder.held == 1  # an overlay holds its base's buffer
        assert quota.keep(holder, both) is Refusal.CODE_BUFFERS and holder.held == 1
        assert quota.keep(holder, Segment.owned(b"mine")) is None and holder.held == 1  # owned memory
        for s in (*segs, body, both):
            s.release()
        assert n.pool.available == 15 and len(holder) == 2
        holder.release_all()
        assert holder.held == 0 and n.pool.whole


def test_a_quota_and_reserve_must_fit_the_pool():
    with pytest.raises(ConfigError, match="pool_reserve"):
        NodeConfig(pool_buffers=16, pool_reserve=16)
    with pytest.raises(ConfigError, match="code_buffers"):
        NodeConfig(pool_buffers=16, pool_reserve=8, code_buffers=9)
    with pytest.raises(ConfigError, match="state_total_bytes"):
        NodeConfig(state_bytes=2 << 20, state_total_bytes=1 << 20)
    cfg = NodeConfig(pool_buffers=2048)
    assert (cfg.pool_reserve, cfg.code_buffers) == (512, 128)
    with Node(1, plugins=PLUGINS, config=NodeConfig(pool_buffers=16)) as n:
        with pytest.raises(ValueError):
            BufferQuota(n.pool, 1, 16)
