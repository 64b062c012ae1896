"""The spec, the host implementation and the generated Python bindings name the same calls."""

import inspect

import pytest

from pan_runtime import pni_api
from pan_runtime.node import pni
from pni_spec import load_spec

SPEC = load_spec()
#: the server's public methods that are not PNI calls
NOT_CALLS = {"build"}


def host_calls() -> set[str]:
    return {
        name
        for name, fn in inspect.getmembers(pni.PniServer, inspect.isfunction)
        if not name.startswith("_") and name not in NOT_CALLS
    }


def test_host_implements_exactly_the_spec_calls():
    spec_calls = {c.name for c in SPEC.calls}
    assert host_calls() - spec_calls == set(), "host implements calls the spec does not have"
    assert spec_calls - host_calls() == set(), "host misses calls the spec has"


def test_host_parameters_follow_the_spec():
    for call in SPEC.calls:
        params = list(inspect.signature(getattr(pni.PniServer, call.name)).parameters)[1:]
        assert params == [p.name for p in call.params], call.name


def test_generated_python_table_matches_spec():
    assert [c[0] for c in pni_api.CALLS] == [c.name for c in SPEC.calls]
    assert pni_api.PNI_VERSION == pni.PNI_VERSION == SPEC.version


def test_version_compatibility_rule():
    assert pni.version_compatible("1.0", "1.0")
    assert pni.version_compatible("1.0", "1.3")
    assert not pni.version_compatible("1.4", "1.3")
    assert not pni.version_compatible("2.0", "1.9")
    assert not pni.version_compatible("garbage", "1.0")


def test_mutated_specs_load_or_raise_spec_error():
    """Any edit of the spec text either still loads or names what is wrong; nothing else escapes."""
    import random

    from pni_spec.errors import SpecError
    from pni_spec.spec import SPEC_PATH, load_spec_file

    text = SPEC_PATH.read_text()
    rng = random.Random(11)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "pni.toml"
        for _ in range(300):
            chars = list(text)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(chars))
                chars[i] = rng.choice(['"', "=", "[", "]", "x", "\n", "-", "1", " ", "}"])
            target.write_text("".join(chars))
            try:
                load_spec_file(target)
            except SpecError:
                pass


def test_an_unbuilt_environment_is_built_by_the_first_call_that_needs_it():
    from pan_runtime.data.codeobj import CodeObject
    from pan_runtime.testing.stubnode import StubNode, make_env

    server = pni.PniServer(StubNode())
    code = CodeObject.create("restricted_py", b"")
    env = make_env(code, b"\x01\x02\x03")
    built: list[int] = []

    def materialize() -> None:
        built.append(1)
        server.current = env

    server.materialize = materialize
    server.current = server.unbuilt
    assert server.node_now_ns() >= 0 and not built  # needs no environment: none built
    assert server.seg_length(1) == 3 and built == [1]
    assert server.current is env
    assert server.seg_alloc(4) > 1 and built == [1]  # built once


def test_an_unbuilt_environment_without_a_builder_is_a_host_error():
    from pan_runtime.testing.stubnode import StubNode

    server = pni.PniServer(StubNode())
    server.current = server.unbuilt
    with pytest.raises(RuntimeError, match="no environment"):
        server.seg_length(1)
