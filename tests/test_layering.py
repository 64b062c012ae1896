"""The layers' import rules, one test each, every one able to fail.

1. The core (``pan_runtime``) never imports a runtime package or an engine.
2. No runtime imports another (every ordered pair).
3. The spec (``pni_spec``) is a leaf: it imports nothing of the core or of a runtime; and
   nothing that runs imports the spec (what the core and runtimes need is generated).

Imports are read from the source (``ast``), wherever they sit: at module level, inside a
function, under ``TYPE_CHECKING``, or as ``importlib.import_module("name")`` with a literal.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "pan_runtime"
SPEC = "pni_spec"
#: installed package name -> its source folder
RUNTIMES = {f"pan_{d.name}": d for d in sorted((ROOT / "runtimes").iterdir()) if (d / "__init__.py").is_file()}
ENGINES = {"wasmtime", "jpype", "elftools", "RestrictedPython"}


def imported(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``a.b`` for ``from a.b import c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return out


def violations(tree: Path, forbidden: set[str]) -> list[str]:
    """``"file imports module"`` for each import under ``tree`` of a package in ``forbidden``."""
    found = []
    for f in sorted(tree.rglob("*.py")):
        for name in sorted(imported(f)):
            if name.split(".")[0] in forbidden:
                found.append(f"{f.relative_to(tree.parent)} imports {name}")
    return found


def test_core_imports_no_runtime_and_no_engine():
    assert violations(ROOT / CORE, set(RUNTIMES) | ENGINES) == []


@pytest.mark.parametrize(
    ("importer", "imported_runtime"),
    list(itertools.permutations(RUNTIMES, 2)),
    ids=[f"{a}->{b}" for a, b in itertools.permutations(RUNTIMES, 2)],
)
def test_no_runtime_imports_another(importer: str, imported_runtime: str):
    assert violations(RUNTIMES[importer], {imported_runtime}) == []


def test_spec_imports_nothing_of_the_core_or_a_runtime():
    assert violations(ROOT / SPEC, {CORE, *RUNTIMES} | ENGINES) == []


@pytest.mark.parametrize("package", [CORE, *RUNTIMES])
def test_nothing_that_runs_imports_the_spec(package: str):
    """Runtimes and the core take what they need from generated files, never from pni_spec."""
    assert violations(RUNTIMES.get(package, ROOT / CORE), {SPEC}) == []


def test_every_runtime_folder_is_checked():
    assert set(RUNTIMES) == {"pan_native", "pan_wasm", "pan_jvm", "pan_restricted_py"}


def test_the_checker_finds_every_form_of_import(tmp_path: Path):
    pkg = tmp_path / "pan_native"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "plain.py").write_text("import pan_wasm\n")
    (pkg / "sub" / "deep.py").write_text("from pan_wasm.hostcalls import make_callback\n")
    (pkg / "lazy.py").write_text("def f():\n    import pan_wasm.runtime as r\n    return r\n")
    (pkg / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pan_wasm import runtime\n"
    )
    (pkg / "dynamic.py").write_text("import importlib\nm = importlib.import_module('pan_wasm.fastcall')\n")
    (pkg / "clean.py").write_text(
        "import pan_wasmer\nfrom . import plain\nfrom pan_runtime import errors\ns = 'import pan_wasm'\n"
    )
    assert violations(pkg, {"pan_wasm"}) == [
        "pan_native/dynamic.py imports pan_wasm.fastcall",
        "pan_native/lazy.py imports pan_wasm.runtime",
        "pan_native/plain.py imports pan_wasm",
        "pan_native/sub/deep.py imports pan_wasm.hostcalls",
        "pan_native/typed.py imports pan_wasm",
    ]
    assert violations(pkg, {"pan_jvm"}) == []
