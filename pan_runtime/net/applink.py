"""Application links over UNIX domain stream sockets: the node's side.

Framing, both directions: ``u32 length`` (big-endian; counts the bytes after it), ``u8
type``, ``u32 request id``, payload. The message types are listed in ``docs/network.md``
and below. Each connection is one ``AppLink`` of the node: code sees only the opaque token
the node issues for it, and the token dies when the connection closes, so data reaches an
application only through its own connection.

Output is written without blocking; what the socket does not take is buffered up to
``out_limit`` bytes, beyond which deliveries are dropped and counted (``app_backpressure``)
so a slow or stuck application never stalls the node.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import LinkError, PanError
from pan_runtime.node.links import AppLink, Delivery
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
    "OK",
    "ERROR",
    "DELIVERY",
    "PROTOCOL_VERSION",
    "frame",
]

PROTOCOL_VERSION = 1
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
OK = 64
ERROR = 65
DELIVERY = 66

#: longest path a UNIX socket can bind to on Linux (sun_path is 108 bytes with the NUL)
MAX_SOCKET_PATH = 107

log = logging.getLogger("pan.applink")


def frame(kind: int, req: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One frame of the application-link protocol."""
    return FRAME.pack(FRAME_HEAD + len(payload), kind, req) + bytes(payload)


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
        self.link: AppLink = server.node.attach(self.name, sink=self._deliver)
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
        rbuf = self.rbuf
        rbuf += data
        pos = 0
        n = len(rbuf)
        limit = self.server.max_frame
        view = memoryview(rbuf)
        try:
            while n - pos >= FRAME.size:
                length, kind, req = FRAME.unpack_from(rbuf, pos)
                if length < FRAME_HEAD or length > limit:
                    log.warning("application %s sent a frame of %d bytes (limit %d); closing it", self.name, length, limit)
                    self.server.bad_frames += 1
                    view.release()
                    self.close()
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

    def _handle(self, kind: int, req: int, payload: memoryview) -> None:
        node = self.server.node
        if kind == INJECT:
            if not self.link.closed:
                node.inject(payload, self.link)
            return
        try:
            reply = self._request(kind, payload)
        except PanError as exc:
            self._write(frame(ERROR, req, str(exc).encode()))
            return
        except Exception as exc:  # a bug must not take the node down
            log.exception("application request %d failed", kind)
            self._write(frame(ERROR, req, f"{type(exc).__name__}: {exc}".encode()))
            return
        self._write(frame(OK, req, reply))

    def _request(self, kind: int, payload: memoryview) -> bytes:
        server = self.server
        node = server.node
        if kind == INSTALL:
            if len(payload) < 1:
                raise LinkError("INSTALL needs a flags byte and a .pco")
            code = CodeObject.from_pco(bytes(payload[1:]))
            node.install(code, origin=CodeOrigin.LOCAL, pin=bool(payload[0] & 1))
            if server.on_install is not None:
                server.on_install(code.name)
            return code.name
        if kind in (UNINSTALL, USE_PORTMAPPER):
            if len(payload) != 32:
                raise LinkError(f"expected a 32-byte code object name, got {len(payload)} bytes")
            name = bytes(payload)
            if kind == UNINSTALL:
                node.uninstall(name)
            else:
                node.use_portmapper(name)
            return b""
        if kind == STATS:
            return json.dumps(server.stats_fn(), default=str).encode()
        if kind == PING:
            return b""
        if kind == LIST:
            out = [
                {
                    "name": e.code.hex_name,
                    "runtime": e.runtime,
                    "label": e.code.short_name,
                    "origin": e.origin,
                    "pinned": e.pinned,
                }
                for e in node.cache
            ]
            return json.dumps(out).encode()
        raise LinkError(f"unknown application-link message type {kind}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.loop.remove(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        self.link.close()
        self.server.connections.discard(self)


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
        stats_fn: Callable[[], dict[str, Any]] | None = None,
    ):
        self.node = node
        self.path = Path(path)
        self.loop = loop
        self.max_frame = max_frame
        self.out_limit = out_limit
        self.stats_fn = stats_fn or node.statistics
        self.on_install: Callable[[bytes], None] | None = None
        self.connections: set[AppConnection] = set()
        self.accepted = 0
        self.backpressure = 0
        self.bad_frames = 0
        self.disconnects_mid_delivery = 0
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
        sock.setblocking(False)
        self.sock = sock
        loop.add(sock, selectors.EVENT_READ, self._accept)

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

    def _accept(self, _mask: int) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept on %s: %s", self.path, exc)
                return
            sock.setblocking(False)
            self.accepted += 1
            conn = AppConnection(self, sock, self.accepted)
            if not conn.closed:
                self.connections.add(conn)

    def info(self) -> dict[str, Any]:
        return {
            "socket": str(self.path),
            "connected": len(self.connections),
            "accepted": self.accepted,
            "backpressure_drops": self.backpressure,
            "bad_frames": self.bad_frames,
            "disconnects_mid_delivery": self.disconnects_mid_delivery,
        }

    def close(self) -> None:
        for c in list(self.connections):
            c.close()
        self.loop.remove(self.sock)
        self.sock.close()
        self.path.unlink(missing_ok=True)
