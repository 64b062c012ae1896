"""The core never imports a runtime; runtimes import only pan_runtime's API, never each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = {"pan_native", "pan_wasm", "pan_jvm", "pan_restricted_py"}
ENGINES = {"wasmtime", "jpype", "elftools", "RestrictedPython"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_core_imports_no_runtime_and_no_engine():
    for f in (ROOT / "pan_runtime").rglob("*.py"):
        bad = imports(f) & (RUNTIME_PACKAGES | ENGINES)
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_runtimes_do_not_import_each_other():
    for d in (ROOT / "runtimes").iterdir():
        if not d.is_dir():
            continue
        me = f"pan_{d.name}"
        for f in d.rglob("*.py"):
            bad = imports(f) & (RUNTIME_PACKAGES - {me})
            assert not bad, f"{f.relative_to(ROOT)} imports another runtime: {bad}"
