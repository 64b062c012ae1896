"""Application links over UNIX domain stream sockets: the node's side.

Framing, both directions: ``u32 length`` (big-endian; counts the bytes after it), ``u8
type``, ``u32 request id``, payload. The message types are listed in ``docs/network.md``
and below. Each connection is one ``AppLink`` of the node: code sees only the opaque token
the node issues for it, and the token dies when the connection closes, so data reaches an
application only through its own connection.

The link carries its peer's credentials (``SO_PEERCRED``: uid, pid). Ports a connection binds
and code it pins are its own until it closes (``node/ports.py``, ``node/pins.py``); another
connection's request to change them is refused with ``Status.NOT_OWNER``, unless its peer is
root and it sets the force flag. Every refusal is an ``ERROR`` frame whose first byte is a
``Status``; the client library raises the matching ``PanError``.

Input is bounded: a frame longer than ``max_frame`` closes its connection, and the bytes of
partial frames held for all connections together may not pass ``in_limit`` (the connection
whose data would pass it is closed); at most ``max_connections`` are served, later ones are
closed at once. Each such close is counted by reason (``info()["closed"]``).

Output is written without blocking; what the socket does not take is buffered up to
``out_limit`` bytes, beyond which deliveries are dropped and counted (``app_backpressure``)
so a slow or stuck application never stalls the node.
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import selectors
import socket
import stat
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.errreport import ErrorReport
from pan_runtime.errors import (
    CapsuleError,
    CodeObjectError,
    LimitError,
    LinkError,
    OwnershipError,
    PanError,
)
from pan_runtime.net.listener import Listener
from pan_runtime.node.links import AppLink, Delivery
from pan_runtime.node.ports import PORTMAP_FORCE
from pan_runtime.node.trust import CodeOrigin

if TYPE_CHECKING:
    from pan_runtime.net.udp import EventLoop
    from pan_runtime.node.node import Node

__all__ = [
    "AppServer",
    "AppConnection",
    "FRAME",
    "HELLO",
    "INSTALL",
    "UNINSTALL",
    "USE_PORTMAPPER",
    "INJECT",
    "STATS",
    "PING",
    "LIST",
    "BIND",
    "UNBIND",
    "STATE",
    "OK",
    "ERROR",
    "DELIVERY",
    "ERROR_REPORT",
    "REPORT_HEAD",
    "encode_report_frame",
    "decode_report_frame",
    "FORCE",
    "PROTOCOL_VERSION",
    "Status",
    "error_class",
    "frame",
    "peer_credentials",
]

#: 2: ERROR frames start with a ``Status`` byte; BIND and UNBIND; flags on UNINSTALL/USE_PORTMAPPER
PROTOCOL_VERSION = 2
FRAME = struct.Struct(">IBI")  # length (of what follows), type, request id
FRAME_HEAD = FRAME.size - 4
_U16 = struct.Struct(">H")

HELLO = 1
INSTALL = 2
UNINSTALL = 3
USE_PORTMAPPER = 4
INJECT = 5
STATS = 6
PING = 7
LIST = 8
BIND = 9
UNBIND = 10
STATE = 11
OK = 64
ERROR = 65
DELIVERY = 66
#: node to application: an error report about a capsule this connection sent (a client that
#: does not know the type ignores it): reporter address, code name, reason length u8, detail
#: length u16, quote length u8, then reason, detail and quote (``pan_runtime.data.errreport``)
ERROR_REPORT = 67
REPORT_HEAD = struct.Struct(">16s32sBHB")

#: flags bit of BIND, UNBIND, UNINSTALL, USE_PORTMAPPER: override another connection's
#: ownership (honoured only for a root peer)
FORCE = PORTMAP_FORCE
_BIND = struct.Struct(">HB")  # port, flags; then optionally the 32-byte portmapper name
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_STATE = struct.Struct(">II")  # after the code name: most entries, most key + value bytes (0: default)

#: what one STATE reply carries at most unless the request asks for less: entries, and bytes
#: of keys and values (sent as hex, so twice that); the bytes are further bounded by a
#: quarter of ``limits.app_out_bytes``, so a dump never outgrows what a connection may buffer
STATE_MAX_ENTRIES = 10_000
STATE_DEFAULT_ENTRIES = 1000
STATE_DEFAULT_BYTES = 1 << 20

#: longest path a UNIX socket can bind to on Linux (sun_path is 108 bytes with the NUL)
MAX_SOCKET_PATH = 107

log = logging.getLogger("pan.applink")


class Status(enum.IntEnum):
    """What kind of refusal an ERROR frame carries (its first byte)."""

    #: any other refusal (a ``PanError``)
    FAILED = 1
    #: the request was malformed (``LinkError``, ``CapsuleError``)
    BAD_REQUEST = 2
    #: a code object could not be installed, found or used (``CodeObjectError``)
    CODE = 3
    #: it belongs to another connection (``OwnershipError``)
    NOT_OWNER = 4
    #: a limit of the node (``LimitError``)
    LIMIT = 5
    #: a bug in the node (logged there)
    INTERNAL = 6


_STATUS_OF: list[tuple[type[PanError], Status]] = [
    (OwnershipError, Status.NOT_OWNER),
    (LimitError, Status.LIMIT),
    (CodeObjectError, Status.CODE),
    (LinkError, Status.BAD_REQUEST),
    (CapsuleError, Status.BAD_REQUEST),
]
_ERROR_OF = {
    Status.NOT_OWNER: OwnershipError,
    Status.LIMIT: LimitError,
    Status.CODE: CodeObjectError,
    Status.BAD_REQUEST: LinkError,
}


def status_of(exc: BaseException) -> Status:
    """The status an ERROR frame carries for ``exc``."""
    for cls, status in _STATUS_OF:
        if isinstance(exc, cls):
            return status
    return Status.FAILED if isinstance(exc, PanError) else Status.INTERNAL


def error_class(status: int) -> type[PanError]:
    """The ``PanError`` class a client raises for an ERROR frame's status byte."""
    try:
        return _ERROR_OF.get(Status(status), PanError)
    except ValueError:
        return PanError


def frame(kind: int, req: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One frame of the application-link protocol."""
    return FRAME.pack(FRAME_HEAD + len(payload), kind, req) + bytes(payload)


def encode_report_frame(r: ErrorReport) -> bytes:
    """An ERROR_REPORT frame carrying ``r``."""
    reason, detail = r.reason.encode("ascii", errors="replace"), r.detail.encode("utf-8", errors="replace")
    head = REPORT_HEAD.pack(r.reporter.raw, r.code, len(reason), len(detail), len(r.quote))
    return frame(ERROR_REPORT, 0, head + reason + detail + r.quote)


def decode_report_frame(payload: bytes) -> ErrorReport:
    """The ``ErrorReport`` an ERROR_REPORT frame carries; ``LinkError`` if malformed."""
    if len(payload) < REPORT_HEAD.size:
        raise LinkError(f"error report frame of {len(payload)} bytes")
    reporter, code, rlen, dlen, qlen = REPORT_HEAD.unpack_from(payload)
    off = REPORT_HEAD.size
    if len(payload) != off + rlen + dlen + qlen:
        raise LinkError("error report frame lengths do not add up")
    reason = payload[off : off + rlen].decode("ascii", errors="replace")
    detail = payload[off + rlen : off + rlen + dlen].decode("utf-8", errors="replace")
    return ErrorReport(NodeAddress(reporter), reason, detail, code, payload[off + rlen + dlen :])


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a UNIX socket; (-1, -1) if unknown (never root)."""
    try:
        pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    except (OSError, AttributeError, struct.error):
        return -1, -1
    return pid, uid


class AppConnection:
    """One connected application: its socket, its ``AppLink`` and its buffers."""

    def __init__(self, server: AppServer, sock: socket.socket, number: int):
        self.server = server
        self.sock = sock
        self.name = f"app{number}"
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.closed = False
        self.dropped = 0
        self.pid, self.uid = peer_credentials(sock)
        self.link: AppLink = server.node.attach(self.name, sink=self._deliver, uid=self.uid, pid=self.pid)
        self.link.report_sink = self._report
        self._writing = False
        server.loop.add(sock, selectors.EVENT_READ, self.on_event)
        node = server.node
        hello = bytes([PROTOCOL_VERSION]) + node.address.raw + node.name.encode()
        self._write(frame(HELLO, 0, hello))

    # -- output ------------------------------------------------------------------------
    def _deliver(self, d: Delivery) -> None:
        if self.closed:
            return
        if len(self.wbuf) > self.server.out_limit:
            self.dropped += 1
            self.server.backpressure += 1
            self.server.node.count_drop("app_backpressure", self.name)
            return
        payload = _U16.pack(d.port) + d.code + d.data
        self._write(FRAME.pack(FRAME_HEAD + len(payload), DELIVERY, 0) + payload)

    def _report(self, r: ErrorReport) -> None:
        if self.closed:
            return
        if len(self.wbuf) > self.server.out_limit:
            self.dropped += 1
            self.server.backpressure += 1
            self.server.node.count_drop("app_backpressure", f"{self.name}: an error report")
            return
        self._write(encode_report_frame(r))

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.wbuf:
            self.wbuf += data
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self._lost(exc)
            return
        if n < len(data):
            self.wbuf += data[n:]
            self._want_write(True)

    def _flush(self) -> None:
        while self.wbuf and not self.closed:
            try:
                n = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(exc)
                return
            del self.wbuf[:n]
        if not self.wbuf:
            self._want_write(False)

    def _want_write(self, on: bool) -> None:
        if self.closed or on == self._writing:
            return
        self._writing = on
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        self.server.loop.modify(self.sock, ev, self.on_event)

    def _lost(self, exc: BaseException) -> None:
        log.info("application %s went away mid-write: %s", self.name, exc)
        self.server.disconnects_mid_delivery += 1
        self.close()

    # -- input -------------------------------------------------------------------------
    def on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush()
        if mask & selectors.EVENT_READ and not self.closed:
            self._read()

    def _read(self) -> None:
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError as exc:
            log.info("application %s: %s", self.name, exc)
            self.close()
            return
        if not data:
            self.close()
            return
        server = self.server
        if server.in_bytes + len(data) > server.in_limit:
            server.refuse(self, "input_limit", f"partial frames of all applications would pass {server.in_limit} bytes (limits.app_in_bytes)")
            return
        rbuf = self.rbuf
        rbuf += data
        server.in_bytes += len(data)
        pos = 0
        n = len(rbuf)
        limit = server.max_frame
        view = memoryview(rbuf)
        try:
            while n - pos >= FRAME.size:
                length, kind, req = FRAME.unpack_from(rbuf, pos)
                if length < FRAME_HEAD or length > limit:
                    server.bad_frames += 1
                    view.release()
                    server.refuse(self, "bad_frame", f"a frame of {length} bytes (limits.app_max_frame: {limit})")
                    return
                end = pos + 4 + length
                if end > n:
                    break
                self._handle(kind, req, view[pos + FRAME.size : end])
                pos = end
                if self.closed:
                    return
        finally:
            view.release()
        if pos:
            del rbuf[:pos]
            server.in_bytes -= pos

    def _handle(self, kind: int, req: int, payload: memoryview) -> None:
        node = self.server.node
        if kind == INJECT:
            if not self.link.closed:
                try:
                    node.inject(payload, self.link)
                except CapsuleError as exc:  # a portmapper capsule that is not one
                    node.count_drop(f"malformed:{exc.reason}", str(exc))
                except PanError as exc:  # a port request refused: no reply to carry it, so counted
                    node.count_drop("port_refused", f"{self.name}: {exc}")
            return
        try:
            reply = self._request(kind, payload)
        except PanError as exc:
            self._write(frame(ERROR, req, bytes([status_of(exc)]) + str(exc).encode()))
            return
        except Exception as exc:  # a bug must not take the node down
            log.exception("application request %d failed", kind)
            self._write(frame(ERROR, req, bytes([Status.INTERNAL]) + f"{type(exc).__name__}: {exc}".encode()))
            return
        self._write(frame(OK, req, reply))

    def _request(self, kind: int, payload: memoryview) -> bytes:
        server = self.server
        node = server.node
        link = self.link
        if kind == INSTALL:
            if len(payload) < 1:
                raise LinkError("INSTALL needs a flags byte and a .pco")
            code = CodeObject.from_pco(bytes(payload[1:]))
            node.install(code, origin=CodeOrigin.LOCAL, pin=bool(payload[0] & 1), owner=link)
            if server.on_install is not None:
                server.on_install(code.name)
            return code.name
        if kind in (UNINSTALL, USE_PORTMAPPER):
            if len(payload) not in (32, 33):
                raise LinkError(f"expected a 32-byte code object name (and a flags byte), got {len(payload)} bytes")
            name = bytes(payload[:32])
            force = len(payload) == 33 and bool(payload[32] & FORCE)
            if kind == UNINSTALL:
                node.uninstall(name, by=link, force=force)
            else:
                node.use_portmapper(name, by=link, force=force)
            return b""
        if kind in (BIND, UNBIND):
            if len(payload) not in (_BIND.size, _BIND.size + 32):
                raise LinkError(f"BIND and UNBIND take a port, a flags byte and optionally the portmapper's name; got {len(payload)} bytes")
            port, flags = _BIND.unpack_from(payload)
            if len(payload) > _BIND.size and bytes(payload[_BIND.size :]) != node.portmapper:
                raise CodeObjectError(f"{bytes(payload[_BIND.size :]).hex()[:12]} is not this node's portmapper; call use_portmapper first")
            if kind == BIND:
                node.bind_port(link, port, force=bool(flags & FORCE))
            else:
                node.unbind_port(link, port, force=bool(flags & FORCE))
            return b""
        if kind == STATS:
            return json.dumps(server.stats_fn(), default=str).encode()
        if kind == PING:
            return b""
        if kind == LIST:
            now = node.now_ns()
            out = [
                {
                    "name": e.code.hex_name,
                    "runtime": e.runtime,
                    "label": e.code.short_name,
                    "manifest_label": e.code.label,
                    "origin": e.origin,
                    "pinned": e.pinned,
                    "portmapper": e.code.name == node.portmapper,
                    "size": e.code.size,
                    "exports": list(e.code.manifest.exports),
                    "dependencies": [d.hex() for d in e.code.manifest.dependencies],
                    "signed": bool(e.code.signatures),
                    "quarantined": not e.breaker.allows(now),
                    "state_entries": len(e.state),
                    "state_bytes": e.state.bytes_used,
                }
                for e in node.cache
            ]
            return json.dumps(out).encode()
        if kind == STATE:
            return self._state_dump(payload)
        raise LinkError(f"unknown application-link message type {kind}")

    def _state_dump(self, payload: memoryview) -> bytes:
        """A code object's soft state as JSON (keys and values in hex), for the node's own
        user or root only: state may hold what other applications' capsules carried."""
        if len(payload) not in (32, 32 + _STATE.size):
            raise LinkError(f"STATE takes a 32-byte code object name (and two u32 bounds), got {len(payload)} bytes")
        if self.uid not in (0, os.getuid()):
            raise OwnershipError(f"reading soft state is for the node's user (uid {os.getuid()}) or root, not uid {self.uid}")
        name = bytes(payload[:32])
        want_entries, want_bytes = _STATE.unpack_from(payload, 32) if len(payload) > 32 else (0, 0)
        node = self.server.node
        entry = node.cache.peek(name)
        if entry is None:
            raise CodeObjectError(f"code object {name.hex()[:12]} is not installed on {node.name}")
        max_entries = min(want_entries or STATE_DEFAULT_ENTRIES, STATE_MAX_ENTRIES)
        max_bytes = min(want_bytes or STATE_DEFAULT_BYTES, max(1, self.server.out_limit // 4))
        state = entry.state
        items, truncated = state.peek_items(max_entries, max_bytes)
        return json.dumps(
            {
                "code": entry.code.hex_name,
                "label": entry.code.short_name,
                "runtime": entry.runtime,
                "count": len(state),
                "bytes": state.bytes_used,
                "max_entries": state.max_entries,
                "max_bytes": state.max_bytes,
                "evictions": state.evictions,
                "expirations": state.expirations,
                "truncated": truncated,
                "entries": [{"key": k.hex(), "value": v.hex(), "ttl_ms": ttl} for k, v, ttl in items],
            }
        ).encode()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        server = self.server
        server.in_bytes -= len(self.rbuf)
        self.rbuf = bytearray()
        server.loop.remove(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        self.link.close()
        server.connections.discard(self)


class AppServer:
    """The node's listening UNIX socket for applications."""

    def __init__(
        self,
        node: Node,
        path: str | os.PathLike[str],
        loop: EventLoop,
        *,
        max_frame: int = 16 << 20,
        out_limit: int = 4 << 20,
        in_limit: int = 32 << 20,
        max_connections: int = 64,
        stats_fn: Callable[[], dict[str, Any]] | None = None,
    ):
        self.node = node
        self.path = Path(path)
        self.loop = loop
        self.max_frame = max_frame
        self.out_limit = out_limit
        #: bytes of partial frames held for all connections together, at most
        self.in_limit = max(in_limit, max_frame)
        self.in_bytes = 0
        self.max_connections = max_connections
        self.stats_fn = stats_fn or node.statistics
        self.on_install: Callable[[bytes], None] | None = None
        self.connections: set[AppConnection] = set()
        self.accepted = 0
        self.backpressure = 0
        self.bad_frames = 0
        self.disconnects_mid_delivery = 0
        #: connections the node closed, by reason: bad_frame, input_limit, connections_full
        self.closed_for: Counter[str] = Counter()
        n = len(os.fsencode(str(self.path)))
        if n > MAX_SOCKET_PATH:
            raise LinkError(
                f"application socket path {self.path} is {n} bytes; UNIX socket paths are limited to "
                f"{MAX_SOCKET_PATH}: choose a shorter node.app_socket"
            )
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise LinkError(f"application socket {self.path} is in use by a running node") from None
            raise LinkError(f"cannot listen on application socket {self.path}: {exc.strerror}") from None
        self.sock = sock
        self.listener = Listener(sock, loop, self._accept, what=f"application socket {self.path}")

    def _remove_stale(self) -> None:
        """Remove a socket file left by a node that died, but never a live node's socket."""
        p = self.path
        try:
            st = p.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise LinkError(f"application socket path {p} exists and is not a socket; remove it or pick another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(p))
        except OSError:
            p.unlink(missing_ok=True)
            return
        finally:
            probe.close()
        raise LinkError(f"application socket {p} is in use by a running node")

    def refuse(self, conn: AppConnection | None, reason: str, detail: str) -> None:
        """Close ``conn`` (None: a connection not taken on) for ``reason``: counted, and logged
        at the 1st, 10th, 100th, ... time so a flood of them does not flood the log too."""
        self.closed_for[reason] += 1
        n = self.closed_for[reason]
        if n == 10 ** (len(str(n)) - 1):
            log.warning("application socket %s: closed %s (%s); %d so far", self.path, conn.name if conn else "a new connection", detail, n)
        if conn is not None:
            conn.close()

    def _accept(self, sock: socket.socket) -> None:
        self.accepted += 1
        if len(self.connections) >= self.max_connections:
            sock.close()
            self.refuse(None, "connections_full", f"{self.max_connections} applications are connected (limits.app_connections)")
            return
        sock.setblocking(False)
        conn = AppConnection(self, sock, self.accepted)
        if not conn.closed:
            self.connections.add(conn)

    def info(self) -> dict[str, Any]:
        return {
            "socket": str(self.path),
            "connected": len(self.connections),
            "backpressure_drops": self.backpressure,
            "bad_frames": self.bad_frames,
            "disconnects_mid_delivery": self.disconnects_mid_delivery,
            "input_bytes": self.in_bytes,
            "closed": dict(self.closed_for),
            **self.listener.info(),
        }

    def close(self) -> None:
        for c in list(self.connections):
            c.close()
        self.listener.close()
        self.path.unlink(missing_ok=True)
