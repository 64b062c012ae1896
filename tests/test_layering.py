"""The layers' import rules, one test each, every one able to fail.

1. The core (``pan_runtime``) never imports a runtime package or an engine.
2. No runtime imports another (every ordered pair).
3. The spec (``pni_spec``) is a leaf: it imports nothing of the core or of a runtime; and
   nothing that runs imports the spec (what the core and runtimes need is generated): only
   ``pan codec`` (``cli/codec.py``) runs the spec's codec generator for a user.
4. Inside the core, a lower layer never imports a higher one (``docs/architecture.md``):
   ``data`` imports only ``errors`` and the generated ``pni_api``; ``plugin`` imports ``data``
   (``node`` only for annotations, except ``nullrt``, a runtime); ``node`` imports ``plugin`` and
   ``data``; ``net`` imports ``node``, ``plugin`` and ``data``; ``cli``, ``bench``, ``lab``
   and ``testing`` may import anything.
5. No runtime uses a private name of the core.

Imports are read from the source (``ast``), wherever they sit: at module level, inside a
function, under ``TYPE_CHECKING``, or as ``importlib.import_module("name")`` with a literal;
relative imports are resolved inside a package.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "pan_runtime"
SPEC = "pni_spec"
#: installed package name -> its source folder
RUNTIMES = {f"pan_{d.name}": d for d in sorted((ROOT / "runtimes").iterdir()) if (d / "__init__.py").is_file()}
ENGINES = {"wasmtime", "jpype", "elftools", "RestrictedPython"}


def _package(path: Path) -> list[str]:
    """The dotted package ``path`` sits in (its folders that hold ``__init__.py``), as parts."""
    parts: list[str] = []
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return parts


def _is_core_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the core's source."""
    parts = name.split(".")
    base = ROOT.joinpath(*parts)
    return parts[0] == CORE and (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file())


def _typing_only(tree: ast.AST) -> set[ast.AST]:
    """The statements under ``if TYPE_CHECKING:`` (for annotations only; never run)."""
    out: set[ast.AST] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if test is not None and (getattr(test, "id", None) or getattr(test, "attr", None)) == "TYPE_CHECKING":
            for stmt in node.body:
                out.update(ast.walk(stmt))
    return out


def imported(path: Path, *, typing: bool = True) -> set[str]:
    """Every absolute module name ``path`` imports (``a.b`` for ``from a.b import c``; ``a.b``,
    not ``a``, for ``from a import b`` when ``b`` is a module of the core). ``typing=False``
    leaves out imports under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = set() if typing else _typing_only(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                package = _package(path)
                if not package or node.level > len(package):
                    continue  # outside a package: not resolvable
                module = ".".join(package[: len(package) - node.level + 1] + ([module] if module else []))
            if not module:
                continue
            subs = [f"{module}.{a.name}" for a in node.names if _is_core_module(f"{module}.{a.name}")]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return out


def violations(tree: Path, forbidden: set[str], *, typing: bool = True, skip: Iterable[Path] = ()) -> list[str]:
    """``"file imports module"`` for each import under ``tree`` (a folder or one file) of a
    module in ``forbidden`` or inside one (``a`` covers ``a.b``); ``typing=False`` leaves out
    imports for annotations only, ``skip`` files the rule does not cover."""
    found = []
    files = sorted(tree.rglob("*.py")) if tree.is_dir() else [tree]
    for f in files:
        if f in set(skip):
            continue
        for name in sorted(imported(f, typing=typing)):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
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


#: the front end of the header-codec generator (``pan codec``): a build tool, not a part of a node
CODEC_CLI = ROOT / CORE / "cli" / "codec.py"


@pytest.mark.parametrize("package", [CORE, *RUNTIMES])
def test_nothing_that_runs_imports_the_spec(package: str):
    """Runtimes and the core take what they need from generated files, never from pni_spec;
    only ``pan codec``, which runs the spec's generator for a user, imports it."""
    assert violations(RUNTIMES.get(package, ROOT / CORE), {SPEC}, skip=[CODEC_CLI]) == []


def test_only_pan_codec_imports_the_spec_and_only_its_generator():
    assert {m for m in imported(CODEC_CLI) if m.split(".")[0] == SPEC} == {
        "pni_spec.codecs", "pni_spec.errors", "pni_spec.generate", "pni_spec.headers"
    }


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


# ---------------------------------------------------------------------------- the core's layers
CORE_DIR = ROOT / CORE
#: the core's sub-packages and top-level modules, by name
PARTS = {p.stem for p in CORE_DIR.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()} - {"__init__"}
#: ``errors``, the modules generated from the specs and ``resources`` (where the shipped files
#: are): the bottom, under every layer
LEAVES = {"errors", "pni_api", "pni_hot", "protocol_headers", "resources"}
#: what each layer may import besides itself (``docs/architecture.md``, Layers)
LAYERS = {
    "data": {"errors", "pni_api"},
    "plugin": {"data"} | LEAVES,
    "isolation": {"plugin", "data"} | LEAVES,
    "node": {"isolation", "plugin", "data"} | LEAVES,
    "net": {"node", "isolation", "plugin", "data"} | LEAVES,
}
#: the faces, which may import anything
FACES = {"cli", "bench", "lab", "testing"}
NULLRT = CORE_DIR / "plugin" / "nullrt.py"


def layer_violations(path: Path, allowed: set[str], *, typing: bool = True, skip: Iterable[Path] = ()) -> list[str]:
    """What the core's code at ``path`` imports of the core outside ``allowed`` (sub-packages
    and top-level modules by name), the package itself (the public API, which names every
    layer) included."""
    found = violations(path, {f"{CORE}.{p}" for p in PARTS - allowed}, typing=typing, skip=skip)
    for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
        if f not in set(skip) and CORE in imported(f, typing=typing):
            found.append(f"{f.relative_to(path.parent)} imports {CORE}")
    return found


def test_every_part_of_the_core_has_a_layer():
    assert PARTS == set(LAYERS) | LEAVES | FACES


def test_leaves_import_only_errors_and_pni_api():
    for leaf in sorted(LEAVES):
        assert layer_violations(CORE_DIR / f"{leaf}.py", {leaf, "errors", "pni_api"}) == [], leaf


def test_data_imports_only_errors_and_the_generated_pni_api():
    assert layer_violations(CORE_DIR / "data", {"data"} | LAYERS["data"]) == []


def test_plugin_imports_data_and_the_node_only_for_annotations():
    plugin = CORE_DIR / "plugin"
    assert layer_violations(plugin, {"plugin"} | LAYERS["plugin"], typing=False, skip=[NULLRT]) == []
    assert layer_violations(plugin, {"plugin", "node"} | LAYERS["plugin"], skip=[NULLRT]) == []


def test_nullrt_uses_the_node_as_a_runtime_does():
    """The built-in ``null`` runtime imports what a runtime may: the node's API, never ``net``
    or a face."""
    assert layer_violations(NULLRT, {"plugin", "node"} | LAYERS["plugin"]) == []


def test_isolation_imports_plugin_and_data_and_the_node_only_for_annotations():
    isolation = CORE_DIR / "isolation"
    assert layer_violations(isolation, {"isolation"} | LAYERS["isolation"], typing=False) == []
    assert layer_violations(isolation, {"isolation", "node"} | LAYERS["isolation"]) == []


def test_node_imports_plugin_and_data():
    assert layer_violations(CORE_DIR / "node", {"node"} | LAYERS["node"]) == []


def test_net_imports_node_plugin_and_data():
    assert layer_violations(CORE_DIR / "net", {"net"} | LAYERS["net"]) == []


def test_the_layer_checker_finds_each_kind_of_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / CORE
    (root / "data").mkdir(parents=True)
    (root / "net").mkdir()
    for init in (root, root / "data", root / "net"):
        (init / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    (root / "data" / "up.py").write_text("from pan_runtime.net import udp\n")
    (root / "data" / "rel.py").write_text("from ..net import udp\n")
    (root / "data" / "api.py").write_text("from pan_runtime import Node\n")
    (root / "data" / "sub.py").write_text("from pan_runtime import errors, net\n")
    (root / "data" / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pan_runtime.net.udp import UdpTransport\n"
    )
    (root / "data" / "ok.py").write_text("from pan_runtime.errors import PanError\nfrom . import up\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PARTS", {"data", "net", "errors"})
    assert layer_violations(root / "data", {"data", "errors"}) == [
        "data/rel.py imports pan_runtime.net",
        "data/sub.py imports pan_runtime.net",
        "data/typed.py imports pan_runtime.net.udp",
        "data/up.py imports pan_runtime.net",
        "data/api.py imports pan_runtime",
    ]
    assert layer_violations(root / "data", {"data", "errors"}, typing=False) == [
        "data/rel.py imports pan_runtime.net",
        "data/sub.py imports pan_runtime.net",
        "data/up.py imports pan_runtime.net",
        "data/api.py imports pan_runtime",
    ]


# ---------------------------------------------------------------------------- the core's private names
def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain on a plain name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *parts])


def private_uses(tree: Path) -> list[str]:
    """``"file uses name"`` for each private name of the core (``_x``, not ``__x__``) used under
    ``tree``: imported (``from pan_runtime.a import _x``), a module of its own (``pan_runtime.a._m``),
    or read off a core module (``pan_runtime.a._x``, or ``m._x`` where ``m`` names a core module)."""
    found = []
    for f in sorted(tree.rglob("*.py")) if tree.is_dir() else [tree]:
        syntax = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        uses = {n for n in imported(f) if n.split(".")[0] == CORE and any(_private(p) for p in n.split("."))}
        modules: dict[str, str] = {}  # local name -> the core module it names
        for node in ast.walk(syntax):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == CORE:
                        modules[a.asname or CORE] = a.name if a.asname else CORE
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == CORE:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if _private(a.name):
                        uses.add(full)
                    elif _is_core_module(full):
                        modules[a.asname or a.name] = full
        for node in ast.walk(syntax):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                base = (_dotted(node.value) or "").split(".")
                if base[0] in modules:
                    uses.add(".".join([modules[base[0]], *base[1:], node.attr]))
        found.extend(f"{f.relative_to(tree.parent)} uses {name}" for name in sorted(uses))
    return found


@pytest.mark.parametrize("runtime", [*RUNTIMES, "null"])
def test_no_runtime_uses_a_private_name_of_the_core(runtime: str):
    """A runtime sees the core's public API only, as a third party's would (``null`` is built in)."""
    assert private_uses(RUNTIMES.get(runtime, NULLRT)) == []


def test_the_private_name_checker_finds_every_form(tmp_path: Path):
    pkg = tmp_path / "pan_native"
    pkg.mkdir()
    (pkg / "named.py").write_text("from pan_runtime.node.pni import _fill, PniServer\n")
    (pkg / "module.py").write_text("import pan_runtime.net._fastpath\n")
    (pkg / "from_module.py").write_text("from pan_runtime.net import _fastpath\n")
    (pkg / "dynamic.py").write_text("import importlib\nm = importlib.import_module('pan_runtime.net._fastpath')\n")
    (pkg / "chain.py").write_text("import pan_runtime.node\nx = pan_runtime.node.pni._fill\n")
    (pkg / "alias.py").write_text("from pan_runtime.node import pni as p\nx = p._fill\n")
    (pkg / "clean.py").write_text(
        "import pan_runtime\nfrom pan_runtime.node import pni\nfrom other import _x\n"
        "p = pan_runtime.__file__\nq = pni.PniServer\nr = _x._y\nclass A:\n    def f(self):\n        return self._y\n"
    )
    assert private_uses(pkg) == [
        "pan_native/alias.py uses pan_runtime.node.pni._fill",
        "pan_native/chain.py uses pan_runtime.node.pni._fill",
        "pan_native/dynamic.py uses pan_runtime.net._fastpath",
        "pan_native/from_module.py uses pan_runtime.net._fastpath",
        "pan_native/module.py uses pan_runtime.net._fastpath",
        "pan_native/named.py uses pan_runtime.node.pni._fill",
    ]
