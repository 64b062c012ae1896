"""An object's sections, symbols, relocations and undefined symbols are read from its headers
and refused over the node's load limits before pyelftools parses it or the loader links it."""

from __future__ import annotations

import pytest

from pan_native.runtime import NativeRuntime
from pan_native.shape import scan
from pan_runtime.cli.protocols import PROTOCOLS, reference_code
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.plugin.loadlimits import LoadLimits

# 64 functions calling 64 PNI-looking externals and referring to 64 strings
MANY = "\n".join(
    [f"extern long ext{i}(long);" for i in range(64)]
    + [f'const char *s{i}(void) {{ return "s{i}"; }}\nlong f{i}(long x) {{ return ext{i}(x); }}' for i in range(64)]
)


@pytest.mark.parametrize(
    ("limit", "value", "reason", "what"),
    [
        ("code_bytes", 1024, FaultReason.CODE_TOO_BIG, "bytes"),
        ("code_entries", 100, FaultReason.TOO_MANY_ENTRIES, "symbols"),
        ("code_imports", 63, FaultReason.TOO_MANY_IMPORTS, "undefined symbols"),
    ],
)
def test_each_limit_refuses_before_parsing(cc, host, limit, value, reason, what):
    obj = cc(MANY)
    scan(obj, LoadLimits())  # within the defaults
    rt = NativeRuntime()
    rt.load_limits = LoadLimits(**{limit: value})
    with pytest.raises(CodeObjectError) as refused:
        rt.load(CodeObject.create("native", obj), [], host)
    assert refused.value.reason is reason
    assert f"native object {what}" in str(refused.value) and f"limits.{limit}" in str(refused.value)


def test_sections_and_relocations_are_counted(cc):
    with pytest.raises(CodeObjectError, match="sections") as refused:
        scan(cc(MANY), LoadLimits(code_entries=8))
    assert refused.value.reason is FaultReason.TOO_MANY_ENTRIES
    # one function calling one external 300 times: few symbols, 300 relocations
    calls = " + ".join(f"ext(x + {i})" for i in range(300))
    obj = cc(f"extern long ext(long);\nlong f(long x) {{ return {calls}; }}")
    with pytest.raises(CodeObjectError, match="relocations") as refused:
        scan(obj, LoadLimits(code_entries=200))
    assert refused.value.reason is FaultReason.TOO_MANY_ENTRIES


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_shipped_protocols_pass_the_default_limits(protocol):
    scan(reference_code("native", protocol).payload, LoadLimits())
