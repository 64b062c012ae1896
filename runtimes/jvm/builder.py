"""``pan build --runtime jvm``: javac against the generated PNI, packed as a reproducible jar."""

from __future__ import annotations

import io
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import ClassVar

from pan_jvm.checker import check_classes, read_jar
from pan_jvm.jvm import compiled_classes, find_javac
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import BuildError, CodeObjectError, PanError
from pan_runtime.plugin.builders import Builder, BuildRequest

__all__ = ["JvmBuilder", "pack_jar"]

PANCODE = "org/pan/pni/PanCode"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def pack_jar(classes: dict[str, bytes]) -> bytes:
    """A jar of ``classes`` (internal name -> bytes) with fixed timestamps, so equal sources
    give an equal code object name."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(classes):
            info = zipfile.ZipInfo(f"{name}.class", _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, classes[name])
    return out.getvalue()


def _sources(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob("*.java")))
        elif p.suffix == ".java":
            found.append(p)
        else:
            raise BuildError(f"{p}: the jvm builder takes .java files or directories of them")
    if not found:
        raise BuildError("no .java sources to build")
    return found


class JvmBuilder(Builder):
    """Compiles Java sources (``--release 17``) into a jvm code object.

    The entry class is ``options["entry_class"]`` or else the one class implementing
    ``org.pan.pni.PanCode``; it is recorded in ``meta["entry_class"]``.
    """

    runtime: ClassVar[str] = "jvm"
    suffixes: ClassVar[tuple[str, ...]] = (".java",)

    @classmethod
    def available(cls) -> str | None:
        return None if find_javac() else "javac not found (install a JDK 17, or set JAVA_HOME)"

    def build(self, request: BuildRequest) -> CodeObject:
        javac = find_javac()
        if javac is None:
            raise BuildError("javac not found (install a JDK 17, or set JAVA_HOME)")
        sources = _sources([Path(s) for s in request.sources])
        try:
            pni_classes = compiled_classes()
        except PanError as exc:
            raise BuildError(f"cannot prepare the PNI classes: {exc}") from None
        dep_classes: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(prefix="pan-jvm-build-") as tmp:
            cp = [str(pni_classes)]
            for i, dep in enumerate(request.dependencies):
                jar = Path(tmp) / f"dep{i}.jar"
                jar.write_bytes(dep.payload)
                cp.append(str(jar))
                try:
                    dep_classes.update(read_jar(dep.payload))
                except CodeObjectError as exc:
                    raise BuildError(f"dependency {i} is not a jvm code object: {exc}") from None
            out = Path(tmp) / "classes"
            out.mkdir()
            cmd = [javac, "--release", "17", "-encoding", "UTF-8", "-cp", ":".join(cp), "-d", str(out)]
            proc = subprocess.run([*cmd, *map(str, sources)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"javac failed:\n{(proc.stderr or proc.stdout).strip()}")
            classes = {
                str(p.relative_to(out).with_suffix("")): p.read_bytes() for p in sorted(out.rglob("*.class"))
            }
        pni_names = {f"org/pan/pni/{p.stem}" for p in (pni_classes / "org" / "pan" / "pni").glob("*.class")}
        try:
            parsed = check_classes(classes, set(dep_classes) | pni_names)
        except CodeObjectError as exc:
            raise BuildError(f"the compiled classes would be refused at load: {exc}") from None
        entry = request.options.get("entry_class")
        if entry is None:
            entries = sorted(n for n, c in parsed.items() if PANCODE in c.interfaces)
            if len(entries) != 1:
                raise BuildError(
                    f"found {len(entries)} classes implementing org.pan.pni.PanCode "
                    f"({', '.join(entries) or 'none'}); name one with the entry_class option"
                )
            entry = entries[0].replace("/", ".")
        elif entry.replace(".", "/") not in classes:
            raise BuildError(f"entry_class {entry} is not among the compiled classes")
        return CodeObject.create(
            "jvm",
            pack_jar(classes),
            entry={"accept": "accept", "init": "init", "finalize": "finalize"},
            dependencies=[d.name for d in request.dependencies],
            exports=request.exports,
            meta=self.meta_for(request, entry_class=entry),
        )
