"""pan as an installed package (pyproject.toml, setup.py): its extras are spelled so that the
pip a Python ships finds them, its version has one source, the wheel builds without a
deprecation banner and carries every file pan reads at run time, and, in a fresh virtual
environment outside the repository made with the interpreter's own pip, ``pan demo``,
``pan bench``, ``pan codec``, ``pan conformance`` and a ping across three ``pan node``
processes work.

Every process the slow tests start is tied to the test run (``PR_SET_PDEATHSIG`` through a
small launcher that then execs the command), so a killed run leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

import pan_runtime
from pan_runtime.net.lifetime import child_env

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
#: package -> its folder in the repository (pyproject's package-dir; the rest sit at the root)
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]
RUNTIMES = ("native", "wasm", "jvm", "restricted_py")
#: runs a command with this process as its parent for life, then execs it
LAUNCHER = "import os, sys; from pan_runtime.net.lifetime import die_with_parent; die_with_parent(); os.execvp(sys.argv[1], sys.argv[1:])"


def _normalised(extra: str) -> str:
    """An extra's name as PEP 685 has every tool compare it."""
    return re.sub(r"[-_.]+", "-", extra).lower()


def test_extras_are_spelled_as_every_pip_finds_them():
    """Metadata carries normalised extra names; a pip older than PEP 685 (Python 3.11 ships
    23.2) compares what the user typed with them as it is, so only normalised names match:
    pyproject defines them so, and the docs and messages name only those."""
    assert {e: _normalised(e) for e in EXTRAS} == {e: e for e in EXTRAS}
    texts = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    for base in ("pan_runtime", "runtimes", "pni_spec"):
        texts += sorted((ROOT / base).rglob("*.py")) + sorted((ROOT / base).rglob("*.md"))
    named = {}
    for path in texts:
        for m in re.finditer(r"pan-runtime\[([^\]]+)\]", path.read_text(encoding="utf-8")):
            for extra in m.group(1).split(","):
                named.setdefault(extra.strip(), str(path.relative_to(ROOT)))
    assert {"restricted-py", "jvm", "wasm"} <= set(named), named
    assert {e: where for e, where in named.items() if e not in EXTRAS} == {}


def test_the_version_has_one_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pan_runtime.__version__"}
    assert metadata.version("pan-runtime") == pan_runtime.__version__


# ---------------------------------------------------------------------------- the wheel

def _tied(cmd: list[str]) -> list[str]:
    """``cmd`` run so that it dies with this process (see ``LAUNCHER``); env from ``child_env``."""
    return [sys.executable, "-c", LAUNCHER, *cmd]


def _run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float) -> str:
    """Run ``cmd`` tied to this process; its output, or a failure that shows it."""
    proc = subprocess.run(_tied(cmd), env=child_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{' '.join(cmd)}` exited {proc.returncode}:\n{out}"
    return out


def _tracked_files() -> list[Path]:
    """The repository's files as a fresh clone of them would have them (CI builds from one):
    tracked, or new and not ignored."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, check=True).stdout
        return [Path(p) for p in listed.decode().split("\0") if p and (ROOT / p).is_file()]
    skip = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
    return [p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


@pytest.fixture(scope="module")
def wheel() -> Iterator[tuple[Path, str]]:
    """The wheel built from a copy of the tracked files (no build/ left in the checkout), and
    the build's verbose log."""
    work = Path(tempfile.mkdtemp(prefix="pan-wheel-", dir="/tmp"))
    try:
        src = work / "src"
        for rel in _tracked_files():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
        log = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(work / "dist"), str(src)],
                   timeout=900)
        (built,) = (work / "dist").glob("pan_runtime-*.whl")
        yield built, log
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _installed_name(rel: Path) -> str | None:
    """Where the repository file ``rel`` goes in the wheel (None: in no package)."""
    for package, folder in PACKAGE_DIRS.items():
        if rel.is_relative_to(folder):
            return "/".join([*package.split("."), *rel.relative_to(folder).parts])
    if rel.parts[0] in ("pan_runtime", "pni_spec"):
        return rel.as_posix()
    return None


@pytest.mark.slow
def test_the_wheel_builds_without_a_banner_and_ships_every_file_pan_reads(wheel: tuple[Path, str]):
    built, log = wheel
    banners = [line.strip() for line in log.splitlines() if "!!" in line or "deprecat" in line.lower()]
    assert banners == [], log
    names = set(zipfile.ZipFile(built).namelist())
    assert "pan_runtime/py.typed" in names
    # every non-module file of a package is read at run time (headers, Java and C sources,
    # the reference protocols, pni.toml, the conformance cases, whose .py sources are data
    # too), except docs (.md) and the C extensions' own sources and private headers (named for
    # their module: _fast.c, _fastpath.c, _account.c, _account_api.h)
    wanted = {}
    for rel in _tracked_files():
        name = _installed_name(rel)
        module = rel.suffix == ".py" and (ROOT / rel.parent / "__init__.py").is_file()
        if name and not module and rel.suffix != ".md" and not (rel.suffix in (".c", ".h") and rel.name.startswith("_")):
            wanted[name] = rel
    missing = sorted(str(rel) for name, rel in wanted.items() if name not in names)
    assert missing == []
    for required in ("pan_protocols/ping.c", "pan_protocols/java/Ping.java", "pan_protocols/ping.py",
                     "pan_runtime/include/pni.h", "pan_runtime/java/org/pan/pni/PNI.java",
                     "pan_jvm/java/org/pan/jvm/Lane.java", "pan_native/support.c",
                     "pan_runtime/testing/cases/spin/expected.toml", "pan_runtime/testing/cases/spin/capsule.py",
                     "pan_runtime/testing/cases/dep/Lib.java", "pan_runtime/testing/cases/badargs/capsule.c"):
        assert required in names, required


def _free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _line_configs(d: Path, ports: list[int]) -> list[Path]:
    """sender - middle - receiver on loopback, each with an application socket in ``d``."""
    names = ("sender", "middle", "receiver")
    ends = [f"127.0.0.1:{p}" for p in ports]
    routes = {0: (2, 1), 2: (0, 1)}  # the ends reach each other through the middle
    paths = []
    for i, name in enumerate(names):
        text = [f'[node]\nname = "{name}"\nlisten = ["{ends[i]}"]\napp_socket = "{name}.sock"\n']
        text += [f'[[neighbors]]\naddress = "{ends[j]}"\n' for j in (i - 1, i + 1) if 0 <= j < len(names)]
        if i in routes:
            dest, via = routes[i]
            text.append(f'[[routes]]\ndest = "{ends[dest]}"\nvia = "{ends[via]}"\nmetric = 2\n')
        text.append("[demand]\ndeadline_ms = 60000\n")  # generous: a loaded machine compiles slowly
        path = d / f"{name}.toml"
        path.write_text("".join(text))
        paths.append(path)
    return paths


def _wait_ready(procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    for proc, log in zip(procs, logs, strict=True):
        while b"ready" not in log.read_bytes():
            assert proc.poll() is None, f"{log.stem} exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < end, f"{log.stem} not ready in {timeout} s:\n{log.read_text()}"
            time.sleep(0.05)


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(30))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait(10))
    return codes


@pytest.mark.slow
def test_a_fresh_venv_outside_the_repository_runs_demo_bench_conformance_codec_and_a_three_node_ping(wheel: tuple[Path, str]):
    built, _ = wheel
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert base.is_file(), f"no base interpreter at {base}"
    bundled = _run([str(base), "-c", "import ensurepip; print(ensurepip.version())"], timeout=60).strip()
    work = Path(tempfile.mkdtemp(prefix="pan-venv-", dir="/tmp"))
    assert not work.is_relative_to(ROOT)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        venv, home = work / "venv", work / "home"
        home.mkdir()
        _run([str(base), "-m", "venv", str(venv)], timeout=300)
        py, pan = str(venv / "bin" / "python"), str(venv / "bin" / "pan")
        # the interpreter's own pip, as a user gets it, not upgraded
        assert f"pip {bundled} " in _run([py, "-m", "pip", "--version"], timeout=60)
        out = _run([py, "-m", "pip", "install", f"{built}[all]"], cwd=work, timeout=1800)
        assert "does not provide the extra" not in out, out
        every = ",".join(EXTRAS)
        out = _run([py, "-m", "pip", "install", "--dry-run", f"{built}[{every}]"], cwd=work, timeout=900)
        assert "does not provide the extra" not in out, out

        # a user's shell: the venv's tools, none of the checkout, fresh caches
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PAN_"))}
        env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "HOME": str(home),
                "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONUNBUFFERED": "1"}
        where = _run([py, "-c", "import pan_runtime, pan_protocols; print(pan_runtime.__file__, pan_protocols.__file__)"],
                     env=env, cwd=work, timeout=60)
        assert all(Path(f).is_relative_to(venv) for f in where.split()), where
        assert _run([pan, "--version"], env=env, cwd=work, timeout=60).strip() == f"pan {pan_runtime.__version__}"

        out = _run([pan, "demo", "--count", "200", "--quiet"], env=env, cwd=work, timeout=1200)
        rows = {cols[0]: cols for cols in (line.split() for line in out.splitlines()) if cols and cols[0] in RUNTIMES}
        assert set(rows) == set(RUNTIMES), out
        assert {name: int(cols[4]) for name, cols in rows.items()} == dict.fromkeys(RUNTIMES, 200), out

        out = _run([pan, "bench", "--quick", "--experiment", "ping", "--topology", "udp", "--runtime", "wasm",
                    "--size", "512", "--config", "cforw,active", "--json", "bench.json", "--quiet"],
                   env=env, cwd=work, timeout=1200)
        cells = {(r["experiment"], r["topology"], r["config"], r["runtime"])
                 for r in json.loads((work / "bench.json").read_text())["results"]}
        assert cells == {("ping", "udp", "cforw", "wasm"), ("ping", "udp", "active", "wasm")}, out

        # the conformance kit's cases ship in the package: the kit runs outside the repository
        out = _run([pan, "conformance", "wasm", "--check", "softstate", "--check", "spin", "--check", "differential-ping"],
                   env=env, cwd=work, timeout=900)
        assert "3 passed, 0 failed, 0 skipped" in out, out

        (work / "mine.toml").write_text(
            '[codecs]\nc_prefix = "my_"\njava_package = "my.wire"\n'
            '[[struct]]\nname = "hdr"\ndoc = "Mine."\nfields = [{ name = "seq", type = "u32" }]\n'
        )
        out = _run([pan, "codec", "mine.toml", "--out", "gen"], env=env, cwd=work, timeout=120)
        assert sorted(p.name for p in (work / "gen").rglob("*.*")) == ["Hdr.java", "mine.h", "mine.py"], out

        run = work / "run"
        run.mkdir()
        ports = _free_udp_ports(3)
        logs = []
        for config in _line_configs(run, ports):
            logs.append(run / f"{config.stem}.log")
            with open(logs[-1], "wb") as log:
                procs.append(subprocess.Popen(_tied([pan, "node", str(config)]), env=child_env(env), cwd=run,
                                              stdout=log, stderr=subprocess.STDOUT))
        _wait_ready(procs, logs)
        out = _run([pan, "ping", str(run / "sender.sock"), "--to", f"127.0.0.1:{ports[2]}", "--runtime", "wasm",
                    "-c", "3", "--timeout", "60"], env=env, cwd=run, timeout=600)
        assert "3 capsules transmitted, 3 received, 0.0% loss" in out, out + "".join(p.read_text() for p in logs)
        assert _stop(procs) == [0, 0, 0], "".join(p.read_text() for p in logs)
    finally:
        _stop(procs)
        shutil.rmtree(work, ignore_errors=True)
