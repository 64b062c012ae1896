"""The header codec classes restricted_py code sees: the generated ones
(``pan_runtime.protocol_headers``) with ``read`` made in C (``_fast.codec_reader``).

Protocol code decodes its header on every capsule (``PingHdr.read(pni, capsule, 0)``); the
generated ``read`` is a Python frame, a ``struct`` call, a tuple and a slot store per field.
Each class here is a subclass of the generated one with no state of its own (``__slots__ =
()``), the same name and fields, whose ``read`` makes the same ``pni.seg_read`` call and
decodes the bytes straight into a new instance's slots in C; when that call is the body
host's direct ``seg_read`` (the node's fast path) over a live body, the header is decoded
from the body itself, as the bytes that call would give. Whatever is not the plain case
(an answer that is not exact bytes of the header's size, keywords, another class) is answered
by the Python forms below, which are the generated ``read``'s own steps, so code sees the
same results and the same errors either way.

Without the C extension, or for a structure whose wire format is not plain big-endian
unsigned fields and byte strings, the generated class is used as it is.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from typing import Any

from pan_runtime import protocol_headers
from pan_runtime.errors import PniError
from pan_runtime.pni_api import OUT_OF_RANGE

try:
    from pan_restricted_py import _fast
except ImportError:
    _fast = None

__all__ = ["CODECS", "fast_codec", "wire_fields"]

_CODE = re.compile(r"(\d*)([sBHIQx])")
_WIDTH = {"B": 1, "H": 2, "I": 4, "Q": 8}


def wire_fields(cls: type) -> list[tuple[str, int, int, bool]] | None:
    """(name, wire offset, width, is_bytes) of each field of the generated codec CLS, read
    from its ``STRUCT`` format; None when the format is not big-endian unsigned fields,
    byte strings and padding (then the C read does not apply)."""
    fmt = cls.STRUCT.format
    if not fmt.startswith("!"):
        return None
    out: list[tuple[str, int, int, bool]] = []
    names = iter(cls.FIELDS)
    pos, at = 0, 1
    for m in _CODE.finditer(fmt, 1):
        if m.start() != at:
            return None
        at = m.end()
        count = int(m.group(1) or 1)
        code = m.group(2)
        if code == "x":
            pos += count
        elif code == "s":
            out.append((next(names, ""), pos, count, True))
            pos += count
        else:
            for _ in range(count):
                out.append((next(names, ""), pos, _WIDTH[code], False))
                pos += _WIDTH[code]
    if at != len(fmt) or pos != cls.SIZE or pos != struct.calcsize(fmt) or next(names, None) is not None:
        return None
    if [f[0] for f in out] != list(cls.FIELDS):
        return None
    return out


def _finish(cls: Any, data: Any) -> Any:
    """The generated ``read`` after its ``seg_read``: the length check, then the decode."""
    size = cls.SIZE
    if len(data) < size:
        raise PniError(f"{cls.__name__}.read: {len(data)} of {size} bytes", OUT_OF_RANGE)
    self = object.__new__(cls)
    for name, value in zip(cls.FIELDS, cls.STRUCT.unpack_from(data), strict=True):
        setattr(self, name, value)
    return self


def fast_codec(base: type) -> type:
    """BASE, a generated codec class, with ``read`` made in C; BASE itself where it cannot be."""
    fields = wire_fields(base) if _fast is not None else None
    if fields is None:
        return base
    cls = type(base.__name__, (base,), {"__slots__": (), "__module__": base.__module__, "__doc__": base.__doc__})
    cls.__qualname__ = base.__qualname__
    # the reader is the class's read itself (a descriptor): read(pni, seg, off=0)
    cls.read = _fast.codec_reader(cls, base.SIZE, fields, _finish, base.read.__func__)
    return cls


def _codecs(structs: Mapping[str, type]) -> dict[type, type]:
    return {base: fast_codec(base) for base in structs.values()}


#: each generated codec class -> the class code sees in its place
CODECS: dict[type, type] = _codecs(protocol_headers.STRUCTS)
