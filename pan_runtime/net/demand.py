"""Demand loading: fetch the code a capsule names when the node does not have it.

A capsule whose code is missing is parked (bounded per code object and in total) while the
node asks the previous hop, then the capsule's home node, for the code object, using the
system protocol of ``pni_spec/system-protocol.md`` (capsules with the system flag). The
answer travels in numbered chunks that fit a datagram; a retry asks only for the chunks
still missing, with exponential backoff, until a deadline. The reassembled object must
hash to the name asked for, or it is discarded and counted; then it is installed under the
trust policy with network origin, and the parked capsules run in arrival order. At the
deadline, or when the code is refused, they are dropped with a reason.

Nothing a neighbour declares decides what the node holds: a declared total above the code
size limit (``limits.code_bytes``) fails the fetch at its first chunk; the bytes of all
fetches together are capped (``demand.inflight_bytes``, reserved at each fetch's first
chunk); every chunk must agree with the first on count and total, have exactly its size,
and a repeated chunk is counted, not kept. Chunk 0's ``.pco`` header (magic, lengths) must
agree with the declared total before more is kept.

Installing never holds up the node's thread: what is costly (compiling a wasm module,
checking a large jar) runs in the node's compiler process (``net.compiler``) while the
capsules stay parked; they run when the code is installed, or are dropped with the reason
it was refused (a load limit, ``compile_timeout``, ``compile_memory``, ...). Every parked
capsule is accounted for whatever happens to its fetch: it runs, or it is dropped and
counted with a reason (``fetch_timeout``, ``code_too_big``, ``trust:<rule>``,
``install_error``, ``node_closed``, ...).

The node serves the code objects it holds to any neighbour that asks, under a token-bucket
rate limit. Requests are rate-limited too, concurrent fetches are bounded, and a name whose
fetch failed is not asked for again for a while: a flood of capsules naming code that does
not exist costs bounded memory and a bounded request rate.
"""

from __future__ import annotations

import logging
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import FLAG_SYSTEM, HEADER_SIZE, Capsule, encode_header
from pan_runtime.data.codeobj import MAGIC, MAX_MANIFEST, CodeObject
from pan_runtime.data.wire import SYS_CHUNK, SYS_ERROR_REPORT, SYS_NOT_FOUND, SYS_REQUEST
from pan_runtime.errors import CodeObjectError, PanError, TrustError
from pan_runtime.net.compiler import Compiler, Outcome
from pan_runtime.node.env import Origin
from pan_runtime.node.trust import CodeOrigin

if TYPE_CHECKING:
    from pan_runtime.net.config import DemandConfig
    from pan_runtime.node.node import Node

__all__ = [
    "DemandLoader",
    "TokenBucket",
    "REQUEST",
    "CHUNK",
    "NOT_FOUND",
    "SYS_HEADER",
    "encode_request",
    "encode_chunk",
    "largest_pco",
]

log = logging.getLogger("pan.demand")

REQUEST = SYS_REQUEST
CHUNK = SYS_CHUNK
NOT_FOUND = SYS_NOT_FOUND
#: every system body starts with: type u8, reserved u8, reserved u16, destination address
SYS_HEADER = struct.Struct(">BBH16s")
#: REQUEST after the common header: chunk size u16, count u16, then count u16 chunk indexes
REQ_FIELDS = struct.Struct(">HH")
#: CHUNK after the common header: index u16, count u16, total length u32, then the data
CHUNK_FIELDS = struct.Struct(">HHI")
CHUNK_OVERHEAD = HEADER_SIZE + SYS_HEADER.size + CHUNK_FIELDS.size
MIN_CHUNK = 64
MAX_CHUNKS = 0xFFFF
_NEGATIVE_TTL_NS = 2_000_000_000
_NEGATIVE_MAX = 1024
#: signatures a fetched ``.pco`` may carry (its signature block counts toward the total)
MAX_SIGNATURES = 16
_SIGNATURE = 96


def largest_pco(code_bytes: int) -> int:
    """The largest ``.pco`` a node fetches: a code object of ``code_bytes`` and its signatures."""
    return code_bytes + 2 + MAX_SIGNATURES * _SIGNATURE


def encode_request(name: bytes, requester: NodeAddress, dest: NodeAddress, chunk_size: int, indexes: list[int], hop_limit: int = 64) -> bytes:
    body = SYS_HEADER.pack(REQUEST, 0, 0, dest.raw) + REQ_FIELDS.pack(chunk_size, len(indexes))
    body += struct.pack(f">{len(indexes)}H", *indexes)
    return encode_header(name, requester, hop_limit, FLAG_SYSTEM) + body


def encode_chunk(name: bytes, server: NodeAddress, dest: NodeAddress, index: int, count: int, total: int, data: bytes, hop_limit: int = 64) -> bytes:
    body = SYS_HEADER.pack(CHUNK, 0, 0, dest.raw) + CHUNK_FIELDS.pack(index, count, total) + data
    return encode_header(name, server, hop_limit, FLAG_SYSTEM) + body


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now_ns: int):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.t = now_ns

    def take(self, now_ns: int, n: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_ns - self.t) * self.rate / 1e9)
        self.t = now_ns
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def wait_ns(self, n: float = 1.0) -> int:
        return 0 if self.tokens >= n else int((n - self.tokens) / self.rate * 1e9) + 1


@dataclass
class _Fetch:
    name: bytes
    candidates: list[NodeAddress]
    started_ns: int
    deadline_ns: int
    chunk_size: int
    parked: deque[tuple[Capsule, Any]] = field(default_factory=deque)
    attempts: int = 0
    next_ns: int = 0
    count: int = 0
    total: int = 0
    chunks: dict[int, bytes] = field(default_factory=dict)
    #: bytes of ``DemandLoader.inflight`` this fetch holds (its declared total, from its first chunk)
    reserved: int = 0
    #: the fetched code object, held until the dependencies it names are installed
    code: CodeObject | None = None
    waiting: set[bytes] = field(default_factory=set)
    #: the code is being compiled (or checked) in the compiler process
    compiling: bool = False


class DemandLoader:
    """Installs itself as the node's ``on_missing_code`` and ``on_system_capsule`` hooks."""

    def __init__(self, node: Node, config: DemandConfig | None = None, compiler: Compiler | None = None):
        from pan_runtime.net.config import DemandConfig

        self.node = node
        self.cfg = config or DemandConfig()
        now = node.now_ns()
        self.fetches: dict[bytes, _Fetch] = {}
        self.parked_total = 0
        #: bytes reserved by fetches for the chunks they keep (at most ``cfg.inflight_bytes``)
        self.inflight = 0
        #: runs the costly part of installing fetched code outside the node's thread
        self.compiler = compiler or Compiler(node.config.load_limits)
        self._requests = TokenBucket(self.cfg.request_rate, self.cfg.request_rate / 4 + 1, now)
        self._serving = TokenBucket(self.cfg.serve_rate, self.cfg.serve_rate / 4 + 1, now)
        #: code objects whose fetch failed lately: when, and the reason
        self._failed: OrderedDict[bytes, tuple[int, str]] = OrderedDict()
        self._pco_cache: OrderedDict[bytes, tuple[CodeObject, bytes]] = OrderedDict()
        self.counters: dict[str, int] = {
            "parked": 0,
            "fetched": 0,
            "failed": 0,
            "requests_sent": 0,
            "requests_rate_limited": 0,
            "chunks_received": 0,
            "chunks_bad": 0,
            "hash_mismatch": 0,
            "not_found_received": 0,
            "requests_served": 0,
            "chunks_served": 0,
            "serve_rate_limited": 0,
            "system_forwarded": 0,
            "chunks_duplicate": 0,
            "too_big": 0,
            "inflight_full": 0,
            "compiles": 0,
        }
        node.on_missing_code = self.on_missing_code
        node.on_system_capsule = self.on_system_capsule
        #: takes error reports (system kind ``SYS_ERROR_REPORT``): (capsule, item, body, destination)
        self.on_error_report: Callable[[Capsule, Any, bytes, NodeAddress], None] | None = None
        node.background.append(self._poll_compiles)

    # ------------------------------------------------------------------ parking
    def on_missing_code(self, cap: Capsule, item: Any) -> bool:
        node = self.node
        name = cap.name
        f = self.fetches.get(name)
        now = node.now_ns()
        if f is None:
            failed = self._failed.get(name)
            if failed is not None and now - failed[0] < _NEGATIVE_TTL_NS:
                return self._refuse(cap, "no_code_recent", name, f"the last fetch of {name.hex()[:12]} failed: {failed[1]}")
            candidates = self._candidates(cap, item)
            if not candidates:
                return False  # the node drops it as no_code
            if len(self.fetches) >= self.cfg.max_fetches:
                return self._refuse(cap, "fetch_limit", name)
            if self.parked_total >= self.cfg.park_total:
                return self._refuse(cap, "park_full", name)
            f = _Fetch(name, candidates, now, now + self.cfg.deadline_ms * 1_000_000, self._chunk_size(candidates[0]))
            self.fetches[name] = f
            f.parked.append((cap, item))
            self.parked_total += 1
            self.counters["parked"] += 1
            self._ask(f, now)
            return True
        if len(f.parked) >= self.cfg.park_per_code or self.parked_total >= self.cfg.park_total:
            return self._refuse(cap, "park_full", name)
        for c in self._candidates(cap, item):
            if c not in f.candidates:
                f.candidates.append(c)
        f.parked.append((cap, item))
        self.parked_total += 1
        self.counters["parked"] += 1
        return True

    def _refuse(self, cap: Capsule, reason: str, name: bytes, detail: str = "") -> bool:
        self.node.count_drop(reason, detail or name.hex()[:12], cap)
        cap.release()
        return True

    def _candidates(self, cap: Capsule, item: Any) -> list[NodeAddress]:
        me = self.node.address
        out: list[NodeAddress] = []
        prev = getattr(item, "prev_hop", None)
        if prev is not None and prev != me and prev in self.node.neighbors:
            out.append(prev)
        home = cap.home
        if home != me and home not in out:
            out.append(home)
        return out

    def _chunk_size(self, toward: NodeAddress) -> int:
        if self.cfg.chunk_size:
            return max(MIN_CHUNK, self.cfg.chunk_size)
        mtu = self._mtu(toward) or self.node.pool.buffer_size
        mtu = min(mtu, self.node.pool.buffer_size)
        return max(MIN_CHUNK, mtu - CHUNK_OVERHEAD)

    def _mtu(self, dest: NodeAddress) -> int | None:
        link = self.node.neighbors.get(dest)
        if link is None:
            r = self.node.routes.lookup(dest)
            link = self.node.neighbors.get(r.next_hop) if r is not None else None
        return link.mtu if link is not None else None

    # ------------------------------------------------------------------ asking
    def _ask(self, f: _Fetch, now: int) -> None:
        if not self._requests.take(now):
            self.counters["requests_rate_limited"] += 1
            f.next_ns = now + self._requests.wait_ns()
            return
        target = f.candidates[f.attempts % len(f.candidates)]
        missing: list[int] = []
        if f.count:
            missing = [i for i in range(f.count) if i not in f.chunks]
            # a request must fit a datagram too; ask for the first missing ones
            room = max(1, (self._chunk_size(target) - REQ_FIELDS.size) // 2)
            missing = missing[: min(room, 4096)]
        data = encode_request(f.name, self.node.address, target, f.chunk_size, missing, self.node.config.hop_limit)
        self._send(target, data)
        self.counters["requests_sent"] += 1
        f.attempts += 1
        backoff = self.cfg.retry_ms * 1_000_000 * (1 << min(f.attempts // max(1, len(f.candidates)), 6))
        f.next_ns = now + backoff

    def _send(self, dest: NodeAddress, data: bytes, via: NodeAddress | None = None, no_route: str = "system_no_route_own") -> bool:
        """Send a system capsule toward ``dest``; without a route it is dropped as ``no_route``:
        ``system_no_route_own`` for the node's own requests and replies, ``system_no_route`` for
        a capsule it was asked to route (``_relay``)."""
        node = self.node
        link = node.neighbors.get(dest)
        hop = dest
        if link is None:
            r = node.routes.lookup(dest)
            if r is not None:
                hop = r.next_hop
                link = node.neighbors.get(hop)
        if link is None and via is not None:
            hop, link = via, node.neighbors.get(via)
        if link is None:
            node.count_drop(no_route, str(dest))
            return False
        if len(data) > link.mtu:
            node.count_drop("too_big", f"system capsule of {len(data)} bytes > MTU {link.mtu} toward {hop}")
            return False
        if link.send([memoryview(data)], hop):
            node.stats.sent += 1
            return True
        return False

    # ------------------------------------------------------------------ time
    def tick(self) -> int | None:
        """Retry, finish or give up on fetches; returns the next time (ns) something is due."""
        node = self.node
        compiler = self.compiler
        due_compile = compiler.poll() if compiler.busy else None
        now = node.now_ns()
        nxt = None if due_compile is None else now + max(0, due_compile - compiler.clock())
        for f in list(self.fetches.values()):
            if f.name in node.cache:
                self._finish(f)
                continue
            if f.compiling:  # the compiler's own time limit ends it
                continue
            if now >= f.deadline_ns:
                self._fail(f, "fetch_timeout", f"no answer from {', '.join(map(str, f.candidates))} within {self.cfg.deadline_ms} ms")
                continue
            if f.code is not None:  # fetched; waiting for its dependencies
                nxt = f.deadline_ns if nxt is None else min(nxt, f.deadline_ns)
                continue
            if now >= f.next_ns:
                self._ask(f, now)
            due = min(f.next_ns, f.deadline_ns)
            nxt = due if nxt is None else min(nxt, due)
        return nxt

    @property
    def busy(self) -> bool:
        return bool(self.fetches) or self.compiler.busy

    def _poll_compiles(self) -> bool:
        """The node's background hook: finish compiles that finished; whether any still run."""
        if not self.compiler.busy:
            return False
        self.compiler.poll()
        return self.compiler.busy

    # ------------------------------------------------------------------ system capsules
    def on_system_capsule(self, cap: Capsule, item: Any) -> None:
        node = self.node
        if item.origin is Origin.APPLICATION:
            node.count_drop("system_from_app")
            return
        body = cap.body.tobytes()
        if len(body) < SYS_HEADER.size:
            node.count_drop("system_malformed", f"{len(body)}-byte system body")
            return
        kind, _r1, _r2, dest_raw = SYS_HEADER.unpack_from(body, 0)
        dest = NodeAddress(dest_raw)
        if kind == REQUEST:
            self._on_request(cap, item, body, dest)
        elif kind == SYS_ERROR_REPORT and self.on_error_report is not None:
            self.on_error_report(cap, item, body, dest)
        elif kind in (CHUNK, NOT_FOUND):
            if dest != node.address:
                self._relay(cap, dest)
            elif kind == CHUNK:
                self._on_chunk(cap, body)
            else:
                self._on_not_found(cap)
        else:
            node.count_drop("system_malformed", f"system message type {kind}")

    def relay(self, cap: Capsule, dest: NodeAddress) -> None:
        """Pass a system capsule addressed to another node on toward it."""
        self._relay(cap, dest)

    def send_system(self, dest: NodeAddress, data: bytes, via: NodeAddress | None = None) -> bool:
        """Send a system capsule of this node's own toward ``dest`` (``via``: the neighbour to
        fall back on without a route); False if it could not leave (counted)."""
        return self._send(dest, data, via)

    def _relay(self, cap: Capsule, dest: NodeAddress) -> None:
        if cap.hop_limit <= 0:
            self.node.count_drop("hop_limit")
            return
        if self._send(dest, cap.to_bytes(), no_route="system_no_route"):
            self.counters["system_forwarded"] += 1

    def _on_request(self, cap: Capsule, item: Any, body: bytes, dest: NodeAddress) -> None:
        node = self.node
        if len(body) < SYS_HEADER.size + REQ_FIELDS.size:
            node.count_drop("system_malformed", "short code request")
            return
        chunk_size, n = REQ_FIELDS.unpack_from(body, SYS_HEADER.size)
        off = SYS_HEADER.size + REQ_FIELDS.size
        if len(body) < off + 2 * n or chunk_size < MIN_CHUNK:
            node.count_drop("system_malformed", "code request with a bad chunk list or size")
            return
        requester = cap.home
        entry = node.cache.peek(cap.name)
        if entry is None:
            if dest != node.address:
                self._relay(cap, dest)
            else:
                reply = encode_header(cap.name, node.address, node.config.hop_limit, FLAG_SYSTEM) + SYS_HEADER.pack(NOT_FOUND, 0, 0, requester.raw)
                self._send(requester, reply, via=item.prev_hop)
            return
        pco = self._pco(entry.code)
        count = (len(pco) + chunk_size - 1) // chunk_size
        if count > MAX_CHUNKS:
            node.count_drop("system_too_big", f"{len(pco)} bytes in {chunk_size}-byte chunks")
            return
        indexes = list(struct.unpack_from(f">{n}H", body, off)) if n else list(range(count))
        self.counters["requests_served"] += 1
        now = node.now_ns()
        hop = node.config.hop_limit
        for i in indexes:
            if i >= count:
                continue
            if not self._serving.take(now):
                self.counters["serve_rate_limited"] += 1
                node.count_drop("serve_rate_limited", cap.name.hex()[:12])
                return
            data = encode_chunk(cap.name, node.address, requester, i, count, len(pco), pco[i * chunk_size : (i + 1) * chunk_size], hop)
            if self._send(requester, data, via=item.prev_hop):
                self.counters["chunks_served"] += 1

    def _pco(self, code: CodeObject) -> bytes:
        cached = self._pco_cache.get(code.name)
        if cached is not None and cached[0] is code:  # the same copy (a signed one may replace it)
            pco = cached[1]
        else:
            pco = code.to_pco()
            self._pco_cache[code.name] = (code, pco)
            while len(self._pco_cache) > 16:
                self._pco_cache.popitem(last=False)
        return pco

    def _on_chunk(self, cap: Capsule, body: bytes) -> None:
        node = self.node
        f = self.fetches.get(cap.name)
        if f is None or f.code is not None:
            node.count_drop("system_unexpected", "a code chunk nobody asked for")
            return
        off = SYS_HEADER.size + CHUNK_FIELDS.size
        if len(body) < off:
            self.counters["chunks_bad"] += 1
            node.count_drop("system_malformed", "short code chunk")
            return
        index, count, total = CHUNK_FIELDS.unpack_from(body, SYS_HEADER.size)
        biggest = self.max_total()
        if total > biggest:
            # no object this large could be installed here: no byte of it is kept
            self.counters["too_big"] += 1
            self._fail(f, "code_too_big", f"{cap.name.hex()[:12]} declared as {total} bytes; at most {biggest} are accepted")
            return
        data = body[off:]
        expected = (total + f.chunk_size - 1) // f.chunk_size
        want_len = min(f.chunk_size, total - index * f.chunk_size)
        if count != expected or index >= count or len(data) != want_len or (f.count and (count, total) != (f.count, f.total)):
            self.counters["chunks_bad"] += 1
            node.count_drop("system_bad_chunk", f"chunk {index}/{count} of {len(data)} bytes for {cap.name.hex()[:12]}")
            return
        if index in f.chunks:
            self.counters["chunks_duplicate"] += 1
            return
        if not f.reserved:
            if self.inflight + total > self.cfg.inflight_bytes:
                self.counters["inflight_full"] += 1
                node.count_drop("demand_inflight_full", f"{total} more bytes would exceed demand.inflight_bytes = {self.cfg.inflight_bytes}")
                return  # asked again later, when other fetches have finished
            f.reserved = total
            self.inflight += total
        if index == 0:
            bad = self._bad_head(data, total)
            if bad:
                self.counters["chunks_bad"] += 1
                node.count_drop("system_bad_chunk", f"{cap.name.hex()[:12]}: {bad}")
                self._discard(f)
                return
        f.count, f.total = count, total
        f.chunks[index] = data
        self.counters["chunks_received"] += 1
        now = node.now_ns()
        f.next_ns = max(f.next_ns, now + self.cfg.retry_ms * 1_000_000)  # data is flowing: wait before re-asking
        if len(f.chunks) == f.count:
            self._complete(f)

    def max_total(self) -> int:
        """The largest ``.pco`` this node fetches."""
        return largest_pco(self.node.config.load_limits.code_bytes)

    def _bad_head(self, data: bytes, total: int) -> str | None:
        """What is wrong with the start of a ``.pco`` declared ``total`` bytes long, if anything."""
        if len(data) < min(total, 10):
            return None
        if total < 18 or data[:6] != MAGIC:
            return "not a code object (bad magic or too short)"
        (mlen,) = struct.unpack_from(">I", data, 6)
        if mlen > MAX_MANIFEST or 18 + mlen > total:
            return f"manifest length {mlen} does not fit the declared {total} bytes"
        if len(data) < 18 + mlen:
            return None
        (plen,) = struct.unpack_from(">Q", data, 10 + mlen)
        size = 18 + mlen + plen
        rest = total - size
        if size > self.node.config.load_limits.code_bytes:
            return f"a {size}-byte code object, more than limits.code_bytes = {self.node.config.load_limits.code_bytes}"
        if rest != 0 and (rest < 2 or (rest - 2) % _SIGNATURE or (rest - 2) // _SIGNATURE > MAX_SIGNATURES):
            return f"payload length {plen} does not fit the declared {total} bytes"
        return None

    def _release(self, f: _Fetch) -> None:
        self.inflight -= f.reserved
        f.reserved = 0

    def _discard(self, f: _Fetch) -> None:
        """Forget what a source sent for ``f`` and ask again (the next source) at once."""
        f.chunks.clear()
        f.count = f.total = 0
        self._release(f)
        f.next_ns = self.node.now_ns()

    def _on_not_found(self, cap: Capsule) -> None:
        f = self.fetches.get(cap.name)
        self.counters["not_found_received"] += 1
        if f is None:
            return
        # ask the next candidate straight away
        if f.attempts % len(f.candidates) != 0 or len(f.candidates) > 1:
            f.next_ns = self.node.now_ns()

    def _complete(self, f: _Fetch) -> None:
        node = self.node
        data = b"".join(f.chunks[i] for i in range(f.count))
        f.chunks.clear()
        try:
            code = CodeObject.from_pco(data, expect_name=f.name)
        except CodeObjectError as exc:
            self.counters["hash_mismatch"] += 1
            node.count_drop("code_hash_mismatch", str(exc))
            log.warning("discarded code received for %s: %s", f.name.hex()[:12], exc)
            self._discard(f)  # ask again (the next candidate)
            return
        del data
        f.code = code
        missing = [d for d in code.manifest.dependencies if d not in node.cache]
        if missing:
            # hold it and fetch what it depends on, from the same places
            now = node.now_ns()
            f.waiting = set(missing)
            f.deadline_ns = now + self.cfg.deadline_ms * 1_000_000
            for dep in missing:
                if dep not in self.fetches:
                    df = _Fetch(dep, list(f.candidates), now, f.deadline_ns, f.chunk_size)
                    self.fetches[dep] = df
                    self._ask(df, now)
            return
        self._load(f, code)

    def _load(self, f: _Fetch, code: CodeObject) -> None:
        """Install ``code`` now if that is cheap, else have the compiler prepare it first."""
        try:
            job = self.node.prepare(code, origin=CodeOrigin.NETWORK)
        except Exception as exc:
            self._refused(f, code, exc)
            return
        if job is None:
            self._install(f, code)
            return
        f.compiling = True
        self.counters["compiles"] += 1
        self.compiler.submit(f.name, job, lambda outcome: self._compiled(f, code, outcome), code.short_name)

    def _compiled(self, f: _Fetch, code: CodeObject, outcome: Outcome) -> None:
        if self.fetches.get(f.name) is not f:
            return  # failed or finished meanwhile
        f.compiling = False
        if isinstance(outcome, CodeObjectError):
            self._refused(f, code, outcome)
            return
        try:
            self.node.adopt(code, outcome)
        except Exception as exc:
            self._refused(f, code, exc)
            return
        self._install(f, code)

    def _install(self, f: _Fetch, code: CodeObject) -> None:
        try:
            self.node.install(code, origin=CodeOrigin.NETWORK)
        except Exception as exc:
            self._refused(f, code, exc)
            return
        log.info("demand-loaded %s (%s, %d bytes) from %s", code.short_name, code.runtime, code.size, f.candidates)
        self.counters["fetched"] += 1
        self._finish(f)

    def _refused(self, f: _Fetch, code: CodeObject, exc: BaseException) -> None:
        """Fail ``f`` with the reason ``exc`` names: a trust rule, a load limit or compile
        outcome, any other refusal, or a fault of the node's own (logged with its traceback)."""
        if isinstance(exc, TrustError):
            log.warning("refused demand-loaded code %s: %s", code.short_name, exc)
            self._fail(f, f"trust:{exc.rule}", str(exc))
        elif isinstance(exc, CodeObjectError) and exc.reason is not None:
            log.warning("refused demand-loaded code %s: %s", code.short_name, exc)
            self._fail(f, exc.reason.value, str(exc))
        elif isinstance(exc, PanError):
            log.warning("could not install demand-loaded code %s: %s", code.short_name, exc)
            self._fail(f, "code_refused", str(exc))
        else:
            log.error("installing demand-loaded code %s failed", code.short_name, exc_info=exc)
            self._fail(f, "install_error", f"{type(exc).__name__}: {exc}")

    def _waiters(self, name: bytes) -> list[_Fetch]:
        return [h for h in self.fetches.values() if h.code is not None and name in h.waiting]

    def _finish(self, f: _Fetch) -> None:
        self._end(f)
        node = self.node
        for cap, item in reversed(f.parked):
            node.requeue(cap, item)
        f.parked.clear()
        for held in self._waiters(f.name):
            held.waiting.discard(f.name)
            if not held.waiting and held.code is not None and not held.compiling:
                self._load(held, held.code)

    def _fail(self, f: _Fetch, reason: str, detail: str) -> None:
        self._end(f)
        self.counters["failed"] += 1
        self._failed[f.name] = (self.node.now_ns(), reason)
        self._failed.move_to_end(f.name)
        while len(self._failed) > _NEGATIVE_MAX:
            self._failed.popitem(last=False)
        self._drop_parked(f, reason, detail)
        log.info("gave up fetching %s: %s (%s)", f.name.hex()[:12], reason, detail)
        for held in self._waiters(f.name):
            self._fail(held, "dependency_failed", f"dependency {f.name.hex()[:12]}: {reason}")

    def _end(self, f: _Fetch) -> None:
        """Take ``f`` out of the fetches: its bytes, its compile and its parked count go."""
        if self.fetches.get(f.name) is f:
            del self.fetches[f.name]
        self._release(f)
        f.chunks.clear()
        if f.compiling:
            self.compiler.cancel(f.name)
            f.compiling = False
        self.parked_total -= len(f.parked)

    def _drop_parked(self, f: _Fetch, reason: str, detail: str) -> None:
        for cap, _item in f.parked:
            self.node.count_drop(reason, detail, cap)
            cap.release()
        f.parked.clear()

    def close(self) -> None:
        """Drop every parked capsule, counted as ``node_closed``, and stop every compile."""
        for f in list(self.fetches.values()):
            self._end(f)
            self._drop_parked(f, "node_closed", f.name.hex()[:12])
        self.fetches.clear()
        self.compiler.close()
        if self._poll_compiles in self.node.background:
            self.node.background.remove(self._poll_compiles)

    def info(self) -> dict[str, Any]:
        return {
            **self.counters,
            "parked_now": self.parked_total,
            "inflight_bytes": self.inflight,
            "fetching": [n.hex() for n in self.fetches],
            "compiler": self.compiler.info(),
        }
