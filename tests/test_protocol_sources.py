"""The reference protocols under protocols/: every source builds for its runtimes, and the C
(as wasm) and Python versions behave as docs/protocols.md says, against a small fake host."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pan_runtime import pni_api, protocol_headers
from pni_spec.gen_common import camel
from pni_spec.gen_java import SCALARS, java_params
from pni_spec.generate import REPO_ROOT
from pni_spec.spec import Param

PROTOCOLS = ("forward", "ping", "flood", "portmapper")
SRC = REPO_ROOT / "protocols"
INCLUDE = REPO_ROOT / "pan_runtime" / "include"
JAVA_BINDING = REPO_ROOT / "pan_runtime" / "java" / "org" / "pan" / "pni"
#: the generated header codecs (protocols/headers.toml) the Java protocols compile with
JAVA_CODECS = REPO_ROOT / "protocols" / "java" / "pan" / "protocols"
#: the documented flags of the wasm builder (pni_spec/README.md)
ZIG_WASM = [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", "-nostdlib", "-O2",
            "-Wl,--no-entry", "-Wl,--strip-all"]
GCC_NATIVE = ["gcc", "-c", "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-fno-builtin"]

A = bytes([0xA] * 16)
B = bytes([0xB] * 16)
C = bytes([0xC] * 16)
LINK = 0x0102030405060708


# ---- builds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROTOCOLS)
def test_c_protocol_compiles_native_with_only_pni_imports(name, tmp_path: Path):
    obj = tmp_path / f"{name}.o"
    subprocess.run([*GCC_NATIVE, "-I", str(INCLUDE), "-o", str(obj), str(SRC / f"{name}.c")],
                   check=True, timeout=60)
    symbols = subprocess.run(["nm", str(obj)], check=True, capture_output=True, text=True).stdout.split("\n")
    undefined = {line.split()[-1] for line in symbols if " U " in line}
    defined = {line.split()[-1] for line in symbols if " T " in line}
    assert undefined and all(s.startswith("pni_") for s in undefined) or name == "forward", undefined
    assert "accept" in defined
    assert ("lookup" in defined) == (name == "portmapper")


@pytest.fixture(scope="module")
def wasm_modules(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("wasm")
    modules = {}
    for name in PROTOCOLS:
        target = out / f"{name}.wasm"
        subprocess.run([*ZIG_WASM, "-Wall", "-Wextra", "-Werror", "-I", str(INCLUDE), "-o", str(target),
                        str(SRC / f"{name}.c")], check=True, timeout=120)
        modules[name] = target.read_bytes()
    return modules


def test_java_protocols_compile_against_the_generated_binding(tmp_path: Path):
    javac = shutil.which("javac")
    assert javac, "javac (JDK 17) is required"
    sources = [*sorted(JAVA_BINDING.glob("*.java")), *sorted(JAVA_CODECS.glob("*.java")),
               *(SRC / "java" / f"{n.capitalize()}.java" for n in PROTOCOLS)]
    subprocess.run([javac, "--release", "17", "-Xlint:all", "-Werror", "-d", str(tmp_path),
                    *map(str, sources)], check=True, timeout=120)
    for name in PROTOCOLS:
        assert (tmp_path / f"{name.capitalize()}.class").exists()


@pytest.mark.parametrize("name", PROTOCOLS)
def test_python_protocol_compiles_under_restricted_python(name):
    restricted = pytest.importorskip("RestrictedPython")
    source = (SRC / f"{name}.py").read_text()
    result = restricted.compile_restricted_exec(source, filename=f"{name}.py")
    assert result.errors == (), result.errors
    assert "import" not in source.replace("# Runs under", "")


# ---- a fake node for behaviour -------------------------------------------------------------

class FakeHost:
    """The PniServer conventions, over bytearrays: just the calls the reference protocols use."""

    def __init__(self, me: bytes):
        self.me = me
        self.clock = 1000
        self.origin = 0
        self.segs: dict[int, bytearray] = {}
        self.state: dict[bytes, bytes] = {}
        self.sent: list[tuple[bytes, bytes]] = []

    def __getattr__(self, name: str):
        if any(name == c[0] for c in pni_api.CALLS):  # calls no reference protocol should make
            return lambda *args: pni_api.DENIED
        raise AttributeError(name)

    def begin(self, body: bytes, origin: int) -> None:
        self.segs = {1: bytearray(body)}
        self.origin = origin

    def seg_read(self, seg, offset, dst):
        s = self.segs.get(seg)
        if s is None:
            return pni_api.BAD_HANDLE
        if offset + len(dst) > len(s):
            return pni_api.OUT_OF_RANGE
        dst[:] = s[offset:offset + len(dst)]
        return len(dst)

    def seg_write(self, seg, offset, src):
        s = self.segs.get(seg)
        if s is None:
            return pni_api.BAD_HANDLE
        data = bytes(src)
        if offset + len(data) > len(s):
            return pni_api.OUT_OF_RANGE
        s[offset:offset + len(data)] = data
        return len(data)

    def seg_alloc(self, length):
        handle = max(self.segs) + 1
        self.segs[handle] = bytearray(length)
        return handle

    def env_origin_kind(self):
        return self.origin

    def env_origin_link(self):
        return LINK if self.origin == 1 else pni_api.NOT_FOUND

    def node_address(self, dst):
        dst[:] = self.me
        return pni_api.OK

    def node_now_ns(self):
        self.clock += 10
        return self.clock

    def state_get(self, key, dst):
        value = self.state.get(bytes(key))
        if value is None:
            return pni_api.NOT_FOUND
        n = min(len(dst), len(value))
        dst[:n] = value[:n]
        return len(value)

    def state_put(self, key, value, ttl_ms):
        self.state[bytes(key)] = bytes(value)
        return pni_api.OK

    def state_delete(self, key):
        return pni_api.OK if self.state.pop(bytes(key), None) is not None else pni_api.NOT_FOUND

    def send_toward(self, dest, body):
        self.sent.append((bytes(dest), bytes(self.segs[body])))
        return pni_api.OK


class PythonCode:
    """A Python protocol run with pni_api's names as globals (plain or under RestrictedPython)."""

    def __init__(self, name: str, host: FakeHost, restricted: bool):
        source = (SRC / f"{name}.py").read_text()
        names = {n: getattr(m, n) for m in (pni_api, protocol_headers) for n in m.__all__}
        if restricted:
            rp = pytest.importorskip("RestrictedPython")
            from RestrictedPython.Guards import full_write_guard, safer_getattr

            code = rp.compile_restricted_exec(source, filename=f"{name}.py").code
            glb = dict(rp.safe_globals)
            glb.update(names, _getattr_=safer_getattr, _write_=full_write_guard,
                       _getitem_=lambda ob, key: ob[key], __name__=name)
        else:
            code = compile(source, f"{name}.py", "exec")
            glb = dict(names, __name__=name)
        exec(code, glb)
        self.glb = glb
        self.host = host
        self.pni = pni_api.HostPNI(host)

    def accept(self, length: int) -> int:
        return self.glb["accept"](self.pni, 1, length)

    def lookup(self, a0: int, a1: int) -> int:
        return self.glb["lookup"](self.pni, a0, a1)


class WasmCode:
    """A C protocol compiled to wasm, its PNI imports bound to the fake host."""

    def __init__(self, module: bytes, host: FakeHost):
        wasmtime = pytest.importorskip("wasmtime")
        self.wt = wasmtime
        self.host = host
        self.store = wasmtime.Store()
        linker = wasmtime.Linker(self.store.engine)
        mod = wasmtime.Module(self.store.engine, module)
        calls = {name: (params, result) for name, params, result in pni_api.CALLS}
        for imp in mod.imports:
            assert imp.module == pni_api.WASM_MODULE, imp.module
            params, result = calls[imp.name]
            linker.define_func(imp.module, imp.name, self._functype(params, result), self._bind(imp.name, params))
        self.instance = linker.instantiate(self.store, mod)
        self.exports = self.instance.exports(self.store)
        self.memory = self.exports["memory"]

    def _functype(self, params, result):
        vt = self.wt.ValType
        args = []
        for _, ptype in params:
            if ptype in ("bytes_in", "bytes_out"):
                args += [vt.i32(), vt.i32()]
            elif ptype in ("i64", "u64", "link"):
                args.append(vt.i64())
            else:
                args.append(vt.i32())
        return self.wt.FuncType(args, [vt.i32() if result == "i32" else vt.i64()])

    def _bind(self, name, params):
        method = getattr(self.host, name)
        sizes = {"addr_in": 16, "addr_out": 16, "name_out": 32}

        def call(*raw):
            args, outs, i = [], [], 0
            for _, ptype in params:
                if ptype in ("bytes_in", "bytes_out"):
                    ptr, n = raw[i] & 0xFFFFFFFF, raw[i + 1] & 0xFFFFFFFF
                    i += 2
                else:
                    ptr, n = raw[i] & 0xFFFFFFFF, sizes.get(ptype, 0)
                    i += 1
                if ptype in ("bytes_in", "addr_in"):
                    args.append(self.memory.read(self.store, ptr, ptr + n))
                elif ptype in ("bytes_out", "addr_out", "name_out"):
                    buf = bytearray(n)
                    outs.append((ptr, buf))
                    args.append(memoryview(buf))
                else:
                    args.append(ptr if ptype in ("u32", "handle") else raw[i - 1])
            r = method(*args)
            for ptr, buf in outs:
                self.memory.write(self.store, buf, ptr)
            return r

        return call

    def accept(self, length: int) -> int:
        return self.exports["accept"](self.store, 1, length)

    def lookup(self, a0: int, a1: int) -> int:
        return self.exports["lookup"](self.store, a0, a1)


KINDS = ("python", "restricted_python", "wasm")


@pytest.fixture(params=KINDS)
def load(request, wasm_modules):
    def make(name: str, me: bytes):
        host = FakeHost(me)
        if request.param == "wasm":
            return WasmCode(wasm_modules[name], host)
        return PythonCode(name, host, restricted=request.param == "restricted_python")

    return make


def run(code, body: bytes, origin: int = 0) -> tuple[int, bytes]:
    code.host.begin(body, origin)
    verdict = code.accept(len(body))
    return verdict, bytes(code.host.segs[1])


FWD = pni_api.forward(0)


def test_forward(load):
    code = load("forward", A)
    body = protocol_headers.ForwardHdr(dest=B, port=9).pack() + b"payload"
    assert run(code, body) == (FWD, body)
    assert run(code, body, origin=1) == (FWD, body)


def test_ping_round_trip(load):
    out = protocol_headers.PingHdr(dest=B, port=5, phase=0, src=bytes(16), seq=3).pack() + bytes(8)
    sender, middle, receiver = load("ping", A), load("ping", C), load("ping", B)

    verdict, body = run(sender, out, origin=1)
    sent = protocol_headers.PingHdr.unpack(body)
    assert verdict == FWD and sent.src == A and sent.sent_ns > 0 and sent.dest == B and sent.seq == 3
    assert body[56:] == bytes(8)

    assert run(middle, body) == (FWD, body)

    verdict, back = run(receiver, body)
    bounced = protocol_headers.PingHdr.unpack(back)
    assert verdict == FWD
    assert (bounced.phase, bounced.dest, bounced.src, bounced.sent_ns) == (1, A, B, sent.sent_ns)
    assert bounced.bounced_ns > 0 and bounced.port == 5
    assert receiver.host.state[b"pinged"] == (1).to_bytes(8, "big")
    run(receiver, body)
    assert receiver.host.state[b"pinged"] == (2).to_bytes(8, "big")

    assert run(sender, back) == (FWD, back)  # phase 1 at the sender: delivered by the node
    assert run(sender, out[:40]) == (pni_api.DROP, out[:40])


def _flood(kind: int, seq: int = 0, flow: int = 7, every: int = 2, src: bytes = A, pad: int = 28) -> bytes:
    return protocol_headers.FloodHdr(dest=B, port=6, kind=kind, src=src, flow=flow, seq=seq,
                            report_every=every).pack() + bytes(pad)


def test_flood_counts_and_reports(load):
    sender, receiver = load("flood", A), load("flood", B)
    verdict, body = run(sender, _flood(1, src=bytes(16)), origin=1)
    assert verdict == FWD and protocol_headers.FloodHdr.unpack(body).src == A

    assert run(receiver, _flood(0))[0] == pni_api.DONE
    key = b"flow" + (7).to_bytes(4, "big")
    rec = receiver.host.state[key]
    assert len(rec) == 28 and rec[:12] == bytes(12) and rec[20:24] == (2).to_bytes(4, "big")

    data = _flood(1, seq=1)
    assert run(receiver, data)[0] == pni_api.DONE and receiver.host.sent == []
    assert run(receiver, _flood(1, seq=2))[0] == pni_api.DONE
    [(dest, report)] = receiver.host.sent
    r = protocol_headers.FloodHdr.unpack(report)
    assert dest == A and len(report) == protocol_headers.FloodHdr.SIZE
    assert (r.kind, r.dest, r.src, r.port, r.flow, r.seq) == (2, A, B, 6, 7, 2)
    assert (r.count, r.bytes, r.report_every) == (2, 2 * len(data), 2) and r.elapsed_ns > 0

    assert run(receiver, _flood(1, flow=9, every=1))[0] == pni_api.DONE  # no start seen: created
    assert protocol_headers.FloodHdr.unpack(receiver.host.sent[-1][1]).count == 1
    assert run(receiver, _flood(2)) == (FWD, _flood(2))
    assert run(receiver, _flood(1)[:60]) == (pni_api.DROP, _flood(1)[:60])


def test_portmapper_binds_and_looks_up(load):
    pm = load("portmapper", A)
    bind = protocol_headers.PortmapReq(port=80, op=0).pack()
    assert run(pm, bind, origin=0)[0] == pni_api.DROP
    assert pm.lookup(80, 0) == pni_api.NOT_FOUND
    assert run(pm, bind, origin=1)[0] == pni_api.DONE
    assert pm.lookup(80, 0) == LINK
    assert pm.lookup(81, 0) == pni_api.NOT_FOUND
    assert pm.lookup(-1, 0) == pni_api.NOT_FOUND
    assert run(pm, protocol_headers.PortmapReq(port=80, op=1).pack(), origin=1)[0] == pni_api.DONE
    assert pm.lookup(80, 0) == pni_api.NOT_FOUND
    assert run(pm, b"\x00", origin=1)[0] == pni_api.DROP


# ---- the Java protocols, run on a fake PNI in a JVM subprocess --------------------------------

JAVA_FAKE_CALLS = {
    "segRead": """        byte[] s = segs.get(seg);
        if (s == null) return PniStatus.BAD_HANDLE;
        if (offset + dstLen > s.length) return PniStatus.OUT_OF_RANGE;
        System.arraycopy(s, offset, dst, dstOff, dstLen);
        return dstLen;""",
    "segWrite": """        byte[] s = segs.get(seg);
        if (s == null) return PniStatus.BAD_HANDLE;
        if (offset + srcLen > s.length) return PniStatus.OUT_OF_RANGE;
        System.arraycopy(src, srcOff, s, offset, srcLen);
        return srcLen;""",
    "segAlloc": "        segs.put(segs.size() + 1, new byte[length]);\n        return segs.size();",
    "envOriginKind": "        return origin;",
    "envOriginLink": "        return origin == 1 ? 0x0102030405060708L : PniStatus.NOT_FOUND;",
    "nodeAddress": "        System.arraycopy(me, 0, dst, 0, 16);\n        return 0;",
    "nodeNowNs": "        clock += 10;\n        return clock;",
    "stateGet": """        byte[] v = state.get(new String(key, keyOff, keyLen, StandardCharsets.ISO_8859_1));
        if (v == null) return PniStatus.NOT_FOUND;
        System.arraycopy(v, 0, dst, dstOff, Math.min(dstLen, v.length));
        return v.length;""",
    "statePut": """        state.put(new String(key, keyOff, keyLen, StandardCharsets.ISO_8859_1),
                  Arrays.copyOfRange(value, valueOff, valueOff + valueLen));
        return 0;""",
    "stateDelete": """        return state.remove(new String(key, keyOff, keyLen, StandardCharsets.ISO_8859_1)) == null
            ? PniStatus.NOT_FOUND : 0;""",
    "sendToward": "        sent.add(segs.get(body));\n        return 0;",
}

JAVA_MAIN = """
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static byte[] addr(int b) {
        byte[] a = new byte[16];
        Arrays.fill(a, (byte) b);
        return a;
    }

    int run(PanCode code, byte[] body, int origin) {
        segs.clear();
        segs.put(1, body);
        this.origin = origin;
        return code.accept(this, 1, body.length);
    }

    public static void main(String[] args) {
        int fwd = Verdict.forward(0);
        FakePni a = new FakePni(addr(10)), b = new FakePni(addr(11));
        check(a.run(new Forward(), new byte[24], 0) == fwd, "forward");

        PingHdr p = new PingHdr();
        PniBytes.addrCopy(p.dest, addr(11));
        byte[] body = new byte[PingHdr.SIZE + 8];
        p.encode(body, 0);
        Ping sender = new Ping(), receiver = new Ping();
        check(a.run(sender, body, 1) == fwd, "ping out");
        p.decode(body, 0);
        check(PniBytes.addrEquals(p.src, addr(10)) && p.sentNs > 0, "ping stamped");
        check(b.run(receiver, body, 0) == fwd, "ping bounce");
        p.decode(body, 0);
        check(p.phase == 1 && PniBytes.addrEquals(p.dest, addr(10)) && PniBytes.addrEquals(p.src, addr(11))
              && p.bouncedNs > 0, "ping bounced header");
        check(PniBytes.getU64(b.state.get("pinged"), 0) == 1, "ping counter");
        check(a.run(sender, body, 0) == fwd, "ping back");
        check(a.run(sender, new byte[10], 0) == Verdict.DROP, "ping short");

        Flood flood = new Flood();
        FloodHdr f = new FloodHdr();
        PniBytes.addrCopy(f.dest, addr(11));
        PniBytes.addrCopy(f.src, addr(10));
        f.flow = 7;
        f.reportEvery = 2;
        byte[] start = new byte[FloodHdr.SIZE];
        f.encode(start, 0);
        check(b.run(flood, start, 0) == Verdict.DONE, "flood start");
        f.kind = 1;
        for (int i = 1; i <= 4; i++) {
            byte[] data = new byte[FloodHdr.SIZE + 28];
            f.seq = i;
            f.encode(data, 0);
            check(b.run(flood, data, 0) == Verdict.DONE, "flood data");
        }
        check(b.sent.size() == 2, "flood reports");
        FloodHdr r = new FloodHdr();
        r.decode(java.nio.ByteBuffer.wrap(b.sent.get(1)), 0);
        check(r.kind == 2 && r.count == 4 && r.bytes == 4L * (FloodHdr.SIZE + 28) && r.seq == 4
              && PniBytes.addrEquals(r.dest, addr(10)) && PniBytes.addrEquals(r.src, addr(11))
              && r.elapsedNs > 0, "flood report");

        Portmapper pm = new Portmapper();
        PortmapReq q = new PortmapReq();
        q.port = 80;
        byte[] req = new byte[PortmapReq.SIZE];
        q.encode(req, 0);
        check(a.run(pm, req, 0) == Verdict.DROP, "portmap from network");
        check(a.run(pm, req, 1) == Verdict.DONE, "portmap bind");
        check(pm.export(a, "lookup", 80, 0) == 0x0102030405060708L, "portmap lookup");
        check(pm.export(a, "lookup", 81, 0) == PniStatus.NOT_FOUND, "portmap unbound");
        check(pm.export(a, "nope", 80, 0) == PniStatus.NOT_FOUND, "portmap other export");
        q.op = 1;
        q.encode(req, 0);
        check(a.run(pm, req, 1) == Verdict.DONE && pm.export(a, "lookup", 80, 0) == PniStatus.NOT_FOUND,
              "portmap unbind");
        System.out.println("JAVA PROTOCOLS OK");
    }
"""


def _java_fake() -> str:
    lines = [
        "import java.nio.charset.StandardCharsets;",
        "import java.util.*;",
        "import org.pan.pni.*;",
        "import pan.protocols.*;",
        "",
        "public final class FakePni implements PNI {",
        "    final Map<Integer, byte[]> segs = new HashMap<>();",
        "    final Map<String, byte[]> state = new HashMap<>();",
        "    final List<byte[]> sent = new ArrayList<>();",
        "    final byte[] me;",
        "    int origin;",
        "    long clock = 1000;",
        "",
        "    FakePni(byte[] me) {",
        "        this.me = me;",
        "    }",
    ]
    for name, params, result in pni_api.CALLS:
        jname = camel(name)
        sig = java_params(tuple(Param(n, t) for n, t in params))
        ret = SCALARS[result]
        lines.append("")
        lines.append("    @Override")
        lines.append(f"    public {ret} {jname}({sig}) {{")
        lines.append(JAVA_FAKE_CALLS.get(jname, "        return PniStatus.DENIED;"))
        lines.append("    }")
    lines.append(JAVA_MAIN)
    lines.append("}")
    return "\n".join(lines)


def test_java_protocols_behave(tmp_path: Path):
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "a JDK 17 is required"
    fake = tmp_path / "FakePni.java"
    fake.write_text(_java_fake())
    sources = [*sorted(JAVA_BINDING.glob("*.java")), *sorted(JAVA_CODECS.glob("*.java")),
               *(SRC / "java" / f"{n.capitalize()}.java" for n in PROTOCOLS)]
    classes = tmp_path / "classes"
    subprocess.run([javac, "--release", "17", "-d", str(classes), str(fake), *map(str, sources)],
                   check=True, timeout=120)
    proc = subprocess.run([java, "-ea", "-cp", str(classes), "FakePni"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "JAVA PROTOCOLS OK" in proc.stdout


def test_ping_bodies_and_answers():
    from pan_runtime.cli.protocols import ping_body, ping_rtt_us
    from pan_runtime.protocol_headers import PingHdr

    dest = bytes(range(16))
    body = ping_body(dest, 7, 3, 200)
    assert len(body) == 200 and len(ping_body(dest, 7, 3)) == PingHdr.SIZE
    sent = PingHdr.unpack(body)
    assert (sent.dest, sent.port, sent.seq, sent.phase) == (dest, 7, 3, 0)
    answer = PingHdr(dest=dest, port=7, phase=1, seq=3, sent_ns=1_000_000).pack()
    assert ping_rtt_us(answer, 3, 1_250_000) == 250.0
    assert ping_rtt_us(answer, 4, 1_250_000) is None  # another ping's answer
    assert ping_rtt_us(body, 3, 1_250_000) is None  # still on its way out
    assert ping_rtt_us(answer[:20], 3, 1_250_000) is None  # too short to be one
