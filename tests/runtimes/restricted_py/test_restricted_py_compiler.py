"""The restricted_py compiler keeps a guard call exactly where the guard could refuse or wrap.

``_getattr_`` decides by the attribute's name alone, so a constant name it would pass
unchanged (not denied, not private, not a size-checked method) is compiled to a native
attribute read; every other read keeps its guard call and its fault.
"""

from __future__ import annotations

import types

import pytest

from pan_restricted_py.compiler import compile_source
from pan_restricted_py.guards import DENIED_ATTRIBUTES
from pan_runtime.errors import CodeObjectError, RuntimeFault

#: methods the guard wraps in a size check
_WRAPPED = ("join", "ljust", "rjust", "center", "zfill", "expandtabs", "replace", "extend", "to_bytes",
            "encode", "decode", "hex", "sort")


def _function(source: str, name: str = "accept") -> types.CodeType:
    code = compile_source(source, "t.py").code
    return next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == name)


def test_plain_attribute_reads_compile_without_a_guard_call():
    fn = _function(
        "def accept(pni, capsule, length):\n"
        "    h = PingHdr.read(pni, capsule, 0)\n"
        "    return FORWARD if h.phase == 1 and pni.node_address() != h.dest else DROP\n"
    )
    assert "_getattr_" not in fn.co_names
    assert {"read", "phase", "node_address", "dest"} <= set(fn.co_names)


@pytest.mark.parametrize("name", sorted(DENIED_ATTRIBUTES | set(_WRAPPED)))
def test_denied_and_wrapped_attributes_keep_their_guard_call(name):
    source = f"def accept(pni, capsule, length):\n    x = pni.{name}\n    return 0\n"
    try:
        fn = _function(source)
    except CodeObjectError:  # refused outright at compile time (RestrictedPython's inspect names)
        return
    assert "_getattr_" in fn.co_names


def test_natively_read_attributes_behave_as_through_the_guard(load, run):
    loaded = load(
        "def accept(pni, capsule, length):\n"
        "    h = PingHdr(phase=1)\n"
        "    b = bytearray(2)\n"
        "    b.append(7)\n"
        "    try:\n"
        "        pni.nothing\n"
        "    except AttributeError:\n"
        "        return h.phase + b[2] + pni.seg_length(capsule)\n"
        "    return 0\n"
    )
    assert run(loaded, bytes(10)) == 1 + 7 + 10


@pytest.mark.parametrize("source, reason", [
    ("return pni.host", "guard"),
    ("try:\n        pni.nothing\n    except AttributeError as e:\n        return len(e.obj)", "guard"),
    ("return len('x'.ljust(10 ** 9))", "guard"),
    ("return len(' '.join(['x' * 1000] * 1000)) and 0", "guard"),
])
def test_reads_the_guard_refuses_still_fault(load, run, source, reason):
    loaded = load(f"def accept(pni, capsule, length):\n    {source}\n")
    with pytest.raises(RuntimeFault) as info:
        run(loaded)
    assert info.value.reason == reason, str(info.value)
