"""The node's load limits bound the jar check before it runs: entries from the zip's end
record, classes and their sizes before inflating, methods before the allowlist check; a
large jar from the network is checked in the compiler process and not again in the node."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from conftest import javac

from pan_jvm.checker import check_jar, read_jar, scan_jar
from pan_jvm.runtime import INLINE_CHECK_BYTES
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import CodeObjectError, FaultReason
from pan_runtime.net.compiler import Compiler, Outcome
from pan_runtime.plugin.loadlimits import LoadLimits


def jar(classes: dict[str, bytes], junk_entries: int = 0) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(classes.items()):
            zf.writestr(f"{name}.class", data)
        for i in range(junk_entries):
            zf.writestr(f"junk/{i}.txt", b"")
    return out.getvalue()


def picked(classes, prefix: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in classes.classes.items() if k == prefix or k.startswith(prefix + "$")}


def test_the_zip_directory_is_counted_from_its_end_record(classes):
    payload = jar(picked(classes, "cases/Body"), junk_entries=100)
    scan_jar(payload, LoadLimits(code_entries=101))
    with pytest.raises(CodeObjectError) as refused:
        scan_jar(payload, LoadLimits(code_entries=100))
    assert refused.value.reason is FaultReason.TOO_MANY_ENTRIES


def test_classes_and_their_sizes_are_bounded_before_inflating(classes):
    fancy = picked(classes, "cases/Fancy")
    assert len(fancy) > 2
    with pytest.raises(CodeObjectError) as refused:
        read_jar(jar(fancy), LoadLimits(code_entries=2))
    assert refused.value.reason is FaultReason.TOO_MANY_ENTRIES
    with pytest.raises(CodeObjectError) as refused:
        read_jar(jar(fancy), LoadLimits(code_bytes=64))
    assert refused.value.reason is FaultReason.CODE_TOO_BIG


def test_methods_are_counted_before_the_allowlist_check(classes):
    hostile = jar(picked(classes, "hostile/Files"))  # the checker would refuse java.io.FileInputStream
    with pytest.raises(CodeObjectError, match="FileInputStream"):
        check_jar(hostile, limits=LoadLimits())
    with pytest.raises(CodeObjectError) as refused:
        check_jar(hostile, limits=LoadLimits(code_functions=1))
    assert refused.value.reason is FaultReason.TOO_MANY_FUNCTIONS


def test_the_runtime_refuses_a_code_object_over_a_limit(runtime, classes, host):
    saved = runtime.load_limits
    runtime.load_limits = LoadLimits(code_functions=1)
    try:
        with pytest.raises(CodeObjectError) as refused:
            runtime.load(classes.code("cases/Body"), [], host)
        assert refused.value.reason is FaultReason.TOO_MANY_FUNCTIONS
    finally:
        runtime.load_limits = saved


def _run(compiler: Compiler, key: bytes, job) -> Outcome:  # type: ignore[no-untyped-def]
    got: list[Outcome] = []
    compiler.submit(key, job, got.append)
    end = time.monotonic() + 120
    while not got and time.monotonic() < end:
        compiler.poll()
        time.sleep(0.005)
    assert got, compiler.info()
    return got[0]


_STRINGS = ", ".join(f'"{chr(97 + i) * 8000}"' for i in range(10))
FILLER = f"package filler;\npublic class Filler {{\n    public static final String[] S = {{{_STRINGS}}};\n}}\n"


@pytest.fixture(scope="module")
def filler(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A class of ~80 KB of string constants that deflates to ~1 KB."""
    folder = tmp_path_factory.mktemp("filler")
    (folder / "Filler.java").write_text(FILLER)
    return javac([folder / "Filler.java"], folder / "out")


def test_a_jar_whose_classes_inflate_large_is_checked_in_the_compiler_process_and_not_again(runtime, classes, host, filler):
    big = CodeObject.create(
        "jvm", jar({**picked(classes, "cases/Body"), **filler}), meta={"entry_class": "cases.Body", "label": "big"}
    )
    assert len(big.payload) < INLINE_CHECK_BYTES < sum(map(len, filler.values()))  # small on the wire
    assert runtime.prepare(classes.code("cases/Body"), []) is None  # small inflated: checked in load
    job = runtime.prepare(big, [])
    assert job is not None and job.target == "pan_jvm.checker:check_job"
    compiler = Compiler(runtime.load_limits)
    try:
        verdict = _run(compiler, b"big", job)
        assert isinstance(verdict, bytes), verdict
        runtime.adopt(big, verdict)
        loaded = runtime.load(big, [], host)
        assert loaded.checked.parsed == {} and "filler/Filler" in loaded.checked.classes  # not checked again
        loaded.unload()
        loaded = runtime.load(big, [], host)  # the verdict was used up: this load checks
        assert "filler/Filler" in loaded.checked.parsed
        loaded.unload()

        hostile = CodeObject.create("jvm", jar({**picked(classes, "hostile/Files"), **filler}), meta={"entry_class": "hostile.Files"})
        refusal = _run(compiler, b"hostile", runtime.prepare(hostile, []))
        assert isinstance(refusal, CodeObjectError) and "FileInputStream" in str(refusal)
    finally:
        compiler.close()
