"""Hand-emitted wasm modules of a chosen shape, for load-limit tests and the load harness.

Each is a valid pan code object payload (exports ``memory`` and an ``accept`` returning
DROP) with a costly part added: many tiny functions, blocks nested deep, or many locals.
Emitting the bytes directly needs no toolchain and makes megabyte modules in milliseconds.
"""

from __future__ import annotations

__all__ = ["leb", "many_functions", "nested_blocks", "many_locals"]

_DROP = 0  # the PNI verdict DROP: what every accept here returns


def leb(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + leb(len(payload)) + payload


def _name(text: str) -> bytes:
    b = text.encode()
    return leb(len(b)) + b


def _module(extra_bodies: list[bytes]) -> bytes:
    """accept (function 0, type 0: (i32, i32) -> i32) plus ``extra_bodies`` of type 1: () -> ()."""
    types = leb(2) + b"\x60\x02\x7f\x7f\x01\x7f" + b"\x60\x00\x00"
    funcs = leb(1 + len(extra_bodies)) + leb(0) + leb(1) * len(extra_bodies)
    memory = leb(1) + b"\x00\x01"
    exports = leb(2) + _name("memory") + b"\x02\x00" + _name("accept") + b"\x00\x00"
    accept = b"\x00\x41" + leb(_DROP) + b"\x0b"  # no locals; i32.const DROP; end
    bodies = [accept, *extra_bodies]
    code = leb(len(bodies)) + b"".join(leb(len(b)) + b for b in bodies)
    return (
        b"\0asm\x01\0\0\0"
        + _section(1, types)
        + _section(3, funcs)
        + _section(5, memory)
        + _section(7, exports)
        + _section(10, code)
    )


def many_functions(count: int, body_ops: int = 1) -> bytes:
    """``count`` functions besides accept, each ``body_ops`` times ``i32.const 0; drop``
    (200,000 with ``body_ops=1`` make a module of about 1.4 MB)."""
    body = b"\x00" + b"\x41\x00\x1a" * body_ops + b"\x0b"
    return _module([body] * count)


def nested_blocks(depth: int) -> bytes:
    """One function besides accept with ``depth`` blocks nested in one another."""
    return _module([b"\x00" + b"\x02\x40" * depth + b"\x0b" * depth + b"\x0b"])


def many_locals(count: int) -> bytes:
    """One function besides accept declaring ``count`` i32 locals."""
    return _module([leb(1) + leb(count) + b"\x7f" + b"\x0b"])
