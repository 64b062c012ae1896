"""Fixtures for the jvm runtime tests: one JVM per session, a small node behind the real PniServer."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pan_jvm.builder import pack_jar
from pan_jvm.code import JvmCode
from pan_jvm.jvm import compiled_classes, find_javac
from pan_jvm.runtime import JvmRuntime
from pan_runtime.data.capsule import Capsule
from pan_runtime.data.codeobj import CodeObject
from pan_runtime.data.segments import Segment, SegmentPool
from pan_runtime.node.env import Budget, Environment, Origin
from pan_runtime.node.pni import PniServer
from pan_runtime.testing.stubnode import HOME, PREV, StubNode

SOURCES = Path(__file__).with_name("java")
BUDGET = Budget(time_ms=100.0, memory_bytes=8 << 20)


FakeNode = StubNode


def javac(sources: list[Path], out: Path, extra_cp: list[str] = ()) -> dict[str, bytes]:
    """Compile test sources against the PNI; returns class bytes by internal name."""
    cp = ":".join([str(compiled_classes()), *extra_cp])
    out.mkdir(parents=True, exist_ok=True)
    cmd = [find_javac(), "--release", "17", "-nowarn", "-Xlint:none", "-cp", cp, "-d", str(out)]
    proc = subprocess.run([*cmd, *map(str, sources)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {str(p.relative_to(out).with_suffix("")): p.read_bytes() for p in sorted(out.rglob("*.class"))}


class Classes:
    """Every test class under ``java/cases``, compiled once; ``code(...)`` packs a code object."""

    def __init__(self, classes: dict[str, bytes]):
        self.classes = classes

    def jar(self, *names: str) -> bytes:
        picked = {}
        for n in names:
            for k, v in self.classes.items():
                if k == n or k.startswith(n + "$"):
                    picked[k] = v
        assert picked, names
        return pack_jar(picked)

    def code(
        self, entry: str, *more: str, exports: tuple[str, ...] = (), deps: tuple[bytes, ...] = ()
    ) -> CodeObject:
        return CodeObject.create(
            "jvm",
            self.jar(entry, *more),
            meta={"entry_class": entry.replace("/", "."), "label": entry.rsplit("/", 1)[-1]},
            exports=exports,
            dependencies=deps,
        )


@pytest.fixture(scope="session")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Classes:
    out = tmp_path_factory.mktemp("jvm-cases")
    sources = sorted((SOURCES / "cases").glob("*.java")) + sorted((SOURCES / "hostile").glob("*.java"))
    return Classes(javac(sources, out))


@pytest.fixture(scope="session")
def same_name(tmp_path_factory: pytest.TempPathFactory) -> tuple[Classes, Classes]:
    """Two code objects that both define ``same.Counter``."""
    out = tmp_path_factory.mktemp("jvm-same")
    return tuple(  # type: ignore[return-value]
        Classes(javac(sorted((SOURCES / "cases" / d).rglob("*.java")), out / d)) for d in ("same1", "same2")
    )


@pytest.fixture(scope="session")
def runtime() -> Iterator[JvmRuntime]:
    rt = JvmRuntime({"watchdog_tick_ms": 1})
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def jpool() -> Iterator[SegmentPool]:
    p = SegmentPool(2048, 256)
    yield p
    if p.whole:  # capsule bodies stay with their (test-made) capsules; the mapping goes at exit
        p.close()


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def host(node: FakeNode) -> PniServer:
    return PniServer(node)


def make_env(
    code: CodeObject,
    body: bytes,
    pool: SegmentPool | None = None,
    budget: Budget | None = None,
    origin: Origin = Origin.NETWORK,
) -> Environment:
    """An environment whose body is a pooled segment (zero-copy path) or an owned one."""
    if pool is not None:
        seg = pool.allocate(len(body))
        seg.view()[:] = body
    else:
        seg = Segment.owned(body)
    capsule = Capsule(code.name, HOME, seg)
    return Environment().setup(
        code, capsule, origin, 1 if origin == Origin.APPLICATION else None, PREV, budget or BUDGET
    )


def run(loaded: JvmCode, host: PniServer, env: Environment) -> int:
    """One accept the way the node makes it."""
    host.current = env
    return loaded.accept(env)


@pytest.fixture
def forward(runtime: JvmRuntime, classes: Classes, host: PniServer) -> Iterator[JvmCode]:
    loaded = runtime.load(classes.code("cases/Fwd"), [], host)
    yield loaded
    loaded.unload()
