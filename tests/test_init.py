"""``pan_runtime`` itself: the public API, importable from the package whatever sub-package
each name lives in, and cheap to import for a plugin that needs only ``hookimpl``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pan_runtime


@pytest.mark.parametrize("name", sorted(pan_runtime.__all__))
def test_every_public_name_resolves_from_the_package(name: str):
    value = getattr(pan_runtime, name)
    module = pan_runtime._PUBLIC.get(name)
    if module is not None:
        assert value.__module__ == module, f"{name} is defined in {value.__module__}, not {module}"


def test_the_lazy_table_and_all_name_the_same_things():
    eager = {"PanError", "FaultReason", "hookimpl", "__version__"}  # defined at import, not looked up
    assert set(pan_runtime._PUBLIC) | eager == set(pan_runtime.__all__)
    assert not set(pan_runtime._PUBLIC) & eager


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pan_runtime.Nope  # noqa: B018


def test_importing_the_package_loads_no_node_or_engine():
    code = "import sys, pan_runtime; print(sorted(m for m in sys.modules if m.startswith(('pan_runtime.node', 'pan_runtime.net', 'wasmtime', 'jpype'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
