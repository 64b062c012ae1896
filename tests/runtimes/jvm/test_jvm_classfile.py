"""The class-file reader and the allowlist checker, on real javac output and mutated bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pan_jvm.checker import check_classes, check_jar, read_jar
from pan_jvm.classfile import parse_class
from pan_runtime.errors import CodeObjectError


def test_parses_javac_output(classes):
    cf = parse_class(classes.classes["cases/Body"])
    assert cf.name == "cases/Body"
    assert cf.major == 61
    assert "org/pan/pni/PanCode" in cf.interfaces
    assert {m.name for m in cf.methods} >= {"accept", "init", "export", "<init>"}


def test_allowed_language_features_pass(classes):
    # lambdas, string concatenation, records, enum switches, collections
    fancy = {k: v for k, v in classes.classes.items() if k.startswith("cases/Fancy")}
    parsed = check_classes(fancy)
    assert "cases/Fancy$Pair" in parsed


@pytest.mark.parametrize(
    "name, needle",
    [
        ("hostile/Exit", "java.lang.System.exit"),
        ("hostile/Exec", "java.lang.Runtime"),
        ("hostile/Reflect", "java.lang.Class.getDeclaredField"),
        ("hostile/Files", "java.io.FileInputStream"),
        ("hostile/Sock", "java.net.Socket"),
        ("hostile/Threads", "java.lang.Thread"),
        ("hostile/CatchAll", "catches java.lang.Throwable"),
        ("hostile/Native", "native method poke"),
        ("hostile/Loader", "java.lang.ClassLoader"),
        ("hostile/Waits", "java.lang.Object.wait"),
    ],
)
def test_hostile_classes_refused_with_the_reference_named(classes, name, needle):
    with pytest.raises(CodeObjectError) as err:
        check_jar(classes.jar(name))
    assert needle in str(err.value)
    assert "hostile/" in str(err.value)


@pytest.mark.parametrize(
    "name, handler, needle",
    [
        ("hostile/FinallyLoop", "a finally block", "jumps back to bytecode index"),
        ("cases/Absorb", "a finally block", "returns instead of rethrowing"),
        ("hostile/CatchAll", "catches java.lang.Throwable", "jumps back to bytecode index"),
        ("hostile/Replace", "catches java.lang.Throwable", "uses new, which can throw in place of the stop"),
        ("hostile/FinallyCall", "a finally block", "uses a call, which can throw in place of the stop"),
        ("hostile/FinallyDivide", "a finally block", "uses idiv, which can throw in place of the stop"),
        ("hostile/WithResources", "catches java.lang.Throwable", "uses a call"),
    ],
)
def test_handlers_that_could_swallow_the_stop_are_refused_with_a_named_reason(classes, name, handler, needle):
    with pytest.raises(CodeObjectError) as err:
        check_jar(classes.jar(name))
    message = str(err.value)
    assert err.value.reason == "absorbs_stop"
    assert f"class {name}" in message and handler in message and needle in message
    assert "could swallow the watchdog's stop" in message


def test_handlers_that_rethrow_what_they_caught_pass(classes):
    check_jar(classes.jar("cases/Finally"))


def _with_handler(classes, code: bytes) -> bytes:
    """cases/Finally with the bytes of its first catch-any handler replaced by ``code``."""
    data = bytearray(classes.classes["cases/Finally"])
    cf = parse_class(bytes(data))
    m = next(m for m in cf.methods if m.name == "accept")
    handler = next(h for h, ct in m.handlers if ct == 0)
    at = m.code_offset + handler
    data[at : at + len(code)] = code
    return bytes(data)


@pytest.mark.parametrize(
    "code, needle",
    [
        (bytes([0x57, 0xB1]), "returns instead of rethrowing"),  # pop; return
        (bytes([0x01, 0xBF]), "throws something other than the exception it caught"),  # aconst_null; athrow
        (bytes([0x4C, 0x2A, 0xBF]), "throws something other"),  # astore_1; aload_0; athrow
        (bytes([0x59, 0x5F, 0x57, 0xBF]), None),  # dup; swap; pop; athrow: still the caught one
        (bytes([0xA8, 0x00, 0x00]), "uses jsr"),  # jsr
        (bytes([0xA7, 0xFF, 0xFF]), "jumps back"),  # goto -1
        (bytes([0xBE]), "uses arraylength"),
    ],
)
def test_handler_bytecode_is_followed_through_the_stack_and_locals(classes, code, needle):
    data = _with_handler(classes, code)
    if needle is None:
        check_classes({"cases/Finally": data})
        return
    with pytest.raises(CodeObjectError, match=needle) as err:
        check_classes({"cases/Finally": data})
    assert err.value.reason == "absorbs_stop"


def test_bad_magic_names_offset(classes):
    data = bytearray(classes.classes["cases/Fwd"])
    data[0:4] = b"\xde\xad\xbe\xef"
    with pytest.raises(CodeObjectError, match=r"bad magic 0xDEADBEEF .* at offset 0"):
        parse_class(bytes(data))


def test_truncated_constant_pool_names_entry_and_offset(classes):
    data = classes.classes["cases/Fwd"]
    with pytest.raises(
        CodeObjectError, match=r"truncated class file: constant pool entry \d+ .* at offset \d+"
    ):
        parse_class(data[:40])


def test_bad_constant_pool_tag(classes):
    data = bytearray(classes.classes["cases/Fwd"])
    data[10] = 99  # first entry's tag
    with pytest.raises(CodeObjectError, match=r"entry 1 has unknown tag 99 at offset 10"):
        parse_class(bytes(data))


def test_future_class_version_refused(classes):
    data = bytearray(classes.classes["cases/Fwd"])
    struct.pack_into(">H", data, 6, 65)
    with pytest.raises(CodeObjectError, match=r"version 65\.0 is not supported"):
        parse_class(bytes(data))


def test_trailing_bytes_refused(classes):
    with pytest.raises(CodeObjectError, match="trailing data"):
        parse_class(classes.classes["cases/Fwd"] + b"\0")


def test_corrupt_jar(classes):
    jar = bytearray(classes.jar("cases/Fwd"))
    with pytest.raises(CodeObjectError, match="not a jar"):
        read_jar(b"PK\x03\x04 not really a zip")
    jar[40:60] = bytes(20)  # inside the first entry's compressed data
    with pytest.raises(CodeObjectError, match=r"jar entry cases/Fwd\.class at offset 0 is corrupt"):
        read_jar(bytes(jar))


def test_entry_name_must_match_class(classes):
    with pytest.raises(CodeObjectError, match="defines class cases/Fwd"):
        check_classes({"cases/Other": classes.classes["cases/Fwd"]})


def test_reserved_package_refused(classes):
    data = classes.classes["cases/Fwd"]
    with pytest.raises(CodeObjectError, match="defines class"):
        check_classes({"org/pan/pni/PNI": data})


# -- fuzzing: mutated class files and jars are checked or refused, never anything else ---------

_FUZZ_CLASSES = ("cases/Fwd", "cases/Body", "cases/Fancy")


@pytest.mark.fuzz
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(_FUZZ_CLASSES),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 4096),
)
def test_mutated_class_files_check_or_raise_code_object_error(classes, which, edits, cut):
    data = bytearray(classes.classes[which])
    for pos, byte in edits:
        data[pos % len(data)] = byte
    try:
        check_classes({which: bytes(data[:cut] if cut is not None else data)})
    except CodeObjectError:
        pass


@pytest.mark.fuzz
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 8192),
)
def test_mutated_jars_check_or_raise_code_object_error(classes, edits, cut):
    data = bytearray(classes.jar("cases/Fwd"))
    for pos, byte in edits:
        data[pos % len(data)] = byte
    try:
        check_jar(bytes(data[:cut] if cut is not None else data))
    except CodeObjectError:
        pass
