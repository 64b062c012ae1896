"""Generate every PNI binding from ``pni.toml``: ``python -m pni_spec.generate [--check]``.

Writes the C header, the Java interfaces and codecs, the Python protocol module, the
reference document, the reference protocols' header codecs (from ``protocols/headers.toml``)
and the marshalling module of each runtime that binds calls itself
(native ctypes callbacks, wasm host callbacks, the JVM's Python proxy and its Java guard). ``--check`` writes nothing and exits 1 listing each file that differs
from a fresh generation (so a test and CI can tell when someone edited a generated file or
the spec without regenerating).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pni_spec.codecs import banner, codec_files
from pni_spec.gen_c import render_c
from pni_spec.gen_doc import render_doc
from pni_spec.gen_hot import render_hot
from pni_spec.gen_java import render_java
from pni_spec.gen_jvm import render_jvm
from pni_spec.gen_jvm_guard import GUARD_PATH, render_jvm_guard
from pni_spec.gen_native import render_native
from pni_spec.gen_python import render_python
from pni_spec.gen_wasm import render_wasm
from pni_spec.gen_wire import render_wire
from pni_spec.headers import load_headers
from pni_spec.spec import Spec, SpecError, load_spec, load_spec_file

__all__ = ["REPO_ROOT", "render_all", "check", "write", "main"]

#: the repository root: generated paths are relative to it
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the reference protocols' header spec, and where its codecs go
HEADERS = "protocols/headers.toml"
HEADER_CODECS = {"c": "protocols/headers.h", "java": "protocols/java", "python": "pan_runtime/protocol_headers.py"}


def _validate(spec: Spec) -> None:
    """Checks the bindings need beyond what the loader enforces (names that would collide)."""
    statuses = {s.name for s in spec.statuses}
    for v in spec.verdicts:
        if v.name in statuses:
            raise SpecError(f"[[verdict]] {v.name}: the name is also a status; the bindings share one namespace")


def render_all(spec: Spec) -> dict[str, str]:
    """Every generated file as ``{path relative to the repo root: text}``, in a fixed order."""
    _validate(spec)
    files = {
        "pan_runtime/include/pni.h": render_c(spec),
        "pan_runtime/pni_api.py": render_python(spec),
        "docs/pni-reference.md": render_doc(spec),
        "runtimes/native/pni_marshal.py": render_native(spec),
        "runtimes/wasm/pni_marshal.py": render_wasm(spec),
        "runtimes/jvm/pni_marshal.py": render_jvm(spec),
        GUARD_PATH: render_jvm_guard(spec),
    }
    files.update(render_wire(spec))
    for name, text in render_java(spec).items():
        files[f"pan_runtime/java/{spec.java_package.replace('.', '/')}/{name}"] = text
    headers = load_headers(REPO_ROOT / HEADERS)
    files.update(codec_files(headers, banner("python -m pni_spec.generate", HEADERS), **HEADER_CODECS))
    files.update(render_hot(spec))
    return files


def check(files: dict[str, str], root: Path = REPO_ROOT) -> list[str]:
    """Paths whose content on disk differs from ``files`` (or that are missing)."""
    stale = []
    for rel, text in files.items():
        path = root / rel
        try:
            current = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            stale.append(rel)
    return stale


def write(files: dict[str, str], root: Path = REPO_ROOT) -> list[str]:
    """Write the files that changed; returns their paths."""
    changed = check(files, root)
    for rel in changed:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel].encode("utf-8"))
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pni_spec.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is stale")
    parser.add_argument("--spec", type=Path, help="spec file (default: pni_spec/pni.toml)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="where the generated tree goes")
    args = parser.parse_args(argv)
    try:
        spec = load_spec_file(args.spec) if args.spec else load_spec()
        files = render_all(spec)
    except SpecError as exc:
        print(f"pni_spec.generate: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = check(files, args.root)
        for rel in stale:
            print(f"stale: {rel} (run `python -m pni_spec.generate`)")
        return 1 if stale else 0
    for rel in write(files, args.root):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
