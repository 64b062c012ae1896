"""The host side of the PAN Node Interface: every PNI call, implemented once.

Runtimes marshal their code's calls into these methods (one per call in
``pni_spec/pni.toml``, same name) and hand the results back. Conventions:

* scalars, handles and link tokens are ``int``;
* ``bytes_in`` / ``addr_in`` arguments are any bytes-like object (a memoryview over guest
  memory is fine; anything kept is copied);
* ``bytes_out`` / ``addr_out`` / ``name_out`` arguments are writable memoryviews that the
  host fills;
* every method returns an ``int``: a value ``>= 0`` or a negative status from the spec.
  Bad arguments from code never raise.

``current`` is the environment of the capsule being run; the node sets it before each call
into a runtime. While the node's UDP fast path runs a capsule without an environment,
``current`` is ``unbuilt``: the first call that reads anything of the environment has it
built then (``build``, through the ``materialize`` hook the fast path registers), so no
runtime needs to know about the fast path. A test checks that this class and the spec name
the same calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pan_runtime import pni_api
from pan_runtime.data.address import ADDRESS_SIZE, NodeAddress
from pan_runtime.data.segments import Segment
from pan_runtime.data.streams import crc32, hmac_sha256, inet_checksum, sha256
from pan_runtime.node.codelog import CodeLog
from pan_runtime.node.env import Environment, Origin
from pan_runtime.node.quota import Refusal

if TYPE_CHECKING:
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.node.softstate import SoftState

__all__ = [
    "PNI_VERSION",
    "STATUS",
    "VERDICT",
    "OK",
    "BAD_HANDLE",
    "OUT_OF_RANGE",
    "NO_SPACE",
    "NOT_FOUND",
    "BAD_ARGUMENT",
    "NO_ROUTE",
    "DENIED",
    "TOO_BIG",
    "BUDGET",
    "VERDICT_DROP",
    "VERDICT_DONE",
    "VERDICT_FORWARD",
    "VERDICT_DELIVER",
    "version_compatible",
    "NodeServices",
    "PniServer",
    "Unbuilt",
]

PNI_VERSION: str = pni_api.PNI_VERSION
STATUS: dict[str, int] = dict(pni_api.STATUS)
VERDICT: dict[str, int] = dict(pni_api.VERDICTS)
OK = STATUS["OK"]
BAD_HANDLE = STATUS["BAD_HANDLE"]
OUT_OF_RANGE = STATUS["OUT_OF_RANGE"]
NO_SPACE = STATUS["NO_SPACE"]
NOT_FOUND = STATUS["NOT_FOUND"]
BAD_ARGUMENT = STATUS["BAD_ARGUMENT"]
NO_ROUTE = STATUS["NO_ROUTE"]
DENIED = STATUS["DENIED"]
TOO_BIG = STATUS["TOO_BIG"]
BUDGET = STATUS["BUDGET"]
VERDICT_DROP = VERDICT["DROP"]
VERDICT_DONE = VERDICT["DONE"]
VERDICT_FORWARD = VERDICT["FORWARD"]
VERDICT_DELIVER = VERDICT["DELIVER"]
_STATUS_NAMES = {v: k for k, v in STATUS.items()}
_LOG_LEVELS = {10, 20, 30, 40}


def status_name(value: int) -> str:
    return _STATUS_NAMES.get(value, f"status {value}")


def version_compatible(code_version: str, node_version: str = PNI_VERSION) -> bool:
    """Code built against M.m runs on a node serving M.n with n >= m."""
    try:
        cm, cn = (int(x) for x in code_version.split("."))
        nm, nn = (int(x) for x in node_version.split("."))
    except ValueError:
        return False
    return cm == nm and cn <= nn


class NodeServices(Protocol):
    """What the host needs from the node it serves (implemented by ``pan_runtime.node.services.Services``)."""

    address: NodeAddress

    def now_ns(self) -> int: ...
    def soft_state(self, code: CodeObject) -> SoftState: ...
    def refused(self, code: CodeObject, reason: str) -> None: ...
    def send_toward(self, env: Environment, dest: NodeAddress, body: Segment) -> int: ...
    def send_neighbor(self, env: Environment, neighbor: NodeAddress, body: Segment) -> int: ...
    def deliver(self, env: Environment, token: int, port: int, body: Segment) -> int: ...
    def link_token(self, code: CodeObject, link: Any) -> int: ...
    def mtu_toward(self, dest: NodeAddress) -> int: ...
    def neighbor_addresses(self) -> list[NodeAddress]: ...
    def route_lookup(self, dest: NodeAddress) -> tuple[NodeAddress, int] | None: ...
    def route_set(self, code: CodeObject, dest: NodeAddress, next_hop: NodeAddress, metric: int) -> int: ...
    def dep_call(self, code: CodeObject, dep: int, export: str, a0: int, a1: int) -> int: ...


def _span_ok(seg: Segment, offset: int, n: int) -> bool:
    return offset >= 0 and n >= 0 and offset + n <= seg.length


class Unbuilt:
    """Stands for the environment of a capsule the fast path runs without one: reading any
    attribute builds the real one (``PniServer.build``) and answers from it."""

    __slots__ = ("_server",)

    def __init__(self, server: PniServer):
        object.__setattr__(self, "_server", server)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server.build(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._server.build(), name, value)


class PniServer:
    """Implements the PNI for one node; ``current`` is the environment being served."""

    def __init__(self, node: NodeServices, logger: logging.Logger | None = None,
                 clock: Callable[[], int] = time.monotonic_ns):
        self.node = node
        self.current: Environment = Environment()
        self.log_ = logger or logging.getLogger("pan.code")
        #: the lines code writes with ``log``: one line each, rate-limited per code object
        self.code_log = CodeLog(self.log_, clock)
        #: what ``current`` is while the fast path runs a capsule whose environment is not built
        self.unbuilt: Any = Unbuilt(self)
        #: set by the node's fast path: builds the environment of the capsule it is running
        #: and makes it ``current`` (None: no fast path, nothing is ever left unbuilt)
        self.materialize: Callable[[], None] | None = None

    def build(self) -> Environment:
        """``current``, built first when it is ``unbuilt``; raises when nothing can build it."""
        env = self.current
        if env is self.unbuilt:
            if self.materialize is not None:
                self.materialize()
            env = self.current
            if env is self.unbuilt:
                raise RuntimeError("no environment: the fast path is not running a capsule")
        return env

    # -- helpers -------------------------------------------------------------------------
    def _seg(self, handle: int) -> Segment | None:
        return self.current.segment(handle)

    @staticmethod
    def _fill(dst: memoryview, data: bytes) -> int:
        if len(dst) < len(data):
            return OUT_OF_RANGE
        dst[: len(data)] = data
        return OK

    @staticmethod
    def _addr(src: Any) -> NodeAddress | None:
        try:
            if len(src) != ADDRESS_SIZE:
                return None
            return NodeAddress(src)
        except Exception:
            return None

    def _range(self, seg: int, offset: int, n: int) -> Segment | int:
        """The live segment behind ``seg`` when [offset, offset+n) lies inside it, else a status."""
        s = self.current.segment(seg)
        if s is None:
            return BAD_HANDLE
        if not _span_ok(s, offset, n):
            return OUT_OF_RANGE
        return s

    # -- segments ------------------------------------------------------------------------
    def seg_length(self, seg: int) -> int:
        s = self._seg(seg)
        return BAD_HANDLE if s is None else s.length

    def seg_read(self, seg: int, offset: int, dst: memoryview) -> int:
        n = len(dst)
        s = self._range(seg, offset, n)
        if isinstance(s, int):
            return s
        s.read_into(offset, dst)
        return n

    def seg_write(self, seg: int, offset: int, src: Any) -> int:
        n = len(src)
        s = self._range(seg, offset, n)
        if isinstance(s, int):
            return s
        s.write_from(offset, src)
        return n

    def _get(self, seg: int, offset: int, size: int) -> int:
        s = self._range(seg, offset, size)
        if isinstance(s, int):
            return s
        if s.contiguous:
            return int.from_bytes(s.view()[offset : offset + size], "big")
        buf = bytearray(size)
        s.read_into(offset, memoryview(buf))
        return int.from_bytes(buf, "big")

    def _set(self, seg: int, offset: int, value: int, size: int) -> int:
        s = self._range(seg, offset, size)
        if isinstance(s, int):
            return s
        if not 0 <= value < 1 << (8 * size):
            return BAD_ARGUMENT
        s.write_from(offset, value.to_bytes(size, "big"))
        return OK

    def seg_get_u8(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 1)

    def seg_get_u16(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 2)

    def seg_get_u32(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 4)

    def seg_set_u8(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value, 1)

    def seg_set_u16(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value, 2)

    def seg_set_u32(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value & 0xFFFFFFFF, 4)

    def _admit(self, length: int) -> int:
        env = self.current
        if env.allocated >= env.budget.segments:
            return BUDGET
        if length > env.budget.memory_bytes:
            return NO_SPACE
        env.allocated += 1
        return OK

    def seg_alloc(self, length: int) -> int:
        if length < 0:
            return BAD_ARGUMENT
        st = self._admit(length)
        if st < 0:
            return st
        return self.current.register(Segment.owned(length))

    def seg_slice(self, seg: int, offset: int, length: int) -> int:
        s = self._range(seg, offset, length)
        if isinstance(s, int):
            return s
        st = self._admit(0)
        if st < 0:
            return NO_SPACE
        return self.current.register(s.overlay(offset, length))

    def seg_concat(self, head: int, tail: int) -> int:
        a, b = self._seg(head), self._seg(tail)
        if a is None or b is None:
            return BAD_HANDLE
        st = self._admit(0)
        if st < 0:
            return NO_SPACE
        return self.current.register(Segment.container((a, b)))

    def seg_copy(self, dst: int, dst_offset: int, src: int, src_offset: int, length: int) -> int:
        d, s = self._seg(dst), self._seg(src)
        if d is None or s is None:
            return BAD_HANDLE
        if not (_span_ok(s, src_offset, length) and _span_ok(d, dst_offset, length)):
            return OUT_OF_RANGE
        buf = bytearray(length)
        s.read_into(src_offset, memoryview(buf))
        d.write_from(dst_offset, buf)
        return length

    def seg_release(self, seg: int) -> int:
        env = self.current
        if seg == env.BODY_HANDLE or self._seg(seg) is None:
            return BAD_HANDLE
        s = env.handles[seg]
        env.handles[seg] = None
        assert s is not None
        env.ring.remove(s)
        return OK

    # -- capsule and environment ---------------------------------------------------------
    def capsule_hop_limit(self) -> int:
        cap = self.current.capsule
        return 0 if cap is None else cap.hop_limit

    def capsule_home(self, dst: memoryview) -> int:
        cap = self.current.capsule
        return OUT_OF_RANGE if cap is None else self._fill(dst, cap.home.raw)

    def capsule_code_name(self, dst: memoryview) -> int:
        cap = self.current.capsule
        return OUT_OF_RANGE if cap is None else self._fill(dst, cap.name)

    def env_origin_kind(self) -> int:
        return int(self.current.origin_kind)

    def env_origin_link(self) -> int:
        env = self.current
        if env.origin_kind != Origin.APPLICATION or env.origin_link is None or env.code is None:
            return NOT_FOUND
        return self.node.link_token(env.code, env.origin_link)

    def env_prev_hop(self, dst: memoryview) -> int:
        hop = self.current.prev_hop
        if hop is None:
            return NOT_FOUND
        return self._fill(dst, hop.raw)

    def node_address(self, dst: memoryview) -> int:
        return self._fill(dst, self.node.address.raw)

    def node_now_ns(self) -> int:
        return self.node.now_ns()

    def node_mtu(self, dest: Any) -> int:
        addr = self._addr(dest)
        if addr is None:
            return OUT_OF_RANGE
        return self.node.mtu_toward(addr)

    # -- sending ---------------------------------------------------------------------------
    def _sendable(self, body: int) -> Segment | int:
        s = self._seg(body)
        if s is None:
            return BAD_HANDLE
        env = self.current
        if env.sent_bytes + s.length > env.budget.send_bytes:
            return BUDGET
        env.sent_bytes += s.length
        return s

    def send_toward(self, dest: Any, body: int) -> int:
        addr = self._addr(dest)
        if addr is None:
            return OUT_OF_RANGE
        s = self._sendable(body)
        if isinstance(s, int):
            return s
        return self.node.send_toward(self.current, addr, s)

    def send_neighbor(self, neighbor: Any, body: int) -> int:
        addr = self._addr(neighbor)
        if addr is None:
            return OUT_OF_RANGE
        s = self._sendable(body)
        if isinstance(s, int):
            return s
        return self.node.send_neighbor(self.current, addr, s)

    def deliver(self, link: int, port: int, body: int) -> int:
        s = self._sendable(body)
        if isinstance(s, int):
            return s
        if not 0 <= port <= 0xFFFF:
            return BAD_ARGUMENT
        return self.node.deliver(self.current, link, port, s)

    # -- routing ---------------------------------------------------------------------------
    def neighbor_count(self) -> int:
        return len(self.node.neighbor_addresses())

    def neighbor_address(self, index: int, dst: memoryview) -> int:
        addrs = self.node.neighbor_addresses()
        if not 0 <= index < len(addrs):
            return NOT_FOUND
        return self._fill(dst, addrs[index].raw)

    def route_lookup(self, dest: Any, next_hop: memoryview) -> int:
        addr = self._addr(dest)
        if addr is None:
            return OUT_OF_RANGE
        found = self.node.route_lookup(addr)
        if found is None:
            return NO_ROUTE
        hop, metric = found
        st = self._fill(next_hop, hop.raw)
        return st if st < 0 else metric

    def route_set(self, dest: Any, next_hop: Any, metric: int) -> int:
        d, h = self._addr(dest), self._addr(next_hop)
        if d is None or h is None:
            return OUT_OF_RANGE
        code = self.current.code
        if code is None:
            return DENIED
        return self.node.route_set(code, d, h, metric)

    # -- soft state -------------------------------------------------------------------------
    def _state(self) -> SoftState | None:
        code = self.current.code
        return None if code is None else self.node.soft_state(code)

    def state_get(self, key: Any, dst: memoryview) -> int:
        st = self._state()
        if st is None:
            return NOT_FOUND
        value = st.get(bytes(key))
        if value is None:
            return NOT_FOUND
        data = value.tobytes() if isinstance(value, Segment) else value
        n = min(len(dst), len(data))
        dst[:n] = data[:n]
        return len(data)

    def _too_big(self, st: SoftState, key: Any, length: int) -> bool:
        """True (and counted) when an entry of ``key`` and ``length`` bytes can never be stored."""
        if st.fits(len(key), length):
            return False
        code = self.current.code
        if code is not None:
            self.node.refused(code, Refusal.STATE_BYTES)
        return True

    def state_put(self, key: Any, value: Any, ttl_ms: int) -> int:
        st = self._state()
        if st is None or ttl_ms < 0:
            return BAD_ARGUMENT
        if self._too_big(st, key, len(value)):
            return NO_SPACE
        return OK if st.put(bytes(key), bytes(value), ttl_ms) else NO_SPACE

    def state_delete(self, key: Any) -> int:
        st = self._state()
        if st is None:
            return NOT_FOUND
        return OK if st.delete(bytes(key)) else NOT_FOUND

    def state_put_seg(self, key: Any, seg: int, ttl_ms: int) -> int:
        # Soft state outlives the call, so it keeps a copy in memory of its own: the segment may
        # lie in a receive buffer of the node's pool (the capsule body does), which soft state
        # would otherwise hold for its lifetime. The copy's bytes count against the soft-state
        # bounds; bodies are small next to a pool buffer, and this call is off the common path.
        s = self._seg(seg)
        if s is None:
            return BAD_HANDLE
        st = self._state()
        if st is None:
            return BAD_ARGUMENT
        if self._too_big(st, key, s.length):
            return NO_SPACE
        copy = Segment.owned(s.view() if s.contiguous else s.tobytes())
        if not st.put(bytes(key), copy, ttl_ms):
            copy.release()
            return NO_SPACE
        return OK

    def state_get_seg(self, key: Any) -> int:
        st = self._state()
        if st is None:
            return NOT_FOUND
        value = st.get(bytes(key))
        if value is None:
            return NOT_FOUND
        if not isinstance(value, Segment):
            value = Segment.owned(value)
        else:
            value.retain()
        if self._admit(0) < 0:
            value.release()
            return NO_SPACE
        return self.current.register(value)

    # -- diagnostics and digests --------------------------------------------------------------
    def log(self, level: int, message: Any) -> int:
        if level not in _LOG_LEVELS:
            return BAD_ARGUMENT
        self.code_log.write(level, self.current.code, bytes(message[:4096]))
        return OK

    def _views(self, seg: int, offset: int, length: int) -> list[memoryview] | int:
        s = self._range(seg, offset, length)
        if isinstance(s, int):
            return s
        if s.contiguous:
            return [s.view()[offset : offset + length]]
        buf = bytearray(length)
        s.read_into(offset, memoryview(buf))
        return [memoryview(buf)]

    def checksum_inet(self, seg: int, offset: int, length: int) -> int:
        v = self._views(seg, offset, length)
        return v if isinstance(v, int) else inet_checksum(v)

    def crc32(self, seg: int, offset: int, length: int) -> int:
        v = self._views(seg, offset, length)
        return v if isinstance(v, int) else crc32(v)

    def sha256(self, seg: int, offset: int, length: int, dst: memoryview) -> int:
        v = self._views(seg, offset, length)
        return v if isinstance(v, int) else self._fill(dst, sha256(v))

    def hmac_sha256(self, seg: int, offset: int, length: int, key: Any, dst: memoryview) -> int:
        v = self._views(seg, offset, length)
        return v if isinstance(v, int) else self._fill(dst, hmac_sha256(bytes(key), v))

    # -- dependencies -----------------------------------------------------------------------
    def dep_call(self, dep: int, export: Any, a0: int, a1: int) -> int:
        code = self.current.code
        if code is None:
            return NOT_FOUND
        try:
            name = bytes(export).decode("ascii")
        except UnicodeDecodeError:
            return NOT_FOUND
        if not name.isidentifier():
            return NOT_FOUND
        return self.node.dep_call(code, dep, name, a0, a1)
