"""``cforw``: a plain user-space UDP forwarder, the paper's baseline for what a user-space node
pays just to bring a datagram up from the kernel and send it down again.

It uses the socket calls the node's UDP netlink uses (``recvmsg_into`` a preallocated
buffer, ``sendmsg`` a buffer list), one socket, and no other processing: a datagram from
one end goes to the other. Run as ``python -m pan_runtime.bench.forwarder LISTEN A B``
(endpoints ``ip:port``); it prints ``ready`` once bound and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import socket
import sys

from pan_runtime.net.lifetime import die_with_parent

__all__ = ["SOCKET_BUFFER", "forward_loop", "main"]

BUFFER = 65536
#: bytes of each baseline forwarder's socket buffers (pan-traffic's ``fwd`` asks the same); a
#: bench middle node gets it for each neighbour's receive socket, so every middle absorbs a
#: burst alike
SOCKET_BUFFER = 4 << 20


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def forward_loop(sock: socket.socket, a: tuple[str, int], b: tuple[str, int]) -> None:
    """Relay datagrams between ``a`` and ``b`` until the socket is closed or a signal stops it."""
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    recv = sock.recvmsg_into
    send = sock.sendmsg
    bufs = [view]
    while True:
        n, _, _, src = recv(bufs)
        dst = b if src == a else a
        send([view[:n]], [], 0, dst)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m pan_runtime.bench.forwarder LISTEN A B", file=sys.stderr)
        return 2
    die_with_parent()
    listen, a, b = (_endpoint(x) for x in args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.bind(listen)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        forward_loop(sock, a, b)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
