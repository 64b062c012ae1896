"""The reference protocols (protocols/*.c) built by the wasm builder and run by the runtime."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from wasm_helpers import BUDGET, HERE, HOME, PREV, make_env

from pan_runtime.node.env import Origin
from pan_runtime.node.pni import NOT_FOUND
from pan_runtime.plugin.builders import BuildRequest
from pan_wasm.builder import WasmBuilder

PROTOCOLS = Path(__file__).resolve().parents[3] / "protocols"
FORWARD = 2
DONE = 1
DROP = 0
PING = struct.Struct(">16sHBB16sIQQ")
FLOOD = struct.Struct(">16sHBB16sIIIIQQ")


@pytest.fixture(scope="module")
def built():
    builder = WasmBuilder()
    out = {}
    for name in ("forward", "ping", "flood", "portmapper"):
        exports = ["lookup"] if name == "portmapper" else []
        out[name] = builder.build(
            BuildRequest([PROTOCOLS / f"{name}.c"], "wasm", exports=exports, label=name)
        )
    return out


def _run(loaded, host, body, origin=Origin.NETWORK, link=None):
    env = make_env(loaded.code, body, BUDGET, origin)
    env.origin_link = link
    host.current = env
    verdict = loaded.accept(env)
    return verdict, env.body.tobytes()


def test_builds_carry_only_pni_imports_and_the_right_entries(built, runtime, host):
    for code in built.values():
        assert code.manifest.entry == {"accept": "accept"}
        assert code.manifest.meta["tool"] == "cc"
        runtime.load(code, [], host)  # the loader refuses anything but PNI imports
    assert built["portmapper"].manifest.exports == ("lookup",)


@pytest.mark.parametrize("size", [20, 1500, 8192])
def test_forward_returns_forward_zero_without_reading_the_body(built, runtime, node, size):
    from pan_runtime.node.pni import PniServer

    class NoCalls(PniServer):
        def __getattribute__(self, name):
            if name.startswith("seg_"):
                raise AssertionError(f"forward called {name}")
            return super().__getattribute__(name)

    host = NoCalls(node)
    loaded = runtime.load(built["forward"], [], host)
    body = HERE.raw + bytes((i * 7 + 3) & 0xFF for i in range(size - 16))
    assert _run(loaded, host, body)[0] == FORWARD
    assert body[16:] not in bytes(loaded.mem.view)  # the body never entered linear memory


def test_ping_round(built, runtime, host, node):
    ping = runtime.load(built["ping"], [], host)
    # injected by an application at the sender
    out = PING.pack(PREV.raw, 7, 0, 0, bytes(16), 1, 0, 0) + bytes(8)
    verdict, body = _run(ping, host, out, Origin.APPLICATION, link=object())
    dest, port, phase, _f, src, seq, sent, bounced = PING.unpack_from(body)
    assert verdict == FORWARD and src == HERE.raw and sent > 0 and phase == 0
    # passing through a node that is not the destination
    assert _run(ping, host, PING.pack(PREV.raw, 7, 0, 0, HOME.raw, 1, 5, 0))[0] == FORWARD
    # at the destination: counted, bounced
    verdict, body = _run(ping, host, PING.pack(HERE.raw, 7, 0, 0, HOME.raw, 1, 5, 0))
    dest, port, phase, _f, src, seq, sent, bounced = PING.unpack_from(body)
    assert verdict == FORWARD and phase == 1 and dest == HOME.raw and src == HERE.raw and bounced > 0
    assert node.states[ping.code.name].get(b"pinged") == (1).to_bytes(8, "big")
    _run(ping, host, PING.pack(HERE.raw, 7, 0, 0, HOME.raw, 2, 5, 0))
    assert node.states[ping.code.name].get(b"pinged") == (2).to_bytes(8, "big")
    # too short
    assert _run(ping, host, bytes(20))[0] == DROP


def test_flood_counts_and_reports(built, runtime, host, node):
    flood = runtime.load(built["flood"], [], host)
    start = FLOOD.pack(HERE.raw, 9, 0, 0, HOME.raw, 42, 0, 0, 2, 0, 0)
    assert _run(flood, host, start)[0] == DONE
    data = FLOOD.pack(HERE.raw, 9, 1, 0, HOME.raw, 42, 1, 0, 2, 0, 0) + bytes(32)
    assert _run(flood, host, data)[0] == DONE
    assert node.sent == []
    assert _run(flood, host, data)[0] == DONE
    assert len(node.sent) == 1
    kind, dest, report = node.sent[0]
    fields = FLOOD.unpack_from(report)
    assert dest == HOME and fields[2] == 2 and fields[7] == 2 and fields[9] == 2 * len(data)
    assert _run(flood, host, FLOOD.pack(PREV.raw, 9, 1, 0, HOME.raw, 1, 1, 0, 2, 0, 0))[0] == FORWARD


def test_portmapper_binds_and_exports_lookup(built, runtime, host):
    pm = runtime.load(built["portmapper"], [], host)
    assert pm.call_export("lookup", 80, 0) == NOT_FOUND
    assert _run(pm, host, struct.pack(">HBB", 80, 0, 0))[0] == DROP  # network origin may not bind
    assert _run(pm, host, struct.pack(">HBB", 80, 0, 0), Origin.APPLICATION, link=object())[0] == DONE
    assert pm.call_export("lookup", 80, 0) == 0x1234
    assert _run(pm, host, struct.pack(">HBB", 80, 1, 0), Origin.APPLICATION, link=object())[0] == DONE
    assert pm.call_export("lookup", 80, 0) == NOT_FOUND
