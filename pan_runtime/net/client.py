"""The application library: a program's handle on a node running in another process.

``Client`` speaks the application-link protocol (``pan_runtime.net.applink``) over the node's
UNIX socket and mirrors the in-process ``Application``: ``install``, ``send``, ``bind``,
``unbind``, ``receive``, ``deliveries``, ``pending``, ``close``, plus ``stats`` and
``use_portmapper``. It is synchronous and single-threaded: requests wait for their reply,
and deliveries that arrive meanwhile are kept in order for ``receive``.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any

from pan_runtime.data.address import NodeAddress
from pan_runtime.data.capsule import DEFAULT_HOP_LIMIT
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import ClosedError, CodeObjectError, LinkError, PanError
from pan_runtime.net.application import PORTMAP_BIND, PORTMAP_UNBIND, capsule_bytes
from pan_runtime.net.applink import (
    DELIVERY,
    ERROR,
    FRAME,
    FRAME_HEAD,
    HELLO,
    INJECT,
    INSTALL,
    LIST,
    OK,
    PING,
    STATS,
    UNINSTALL,
    USE_PORTMAPPER,
    frame,
)
from pan_runtime.node.links import Delivery

__all__ = ["Client"]

_U16 = struct.Struct(">H")


class Client:
    """A connection to a node's application socket (see ``docs/network.md``)."""

    def __init__(self, path: str | Path, *, request_timeout: float = 60.0):
        self.path = str(path)
        self.request_timeout = request_timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise LinkError(f"cannot connect to the node at {self.path}: {exc.strerror or exc}") from None
        self.sock = sock
        self._mode: float | None = -1.0  # the socket's current timeout (cached: each change is a syscall)
        self._rbuf = bytearray()
        self._inbox: deque[Delivery] = deque()
        self._next_id = 1
        self._closed = False
        self.portmapper: bytes | None = None
        kind, _req, payload = self._read_frame(time.monotonic() + request_timeout, expect_hello=True)
        if kind != HELLO or len(payload) < 17:
            self.close()
            raise LinkError(f"{self.path} did not greet like a pan node")
        self.protocol_version = payload[0]
        self.address = NodeAddress(payload[1:17])
        self.node_name = payload[17:].decode(errors="replace")

    @classmethod
    def connect(cls, path: str | Path, *, timeout: float = 10.0, request_timeout: float = 60.0) -> Client:
        """Connect, retrying until the node's socket accepts or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                return cls(path, request_timeout=request_timeout)
            except LinkError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    # -- the Application API ------------------------------------------------------------
    def install(self, code: CodeObject, *, pin: bool = False) -> bytes:
        """Install ``code`` on the node as local code; returns its name. Raises ``CodeObjectError``."""
        try:
            return self._request(INSTALL, bytes([1 if pin else 0]) + code.to_pco())
        except _NodeRefused as exc:
            raise CodeObjectError(str(exc)) from None

    def uninstall(self, code: CodeObject | bytes) -> None:
        try:
            self._request(UNINSTALL, _name(code))
        except _NodeRefused as exc:
            raise CodeObjectError(str(exc)) from None

    def use_portmapper(self, code: CodeObject | bytes) -> None:
        """Make an installed code object the node's portmapper (and ``bind``'s default)."""
        try:
            self._request(USE_PORTMAPPER, _name(code))
        except _NodeRefused as exc:
            raise CodeObjectError(str(exc)) from None
        self.portmapper = _name(code)

    def send(
        self,
        code: CodeObject | bytes,
        body: bytes | bytearray | memoryview,
        *,
        home: NodeAddress | None = None,
        hop_limit: int = DEFAULT_HOP_LIMIT,
    ) -> bool:
        """Inject a capsule of ``code`` with ``body`` (home: the node). True once written."""
        return self.send_raw(capsule_bytes(code, body, home or self.address, hop_limit))

    def send_raw(self, capsule: bytes | bytearray | memoryview) -> bool:
        """Inject a whole capsule given as bytes (header + body)."""
        self._check_open()
        data = FRAME.pack(FRAME_HEAD + len(capsule), INJECT, 0) + bytes(capsule)
        self._timeout(None)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise LinkError(f"the node at {self.path} went away: {exc}") from None
        return True

    def bind(self, port: int, portmapper: CodeObject | bytes | None = None) -> bool:
        """Ask the portmapper to deliver capsules for ``port`` to this connection."""
        return self._portmap(port, PORTMAP_BIND, portmapper)

    def unbind(self, port: int, portmapper: CodeObject | bytes | None = None) -> bool:
        return self._portmap(port, PORTMAP_UNBIND, portmapper)

    def _portmap(self, port: int, op: int, portmapper: CodeObject | bytes | None) -> bool:
        pm = _name(portmapper) if portmapper is not None else self.portmapper
        if pm is None:
            raise CodeObjectError("no portmapper named: call use_portmapper(code) first or pass portmapper=")
        ok = self.send(pm, struct.pack(">HBB", port, op, 0))
        self.ping_node()  # the node evaluates in order: once this returns, the binding is in place
        return ok

    def receive(self, timeout: float | None = 0.0) -> Delivery | None:
        """The oldest delivery, waiting up to ``timeout`` seconds (None: forever); None if none came."""
        if self._inbox:
            return self._inbox.popleft()
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            got = self._read_frame(deadline)
            if got is None:
                return None
            self._unexpected(got)
        return self._inbox.popleft()

    def deliveries(self) -> list[Delivery]:
        """Every delivery received so far (reads what the socket already holds, never waits)."""
        if not self._closed:
            while True:
                got = self._read_frame(time.monotonic())
                if got is None:
                    break
                self._unexpected(got)
        out = list(self._inbox)
        self._inbox.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self._inbox)

    # -- more than the in-process API ---------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The node's statistics (``Node.statistics()`` plus links, demand loading and apps)."""
        return json.loads(self._request(STATS, b""))

    def list_code(self) -> list[dict[str, Any]]:
        return json.loads(self._request(LIST, b""))

    def ping_node(self) -> float:
        """Round trip of the application link itself, in seconds."""
        t0 = time.perf_counter()
        self._request(PING, b"")
        return time.perf_counter() - t0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"client of {self.path} is closed")

    def _request(self, kind: int, payload: bytes) -> bytes:
        self._check_open()
        req = self._next_id
        self._next_id = (req + 1) & 0xFFFFFFFF or 1
        self._timeout(None)
        try:
            self.sock.sendall(frame(kind, req, payload))
        except OSError as exc:
            raise LinkError(f"the node at {self.path} went away: {exc}") from None
        deadline = time.monotonic() + self.request_timeout
        while True:
            got = self._read_frame(deadline)
            if got is None:
                raise LinkError(f"the node at {self.path} did not answer within {self.request_timeout:.0f} s")
            k, r, data = got
            if r == req and k in (OK, ERROR):
                if k == ERROR:
                    raise _NodeRefused(data.decode(errors="replace"))
                return data
            self._unexpected(got)

    def _unexpected(self, got: tuple[int, int, bytes]) -> None:
        kind, _req, data = got
        if kind == DELIVERY and len(data) >= 34:
            (port,) = _U16.unpack_from(data, 0)
            self._inbox.append(Delivery(port, data[34:], data[2:34]))

    def _read_frame(self, deadline: float | None, expect_hello: bool = False) -> tuple[int, int, bytes] | None:
        rbuf = self._rbuf
        while True:
            if len(rbuf) >= FRAME.size:
                length, kind, req = FRAME.unpack_from(rbuf, 0)
                end = 4 + length
                if len(rbuf) >= end:
                    data = bytes(rbuf[FRAME.size : end])
                    del rbuf[:end]
                    return kind, req, data
            if deadline is None:
                self._timeout(None)
            else:
                self._timeout(max(0.0, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 18)
            except (BlockingIOError, TimeoutError):
                if expect_hello:
                    raise LinkError(f"{self.path} did not greet like a pan node") from None
                return None
            except OSError as exc:
                raise LinkError(f"the node at {self.path} went away: {exc}") from None
            if not chunk:
                self.close()
                raise LinkError(f"the node at {self.path} closed the connection")
            rbuf += chunk


    def _timeout(self, t: float | None) -> None:
        if t != self._mode:
            self.sock.settimeout(t)
            self._mode = t


class _NodeRefused(PanError):
    """The node answered a request with an error message."""


def _name(code: CodeObject | bytes) -> bytes:
    name = code.name if isinstance(code, CodeObject) else bytes(code)
    if len(name) != 32:
        raise CodeObjectError(f"a code object name is 32 bytes, got {len(name)}")
    return name
