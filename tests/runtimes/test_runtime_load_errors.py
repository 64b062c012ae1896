"""Every runtime refuses a malformed code object with ``CodeObjectError`` and nothing else: a
batch of broken payloads (truncated, bytes flipped, structures mutated, sources nested too
deep) is loaded through each runtime of a node; each load either succeeds or raises
``CodeObjectError``, and the runtime keeps loading the intact code afterwards."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator

import pytest

from pan_jvm.builder import pack_jar
from pan_jvm.checker import read_jar
from pan_runtime.cli.protocols import reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError
from pan_runtime.node.node import Node
from pan_runtime.plugin.plugins import default_plugins

RUNTIMES = ("native", "wasm", "jvm", "restricted_py")
#: mutations per runtime: enough to reach every parser's corners, few enough to stay quick
FLIPS = 120


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with Node(1, plugins=default_plugins()) as n:
        yield n


def _truncations(payload: bytes) -> list[bytes]:
    n = len(payload)
    cuts = {0, 1, 4, 8, 16, 24, 63, 64, 65, n // 4, n // 3, n // 2, n - 8, n - 1}
    cuts.update(range(0, n, max(1, n // 24)))
    return [payload[:c] for c in sorted(cuts) if 0 <= c < n]


def _flips(payload: bytes, rng: random.Random, count: int, lo: int = 0, hi: int | None = None) -> list[bytes]:
    out = []
    hi = len(payload) if hi is None else hi
    for _ in range(count):
        data = bytearray(payload)
        for _ in range(rng.choice((1, 1, 2, 4))):
            at = rng.randrange(lo, hi)
            data[at] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256), data[at] ^ 1))
        out.append(bytes(data))
    return out


_SHDR = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize


def _native_structures(payload: bytes, rng: random.Random) -> list[bytes]:
    """Field-wise mutations of the section headers, symbols and relocations (random flips
    rarely keep an ELF file consistent enough to reach the linker)."""
    out = []
    (shoff,) = struct.unpack_from("<Q", payload, 0x28)
    (shnum,) = struct.unpack_from("<H", payload, 0x3C)
    headers = [list(_SHDR.unpack_from(payload, shoff + 64 * i)) for i in range(shnum)]

    def with_header(i: int, field: int, value: int) -> bytes:
        buf = bytearray(payload)
        h = list(headers[i])
        h[field] = value
        _SHDR.pack_into(buf, shoff + 64 * i, *h)
        return bytes(buf)

    for i, h in enumerate(headers):
        for sh_type in (0x60000000, 7, 8, 14, 2, 4):
            out.append(with_header(i, 1, sh_type))
        out.append(with_header(i, 2, h[2] | 0x7))  # writable, allocated, executable
        out.append(with_header(i, 6, rng.randrange(shnum + 2)))  # sh_link
        out.append(with_header(i, 7, rng.randrange(shnum + 2)))  # sh_info
        out.append(with_header(i, 5, h[5] + rng.choice((1, 8, 4096))))  # sh_size
    for h in headers:
        if h[1] == 2:  # the symbol table: each symbol's value, size and section
            for at in range(h[4] + 24, h[4] + h[5], 24):
                for offset, fmt, value in (
                    (8, "<Q", 1 << 20), (8, "<Q", (1 << 64) - 1), (16, "<Q", 1 << 40),
                    (6, "<H", rng.randrange(shnum + 2)), (6, "<H", 0xFFF1),
                ):  # fmt: skip
                    buf = bytearray(payload)
                    struct.pack_into(fmt, buf, at + offset, value)
                    out.append(bytes(buf))
        if h[1] == 4:  # relocations: types the linker applies, extreme addends
            for at in range(h[4], h[4] + h[5], 24):
                (info,) = struct.unpack_from("<Q", payload, at + 8)
                for rtype in (1, 2, 4, 9, 10, 11, 24, 25, 26, 29, 42):
                    for addend in (0, (1 << 63) - 1, -(1 << 63)):
                        buf = bytearray(payload)
                        struct.pack_into("<Qq", buf, at + 8, (info & ~0xFFFFFFFF) | rtype, addend)
                        out.append(bytes(buf))
    return out


def _native(code: CodeObject, rng: random.Random) -> list[bytes]:
    payload = code.payload
    return (
        _truncations(payload)
        + _flips(payload, rng, FLIPS)
        + _flips(payload, rng, FLIPS, 0, 64)
        + _native_structures(payload, rng)
    )


def _wasm(code: CodeObject, rng: random.Random) -> list[bytes]:
    payload = code.payload
    return _truncations(payload) + _flips(payload, rng, FLIPS) + _flips(payload, rng, FLIPS // 2, 0, 16)


def _jvm(code: CodeObject, rng: random.Random) -> list[bytes]:
    payload = code.payload
    classes = read_jar(payload)
    out = _truncations(payload)[:10] + _flips(payload, rng, 20)
    for _ in range(FLIPS):  # mutate the class files themselves: the jar stays well formed
        mutated = dict(classes)
        name = rng.choice(sorted(mutated))
        (data,) = _flips(mutated[name], rng, 1)
        mutated[name] = data
        out.append(pack_jar(mutated))
    return out


def _restricted_py(code: CodeObject, rng: random.Random) -> list[bytes]:
    payload = code.payload
    deep = [
        b"x = " + b"1+" * 100_000 + b"1",
        b"x = " + b"-" * 100_000 + b"1",
        b"x = " + b"a." * 100_000 + b"b",
        b"x = " + b"(" * 1_000 + b"1" + b")" * 1_000,
        b"x = " + b"[" * 180 + b"]" * 180,
        b"def accept(pni, c, n):\n" + b"".join(b" " * i + b"if n:\n" for i in range(1, 120)) + b" " * 120 + b"pass\n",
        b"x = " + b"1+" * 950 + b"1",
        b"\xff\xfe not utf-8",
        b"def accept(pni, c, n):\n\treturn \x00\n",
        b"import os\n",
    ]
    return deep + _truncations(payload) + _flips(payload, rng, FLIPS)


MUTATORS: dict[str, Callable[[CodeObject, random.Random], list[bytes]]] = {
    "native": _native,
    "wasm": _wasm,
    "jvm": _jvm,
    "restricted_py": _restricted_py,
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_malformed_payload_is_a_code_object_error(node: Node, runtime: str) -> None:
    good = reference_code(runtime, "forward", node.plugins)
    rt = node.runtime(runtime)
    rng = random.Random(f"malformed-{runtime}")
    others: list[str] = []
    refused = loaded = 0
    for i, payload in enumerate(MUTATORS[runtime](good, rng)):
        code = CodeObject.create(runtime, payload, meta=dict(good.manifest.meta), entry=dict(good.manifest.entry))
        try:
            rt.load(code, [], node.host).unload()
            loaded += 1
        except CodeObjectError:
            refused += 1
        except Exception as exc:  # what this test exists to find
            others.append(f"payload {i} ({len(payload)} bytes): {type(exc).__name__}: {exc}"[:300])
    assert not others, f"{len(others)} loads failed with something else than CodeObjectError:\n" + "\n".join(others)
    assert refused > 0
    rt.load(good, [], node.host).unload()  # the runtime still loads the intact code
