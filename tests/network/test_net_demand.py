"""Demand loading against hostile sources, on a real node: UDP sockets, real runtimes, the
compiler process. A ``FakePeer`` plays the neighbour that serves code (and lies); another
receives what the node forwards.

What is asserted: a huge wasm module is refused by its shape or compiled off the node's
loop while other capsules keep flowing through it; a declared total is checked at the first
chunk and nothing a neighbour declares makes the node hold more than its limits; every
parked capsule is accounted for (run, or dropped with a reason) however its fetch ends;
a compiled module is reused after a restart and a tampered artifact is compiled again.
No assertion is about wall time: progress and counts only, timeouts are hang guards.
"""

from __future__ import annotations

import io
import struct
import subprocess
import tracemalloc
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime
from nethelpers import (
    FakePeer,
    chunks_of,
    daemon_from,
    free_udp_ports,
    pump,
    remove_tree,
    requests_from,
    short_dir,
)

from pan_jvm.jvm import find_javac
from pan_jvm.runtime import INLINE_CHECK_BYTES
from pan_restricted_py.runtime import INLINE_COMPILE_BYTES
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.keys import generate_keypair, load_private_key
from pan_runtime.net.application import Application, capsule_bytes
from pan_runtime.net.daemon import NodeDaemon
from pan_runtime.net.demand import DemandLoader, encode_chunk
from pan_runtime.net.network import Network
from pan_runtime.node import pni
from pan_runtime.plugin import nullrt
from pan_runtime.plugin.hookspecs import hookimpl
from pan_runtime.plugin.nullrt import null_code
from pan_runtime.plugin.plugins import load_plugins
from pan_runtime.plugin.runtime import Isolation, LoadedCode, Runtime
from pan_runtime.testing.wasmgen import many_functions, nested_blocks

PORT = 7


class Bed:
    """One node (a daemon on UDP) between two fake neighbours: ``src`` serves code, ``dst`` sinks."""

    def __init__(self, folder: Path, extra: str = ""):
        self.folder = folder
        self.port, src_port, dst_port = free_udp_ports(3)
        self.src, self.dst = FakePeer(src_port), FakePeer(dst_port)
        self.d = self._start(extra)

    def _start(self, extra: str) -> NodeDaemon:
        cfg = self.folder / "n.toml"
        cfg.write_text(
            f'[node]\nlisten = ["127.0.0.1:{self.port}"]\n'
            f'[[neighbors]]\naddress = "{self.src.address}"\n'
            f'[[neighbors]]\naddress = "{self.dst.address}"\n' + extra
        )
        return daemon_from(cfg)

    def restart(self, extra: str = "") -> None:
        """Stop the node and start it again on the same port (and code directory, if any)."""
        self.d.close()
        self.d = self._start(extra)

    def send_capsules(self, code: CodeObject | bytes, n: int) -> None:
        for i in range(n):
            self.src.send(capsule_bytes(code, b"capsule %d" % i, self.src.address), self.port)

    def first_request(self) -> tuple[bytes, list[int], int]:
        reqs: list = []
        assert pump([self.d], lambda: bool(reqs.extend(requests_from(self.src)) or reqs)), "the node never asked"
        return reqs[0]

    def serve(self, code: CodeObject, size: int) -> int:
        """Send every chunk of ``code`` (paced so no datagram is lost); returns how many."""
        chunks = chunks_of(code.to_pco(), code.name, self.src.address, self.d.node.address, size)
        for i, c in enumerate(chunks):
            self.src.send(c, self.port)
            if i % 16 == 15:
                pump([self.d], lambda: False, timeout=0.005)
        return len(chunks)

    def ping(self, fwd: CodeObject, i: int) -> bool:
        """One capsule of ``fwd`` from src through the node to dst; whether it arrived."""
        body = self.dst.address.raw + struct.pack(">HH", PORT, 0) + b"ping %d" % i
        self.src.send(capsule_bytes(fwd, body, self.src.address), self.port)
        got: list[bytes] = []
        return pump([self.d], lambda: bool(got.extend(self.dst.recv_all()) or got), timeout=10)

    def close(self) -> None:
        self.d.close()
        self.src.close()
        self.dst.close()

    @property
    def drops(self):
        return self.d.node.stats.drops


@pytest.fixture
def folder() -> Iterator[Path]:
    d = short_dir()
    yield d
    remove_tree(d)


def wasm(payload: bytes, label: str) -> CodeObject:
    return CodeObject.create("wasm", payload, meta={"label": label})


# ---------------------------------------------------------------------- a huge module
def test_a_module_of_200000_functions_is_refused_by_its_function_count_before_anything_compiles(folder):
    bed = Bed(folder)
    try:
        code = wasm(many_functions(200_000), "huge")
        assert len(code.payload) > 1_000_000
        bed.send_capsules(code, 2)
        _, _, size = bed.first_request()
        bed.serve(code, size)
        assert pump([bed.d], lambda: bed.drops["too_many_functions"] == 2, timeout=60), bed.drops
        assert code.name not in bed.d.node.cache and not bed.d.demand.fetches
        assert bed.d.demand.compiler.counters["started"] == 0  # refused from the section headers
        assert bed.d.node.pool.available == bed.d.node.pool.count
    finally:
        bed.close()


def test_capsules_of_other_code_keep_flowing_through_the_node_while_a_huge_module_compiles(folder):
    # limits raised so the module is accepted for compiling; the compile outlives the test
    bed = Bed(folder, "[limits]\ncode_functions = 300000\ncompile_time_ms = 600000\ncompile_memory = 4294967296\n")
    try:
        fwd = null_code("forward")
        bed.d.node.install(fwd)
        assert bed.ping(fwd, -1)
        code = wasm(many_functions(200_000), "huge")
        bed.send_capsules(code, 1)
        _, _, size = bed.first_request()
        n = bed.serve(code, size)
        assert pump([bed.d], lambda: bed.d.demand.counters["chunks_received"] == n, timeout=60)
        for i in range(20):
            assert bed.ping(fwd, i), f"ping {i} was not forwarded"
            # the load is still pending: fetched, not installed, its capsule parked
            assert code.name in bed.d.demand.fetches and code.name not in bed.d.node.cache
            assert bed.d.demand.parked_total == 1
        assert bed.d.demand.compiler.running == 1
        assert bed.d.node.cache.peek(fwd.name).stats.forwarded == 21
    finally:
        bed.close()
    assert bed.drops["node_closed"] == 1  # the parked capsule, when the node stopped


# ---------------------------------------------------------------------- what a neighbour declares
def test_a_lying_total_fails_the_fetch_at_its_first_chunk_and_nothing_of_it_is_kept(folder):
    bed = Bed(folder)
    try:
        name = b"\x5a" * 32
        bed.send_capsules(name, 3)
        _, _, size = bed.first_request()
        count = 0xFFFF  # the most chunks the protocol can number: a total of ~600 MB
        total = count * size
        junk = bytes(size)
        me, src = bed.d.node.address, bed.src.address
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            bed.src.send(encode_chunk(name, src, me, 0, count, total, junk), bed.port)
            assert pump([bed.d], lambda: bed.drops["code_too_big"] == 3)
            assert not bed.d.demand.fetches and bed.d.demand.parked_total == 0
            for start in range(1, 2001, 50):  # the rest of the lie: about 18 MB more
                for i in range(start, start + 50):
                    bed.src.send(encode_chunk(name, src, me, i, count, total, junk), bed.port)
                pump([bed.d], lambda: False, timeout=0.005)
            pump([bed.d], lambda: not bed.d.node.queue and bed.drops["system_unexpected"] >= 1500, timeout=10)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 2 << 20, f"the node kept {grown} bytes of a lie"
        assert bed.d.demand.inflight == 0
        assert bed.d.node.pool.available == bed.d.node.pool.count
    finally:
        bed.close()


def test_bytes_held_by_all_fetches_together_are_capped(folder):
    # code objects of ~12 KB (16 KiB at most), 30 KB in flight at most: two fetches fit, a third waits
    bed = Bed(folder, "[limits]\ncode_bytes = 16384\n[demand]\ninflight_bytes = 30000\nchunk_size = 1024\nretry_ms = 50\n")
    try:
        codes = [wasm(many_functions(1, body_ops=4000 + i), f"c{i}") for i in range(3)]
        assert all(12_000 < len(c.to_pco()) < 16384 for c in codes)
        for c in codes:
            bed.send_capsules(c, 1)
        reqs: list = []
        assert pump([bed.d], lambda: bool(reqs.extend(requests_from(bed.src)) or len(reqs) >= 3))
        # the first chunk of each: two reserve their totals, the third finds no room
        for c in codes:
            bed.src.send(chunks_of(c.to_pco(), c.name, bed.src.address, bed.d.node.address, 1024)[0], bed.port)
        assert pump([bed.d], lambda: bed.drops["demand_inflight_full"] == 1)
        assert bed.d.demand.inflight == sum(len(c.to_pco()) for c in codes[:2]) <= 30000
        # once the first two are in, the third is asked again and comes in too
        for c in codes[:2]:
            bed.serve(c, 1024)
        assert pump([bed.d], lambda: all(c.name in bed.d.node.cache for c in codes[:2]), timeout=60)
        assert bed.d.demand.inflight == 0
        reqs.clear()
        assert pump([bed.d], lambda: any(r[0] == codes[2].name for r in (reqs.extend(requests_from(bed.src)) or reqs)))
        for _ in range(6):  # served again if a loaded machine let the fetch time out and ask anew
            bed.serve(codes[2], 1024)
            if pump([bed.d], lambda: codes[2].name in bed.d.node.cache, timeout=20):
                break
        assert codes[2].name in bed.d.node.cache, bed.d.demand.counters
        assert bed.d.demand.counters["inflight_full"] == 1 and bed.d.demand.inflight == 0
    finally:
        bed.close()


def test_repeated_chunks_are_counted_not_kept_and_a_bad_header_is_refused_at_chunk_0(folder):
    bed = Bed(folder, "[demand]\nchunk_size = 512\n")
    try:
        code = wasm(many_functions(200), "dup")
        bed.send_capsules(code, 1)
        _, _, size = bed.first_request()
        chunks = chunks_of(code.to_pco(), code.name, bed.src.address, bed.d.node.address, size)
        for _ in range(100):
            bed.src.send(chunks[1], bed.port)
        assert pump([bed.d], lambda: bed.d.demand.counters["chunks_duplicate"] == 99)
        f = bed.d.demand.fetches[code.name]
        assert list(f.chunks) == [1] and bed.d.demand.counters["chunks_received"] == 1
        # a chunk 0 that is not a code object's start: everything from that source is discarded
        pco = code.to_pco()
        forged = encode_chunk(code.name, bed.src.address, bed.d.node.address, 0, len(chunks), len(pco), b"NOTPCO" + pco[6:size])
        requests_from(bed.src)
        bed.src.send(forged, bed.port)
        assert pump([bed.d], lambda: bed.drops["system_bad_chunk"] == 1)
        assert not f.chunks and bed.d.demand.inflight == 0
        again: list = []
        assert pump([bed.d], lambda: bool(again.extend(requests_from(bed.src)) or again))
        assert again[0][1] == []  # asked for everything again
        bed.serve(code, size)
        assert pump([bed.d], lambda: code.name in bed.d.node.cache, timeout=60)
    finally:
        bed.close()


# ---------------------------------------------------------------------- parked capsules, whatever happens
@dataclass(frozen=True)
class Ending:
    """One way a fetch ends: the code asked for, node limits, how the source answers, the reason."""

    code: CodeObject
    extra: str
    answer: str  # "all" chunks, a "lie" about the total, or "none"
    reason: str


ENDINGS = {
    "total_over_the_size_limit": Ending(wasm(many_functions(10), "lie"), "", "lie", "code_too_big"),
    "refused_by_its_headers": Ending(wasm(many_functions(50), "wide"), "[limits]\ncode_functions = 10\n", "all", "too_many_functions"),
    "refused_in_the_compiler_process": Ending(wasm(nested_blocks(100), "deep"), "[limits]\ncode_nesting = 16\n", "all", "too_deep"),
    "compile_out_of_time": Ending(wasm(many_functions(10), "slow"), "[limits]\ncompile_time_ms = 1\n", "all", "compile_timeout"),
    "compile_out_of_memory": Ending(
        wasm(many_functions(60_000), "fat"),
        f"[limits]\ncode_functions = 100000\ncompile_memory = {256 << 20}\ncompile_time_ms = 120000\n",
        "all",
        "compile_memory",
    ),
    "node_closed_while_fetching": Ending(wasm(many_functions(10), "unanswered"), "", "none", "node_closed"),
    "node_closed_while_compiling": Ending(
        wasm(many_functions(100_000), "long"),
        "[limits]\ncode_functions = 200000\ncompile_time_ms = 600000\ncompile_memory = 4294967296\n",
        "all",
        "node_closed",
    ),
}


@pytest.mark.parametrize("ending", list(ENDINGS.values()), ids=list(ENDINGS))
def test_every_parked_capsule_is_dropped_with_the_reason_its_fetch_ended(folder, ending: Ending):
    bed = Bed(folder, ending.extra)
    closed = False
    try:
        code = ending.code
        bed.send_capsules(code, 3)
        _, _, size = bed.first_request()
        # the node may ask after reading the first capsule, before it read the others
        assert pump([bed.d], lambda: bed.d.demand.parked_total == 3), bed.d.demand.parked_total
        if ending.answer == "all":
            bed.serve(code, size)
        elif ending.answer == "lie":
            bed.src.send(encode_chunk(code.name, bed.src.address, bed.d.node.address, 0, 0xFFFF, 0xFFFF * size, bytes(size)), bed.port)
        if ending.reason == "node_closed":
            if ending.answer == "all":  # close while the compiler runs
                assert pump([bed.d], lambda: bed.d.demand.compiler.running == 1, timeout=60)
            pool = bed.d.node.pool
            bed.close()
            closed = True
            assert pool.available == pool.count
        else:
            assert pump([bed.d], lambda: bed.drops[ending.reason] == 3, timeout=120), (bed.drops, bed.d.demand.info())
            assert bed.d.node.pool.available == bed.d.node.pool.count
        assert bed.drops[ending.reason] == 3, bed.drops
        assert bed.d.demand.parked_total == 0 and bed.d.demand.inflight == 0
        assert not bed.d.demand.compiler.busy
        assert code.name not in bed.d.node.cache
    finally:
        if not closed:
            bed.close()


# ---------------------------------------------------------------------- compiled once
def test_a_compiled_module_is_reused_after_a_restart_and_a_tampered_one_is_compiled_again(folder):
    cache = folder / "cache"
    bed = Bed(folder, f'[cache]\ndir = "{cache}"\n')
    try:
        code = wasm(many_functions(300), "kept")
        bed.send_capsules(code, 1)
        _, _, size = bed.first_request()
        bed.serve(code, size)
        assert pump([bed.d], lambda: code.name in bed.d.node.cache, timeout=60)
        assert bed.d.demand.compiler.counters["compiled"] == 1  # compiled in the compiler process
        (artifact,) = cache.glob(f"{code.hex_name}-*.cwasm")

        bed.restart(f'[cache]\ndir = "{cache}"\n')  # reloads the code directory
        assert code.name in bed.d.node.cache
        rt = bed.d.node.runtime("wasm")
        assert rt.cache.stats.disk_hits == 1 and rt.cache.stats.compiled == 0
        assert bed.d.demand.compiler.counters["started"] == 0

        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0x55  # one bit pattern in the machine code
        artifact.write_bytes(bytes(data))
        bed.restart(f'[cache]\ndir = "{cache}"\n')
        assert code.name in bed.d.node.cache
        rt = bed.d.node.runtime("wasm")
        assert rt.cache.stats.disk_errors == 1 and rt.cache.stats.disk_hits == 0 and rt.cache.stats.compiled == 1
        assert artifact.read_bytes() != bytes(data)  # replaced by a good one
    finally:
        bed.close()


class _Forward(LoadedCode):
    def accept(self, env) -> int:  # type: ignore[no-untyped-def]
        return pni.VERDICT_FORWARD  # to the address at body offset 0


class _DiskFillsUp(Runtime):
    """Loads its first code object; every later load fails with the host's error (not a
    refusal of the code): the disk filled up."""

    name = "diskfillsup"
    isolation = Isolation.SANDBOXED
    loads = 0

    def load(self, code, deps, host):  # type: ignore[no-untyped-def]
        _DiskFillsUp.loads += 1
        if _DiskFillsUp.loads > 1:
            raise OSError(28, "No space left on device")
        return _Forward(code, host)


class _DiskFillsUpPlugin:
    @hookimpl
    def pan_register_runtimes(self, registry) -> None:  # type: ignore[no-untyped-def]
        registry.add(_DiskFillsUp)


def test_parked_capsules_are_dropped_as_install_error_when_installing_raises():
    _DiskFillsUp.loads = 0
    with Network.line(2, plugins=load_plugins(extra=[nullrt, _DiskFillsUpPlugin()])) as net:
        a, b = net.nodes
        code = CodeObject.create("diskfillsup", b"x", meta={"label": "diskfillsup"})
        a.install(code)  # a runs it and serves it; b's install of it raises
        loader = DemandLoader(b)
        DemandLoader(a)
        app = Application(a)
        for i in range(3):
            app.send(code, b.address.raw + bytes([0, PORT, 0, 0, i]))
        net.run()
        assert a.cache.peek(code.name).stats.forwarded == 3
        assert b.stats.drops["install_error"] == 3 and "system_error" not in b.stats.drops
        assert code.name not in b.cache
        assert loader.parked_total == 0 and loader.counters["parked"] == 3
        assert b.pool.available == b.pool.count


def test_an_in_process_network_waits_for_a_compile_and_then_runs_the_parked_capsules():
    with Network.line(3) as net:
        a, b, c = net.nodes
        forward = '(module (memory (export "memory") 1) (func (export "accept") (param i32 i32) (result i32) i32.const 2))'
        fwd = wasm(bytes(wasmtime.wat2wasm(forward)), "wasm-forward")  # FORWARD(0): to the address the body starts with
        a.install(fwd)
        loaders = [DemandLoader(n) for n in net.nodes]
        app = Application(a)
        for i in range(3):
            app.send(fwd, c.address.raw + bytes([0, PORT, 0, 0, i]))
        net.run()
        # b and c each fetched it, compiled it in their compiler process, then ran the capsules
        assert [ld.compiler.counters["compiled"] for ld in loaders] == [0, 1, 1]
        assert b.cache.peek(fwd.name).stats.forwarded == 3
        assert c.cache.peek(fwd.name).stats.capsules_in == 3
        assert all(ld.parked_total == 0 for ld in loaders)


def _padded_jar(code: CodeObject, folder: Path) -> CodeObject:
    """The same classes plus one whose ~80 KB of constants (deflated to ~1 KB) put the jar's
    inflated classes over what the node checks on its own thread."""
    strings = ", ".join(f'"{chr(97 + i) * 8000}"' for i in range(10))
    (folder / "Filler.java").write_text(f"package filler;\npublic class Filler {{ public static final String[] S = {{{strings}}}; }}\n")
    javac = find_javac()
    assert javac is not None, "the jvm runtime is available, so javac is"
    subprocess.run([javac, "--release", "17", "-d", str(folder / "classes"), str(folder / "Filler.java")], check=True)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(code.payload)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("filler/Filler.class", (folder / "classes" / "filler" / "Filler.class").read_bytes())
    m = code.manifest
    padded = CodeObject.create("jvm", out.getvalue(), entry=m.entry, exports=list(m.exports), meta={**m.meta, "label": "padded"})
    assert len(padded.payload) < INLINE_CHECK_BYTES
    return padded


@pytest.mark.parametrize("runtime", ["native", "wasm", "jvm", "restricted_py"])
def test_fetched_code_is_prepared_in_the_compiler_process_where_its_runtime_has_costly_work(folder, runtime):
    """wasm compiles there; jvm checks a jar whose classes inflate over 64 KiB there;
    restricted_py compiles a source over 8 KiB there; native objects are linked in the node
    (linking maps them into it)."""
    priv, pub = generate_keypair(folder / "site")
    bed = Bed(folder, f'[trust]\ntrusted_keys = ["{pub}"]\n')
    try:
        code = reference_code(runtime, "forward")
        if runtime == "jvm":
            code = _padded_jar(code, folder)
        elif runtime == "restricted_py":
            m = code.manifest
            padded = code.payload + b"# " + b"padding " * INLINE_COMPILE_BYTES + b"\n"
            code = CodeObject.create("restricted_py", padded, entry=m.entry, meta={**m.meta, "label": "padded"})
        code = code.signed(load_private_key(priv))
        for i in range(3):
            body = bed.dst.address.raw + struct.pack(">HH", PORT, 0) + b"fetched %d" % i
            bed.src.send(capsule_bytes(code, body, bed.src.address), bed.port)
        _, _, size = bed.first_request()
        bed.serve(code, size)
        got: list[bytes] = []
        assert pump([bed.d], lambda: bool(got.extend(bed.dst.recv_all()) or len(got) >= 3), timeout=60), (bed.drops, bed.d.demand.info())
        assert sorted(g[-9:] for g in got) == [b"fetched %d" % i for i in range(3)]
        expected = 0 if runtime == "native" else 1
        assert bed.d.demand.compiler.counters["compiled"] == expected
        assert bed.d.demand.compiler.counters["started"] == expected
    finally:
        bed.close()
