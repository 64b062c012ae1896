"""The application library: a program's handle on a node running in another process.

``Client`` speaks the application-link protocol (``pan_runtime.net.applink``) over the node's
UNIX socket and mirrors the in-process ``Application``: ``install``, ``send``, ``bind``,
``unbind``, ``receive``, ``deliveries``, ``errors``, ``pending``, ``close``, plus ``stats`` and
``use_portmapper``. It is synchronous and single-threaded: requests wait for their reply,
and deliveries that arrive meanwhile are kept in order for ``receive``.

Error reports (``ErrorReport``: a node on the way dropped a capsule this connection sent, and
says who, why and what to do) arrive in order with the deliveries: ``receive(reports=True)``
returns them as they come; otherwise they are kept aside (the last ``MAX_REPORTS``) for
``errors()``.

A refusal raises the ``PanError`` its status names: ``OwnershipError`` when the port or code
belongs to another connection, ``LimitError`` at a node limit, ``CodeObjectError`` for code
that cannot be installed or used, ``LinkError`` for a malformed request. Ports bound and code
pinned through a ``Client`` are its connection's: they last until it closes, with no renewal.
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
from pan_runtime.data.errreport import ErrorReport
from pan_runtime.errors import ClosedError, CodeObjectError, LinkError
from pan_runtime.net.application import capsule_bytes
from pan_runtime.net.applink import (
    BIND,
    DELIVERY,
    ERROR,
    ERROR_REPORT,
    FORCE,
    FRAME,
    FRAME_HEAD,
    HELLO,
    INJECT,
    INSTALL,
    LIST,
    OK,
    PING,
    PROTOCOL_VERSION,
    STATE,
    STATS,
    UNBIND,
    UNINSTALL,
    USE_PORTMAPPER,
    decode_report_frame,
    error_class,
    frame,
)
from pan_runtime.node.links import Delivery

__all__ = ["Client", "ErrorReport"]

#: error reports a client keeps for ``errors()`` (older ones are forgotten)
MAX_REPORTS = 1024

_U16 = struct.Struct(">H")
_BIND = struct.Struct(">HB")
_STATE = struct.Struct(">II")


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
        self._inbox: deque[Delivery | ErrorReport] = deque()
        self._reports: deque[ErrorReport] = deque(maxlen=MAX_REPORTS)
        self._next_id = 1
        self._closed = False
        self.portmapper: bytes | None = None
        kind, _req, payload = self._read_frame(time.monotonic() + request_timeout, expect_hello=True)
        if kind != HELLO or len(payload) < 17:
            self.close()
            raise LinkError(f"{self.path} did not greet like a pan node")
        self.protocol_version = payload[0]
        if self.protocol_version != PROTOCOL_VERSION:
            self.close()
            raise LinkError(f"{self.path} speaks application-link protocol {payload[0]}, this client {PROTOCOL_VERSION}")
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
        """Install ``code`` on the node as local code; returns its name. Raises ``CodeObjectError``.
        ``pin``: this connection keeps it installed (no eviction) until it closes."""
        return self._request(INSTALL, bytes([1 if pin else 0]) + code.to_pco())

    def uninstall(self, code: CodeObject | bytes, *, force: bool = False) -> None:
        """Uninstall code; ``OwnershipError`` if another connection pins it (``force``: root only)."""
        self._request(UNINSTALL, _name(code) + _flags(force))

    def use_portmapper(self, code: CodeObject | bytes, *, force: bool = False) -> None:
        """Make an installed code object the node's portmapper; ``OwnershipError`` if that
        replaces one other connections' ports go through (``force``: root only)."""
        self._request(USE_PORTMAPPER, _name(code) + _flags(force))
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

    def bind(self, port: int, portmapper: CodeObject | bytes | None = None, *, force: bool = False) -> bool:
        """Have the node's portmapper deliver capsules for ``port`` to this connection until it
        unbinds or closes; in place when this returns. ``OwnershipError`` if another connection
        holds the port (``force``: take it anyway, honoured for a root process only);
        ``portmapper``, if given, must be the node's."""
        return self._portmap(BIND, port, portmapper, force)

    def unbind(self, port: int, portmapper: CodeObject | bytes | None = None, *, force: bool = False) -> bool:
        """Release ``port``; ``OwnershipError`` if another connection holds it."""
        return self._portmap(UNBIND, port, portmapper, force)

    def _portmap(self, kind: int, port: int, portmapper: CodeObject | bytes | None, force: bool) -> bool:
        if not 0 <= port <= 0xFFFF:
            raise LinkError(f"port {port} is outside 0..65535")
        pm = _name(portmapper) if portmapper is not None else b""
        self._request(kind, _BIND.pack(port, FORCE if force else 0) + pm)
        return True

    def receive(self, timeout: float | None = 0.0, *, reports: bool = False) -> Delivery | ErrorReport | None:
        """The oldest delivery, waiting up to ``timeout`` seconds (None: forever); None if none came.

        ``reports``: an error report that arrives first is returned too (else kept for ``errors()``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        inbox = self._inbox
        while True:
            while inbox:
                got = inbox.popleft()
                if reports or type(got) is Delivery:
                    return got
                self._reports.append(got)  # type: ignore[arg-type]
            self._check_open()
            frame_ = self._read_frame(deadline)
            if frame_ is None:
                return None
            self._unexpected(frame_)

    def deliveries(self) -> list[Delivery]:
        """Every delivery received so far (reads what the socket already holds, never waits);
        error reports among them are kept for ``errors()``."""
        self._drain()
        out = [d for d in self._inbox if type(d) is Delivery]
        self._reports.extend(d for d in self._inbox if type(d) is ErrorReport)
        self._inbox.clear()
        return out  # type: ignore[return-value]

    def errors(self) -> list[ErrorReport]:
        """Every error report received so far and not returned by ``receive`` (never waits)."""
        self._drain()
        if any(type(d) is ErrorReport for d in self._inbox):
            self._reports.extend(d for d in self._inbox if type(d) is ErrorReport)  # type: ignore[misc]
            kept = [d for d in self._inbox if type(d) is Delivery]
            self._inbox.clear()
            self._inbox.extend(kept)
        out = list(self._reports)
        self._reports.clear()
        return out

    def _drain(self) -> None:
        if not self._closed:
            while True:
                got = self._read_frame(time.monotonic())
                if got is None:
                    break
                self._unexpected(got)

    @property
    def pending(self) -> int:
        return len(self._inbox)

    # -- more than the in-process API ---------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The node's statistics (``Node.statistics()`` plus links, demand loading and apps)."""
        return json.loads(self._request(STATS, b""))

    def list_code(self) -> list[dict[str, Any]]:
        """The installed code objects: name, runtime, label, origin, pinned, size, ... (see
        ``docs/network.md``)."""
        return json.loads(self._request(LIST, b""))

    def soft_state(self, code: CodeObject | bytes, *, max_entries: int = 0, max_bytes: int = 0) -> dict[str, Any]:
        """A code object's soft state: its bounds and use, and its entries (least recently
        used first) with ``key`` and ``value`` as bytes and ``ttl_ms`` left (0: none). The node
        sends at most ``max_entries`` entries and ``max_bytes`` bytes of keys and values (0: its
        defaults; it caps both) and sets ``truncated`` when it left some out. Only for the
        node's own user or root (``OwnershipError``)."""
        for v in (max_entries, max_bytes):
            if not 0 <= v <= 0xFFFFFFFF:
                raise LinkError(f"soft_state bounds are 0 .. 2**32-1, got {v}")
        doc = json.loads(self._request(STATE, _name(code) + _STATE.pack(max_entries, max_bytes)))
        for e in doc["entries"]:
            e["key"] = bytes.fromhex(e["key"])
            e["value"] = bytes.fromhex(e["value"])
        return doc

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
                    raise error_class(data[0] if data else 0)(data[1:].decode(errors="replace"))
                return data
            self._unexpected(got)

    def _unexpected(self, got: tuple[int, int, bytes]) -> None:
        kind, _req, data = got
        if kind == DELIVERY and len(data) >= 34:
            (port,) = _U16.unpack_from(data, 0)
            self._inbox.append(Delivery(port, data[34:], data[2:34]))
        elif kind == ERROR_REPORT:
            try:
                self._inbox.append(decode_report_frame(data))
            except LinkError:
                pass  # a malformed report says nothing; the node's own frames are well formed

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


def _flags(force: bool) -> bytes:
    return bytes([FORCE]) if force else b""


def _name(code: CodeObject | bytes) -> bytes:
    name = code.name if isinstance(code, CodeObject) else bytes(code)
    if len(name) != 32:
        raise CodeObjectError(f"a code object name is 32 bytes, got {len(name)}")
    return name
