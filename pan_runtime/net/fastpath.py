"""What runtimes use while the UDP fast path (``pan_runtime.net.udp_fast``) runs their code.

A capsule the fast path runs has no Python environment: the calls its code makes most are
answered from the capsule (``LeanHost`` for code that runs in Python), and a host call that
needs more first has the node take the capsule over (``materialize``), after which the host
serves it as any capsule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pan_runtime.node.env import Origin
from pan_runtime.node.pni import BAD_ARGUMENT, OK, OUT_OF_RANGE, PniHost

try:
    from pan_runtime.net import _fastpath
except ImportError:  # built at install only where a C compiler was found
    _fastpath = None

__all__ = ["LeanHost", "materialize"]


def materialize() -> None:
    """Build the Python environment of the capsule the fast path is running, if any.

    Runtimes with a fast entry call this from a host call that finds ``host.current`` None;
    the fast path claims the capsule from C and hands it to the node (``UdpFastPath.materialize``).
    """
    if _fastpath is None:
        return
    got = _fastpath.inflight()
    if got is not None:
        owner, slot, n, link, code = got
        owner.materialize(slot, n, link, code)




class LeanHost:
    """PNI host calls for a capsule the fast path runs from Python without an environment.

    A runtime whose code runs in Python (``LoadedCode.fast_accept``) binds its PNI to one of
    these: segment calls on the body (handle 1) and the origin, previous-hop and node-address
    calls are answered from the capsule's bytes, with the host's statuses and checks; any
    other call first has the node build the capsule's environment (``materialize``), then
    goes to the node's ``PniHost``, and from then on every call does.
    """

    BODY = 1

    def __init__(self, host: Any):
        self._host = host
        #: the capsule body during a run (set by the runtime; None: not in a run, or materialized)
        self.body: memoryview | None = None
        #: the previous hop's address during a run
        self.prev_hop = b""
        node = getattr(host, "node", None)
        self.node_raw = node.address.raw if node is not None else b""

    def _real(self) -> Any:
        host = self._host
        if host.current is None:
            materialize()
        self.body = None
        return host

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._host, name)  # AttributeError for what the host lacks

        def call(*args: Any) -> Any:
            self._real()
            return method(*args)

        call.__name__ = name
        return call

    def seg_length(self, seg: int) -> int:
        if seg == 1 and self.body is not None:
            return len(self.body)
        return int(self._real().seg_length(seg))

    def seg_read(self, seg: int, offset: int, dst: memoryview) -> int:
        if seg != 1 or self.body is None:
            return int(self._real().seg_read(seg, offset, dst))
        n = len(dst)
        if offset < 0 or offset + n > len(self.body):
            return OUT_OF_RANGE
        dst[:] = self.body[offset : offset + n]
        return n

    def seg_write(self, seg: int, offset: int, src: Any) -> int:
        if seg != 1 or self.body is None:
            return int(self._real().seg_write(seg, offset, src))
        n = len(src)
        if offset < 0 or offset + n > len(self.body):
            return OUT_OF_RANGE
        self.body[offset : offset + n] = src
        return n

    def _get(self, seg: int, offset: int, size: int, call: str) -> int:
        if seg != 1 or self.body is None:
            return int(getattr(self._real(), call)(seg, offset))
        if offset < 0 or offset + size > len(self.body):
            return OUT_OF_RANGE
        return int.from_bytes(self.body[offset : offset + size], "big")

    def seg_get_u8(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 1, "seg_get_u8")

    def seg_get_u16(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 2, "seg_get_u16")

    def seg_get_u32(self, seg: int, offset: int) -> int:
        return self._get(seg, offset, 4, "seg_get_u32")

    def _set(self, seg: int, offset: int, value: int, size: int, call: str) -> int:
        if seg != 1 or self.body is None:
            return int(getattr(self._real(), call)(seg, offset, value))
        if offset < 0 or offset + size > len(self.body):
            return OUT_OF_RANGE
        if not 0 <= value < 1 << (8 * size):
            return BAD_ARGUMENT
        self.body[offset : offset + size] = value.to_bytes(size, "big")
        return OK

    def seg_set_u8(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value, 1, "seg_set_u8")

    def seg_set_u16(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value, 2, "seg_set_u16")

    def seg_set_u32(self, seg: int, offset: int, value: int) -> int:
        return self._set(seg, offset, value & 0xFFFFFFFF, 4, "seg_set_u32")

    def env_origin_kind(self) -> int:
        if self.body is None:
            return int(self._real().env_origin_kind())
        return _NETWORK

    def env_prev_hop(self, dst: memoryview) -> int:
        if self.body is None:
            return int(self._real().env_prev_hop(dst))
        return PniHost._fill(dst, self.prev_hop)

    def node_address(self, dst: memoryview) -> int:
        if self.body is None:
            return int(self._real().node_address(dst))
        return PniHost._fill(dst, self.node_raw)


    def python_calls(self, pni: Any) -> dict[str, Callable[..., Any]]:
        """Direct forms of the hot calls of ``pni`` (a ``pni_api.HostPNI`` over this host): the
        same results and errors, one Python call instead of three while a run is on."""
        lean = self
        read, length_of, u8, u16, u32 = pni.seg_read, pni.seg_length, pni.seg_get_u8, pni.seg_get_u16, pni.seg_get_u32
        origin, prev_hop, node_address = pni.env_origin_kind, pni.env_prev_hop, pni.node_address

        def seg_read(seg: int, offset: int, length: int) -> bytes:
            body = lean.body
            if (
                seg == 1 and body is not None and offset.__class__ is int and length.__class__ is int
                and 0 <= offset and 0 <= length and offset + length <= len(body)
            ):
                return bytes(body[offset : offset + length])
            return read(seg, offset, length)  # type: ignore[no-any-return]

        def seg_length(seg: int) -> int:
            body = lean.body
            return len(body) if seg == 1 and body is not None else length_of(seg)  # type: ignore[no-any-return]

        def getter(size: int, slow: Callable[[int, int], int]) -> Callable[[int, int], int]:
            def get(seg: int, offset: int) -> int:
                body = lean.body
                if seg == 1 and body is not None and offset.__class__ is int and 0 <= offset and offset + size <= len(body):
                    return int.from_bytes(body[offset : offset + size], "big")
                return slow(seg, offset)

            return get

        def env_origin_kind() -> int:
            return _NETWORK if lean.body is not None else origin()  # type: ignore[no-any-return]

        def env_prev_hop() -> bytes:
            return lean.prev_hop if lean.body is not None else prev_hop()  # type: ignore[no-any-return]

        def node_address_() -> bytes:
            return lean.node_raw if lean.body is not None else node_address()  # type: ignore[no-any-return]

        return {
            "seg_read": seg_read,
            "seg_length": seg_length,
            "seg_get_u8": getter(1, u8),
            "seg_get_u16": getter(2, u16),
            "seg_get_u32": getter(4, u32),
            "env_origin_kind": env_origin_kind,
            "env_prev_hop": env_prev_hop,
            "node_address": node_address_,
        }


_NETWORK = int(Origin.NETWORK)
