"""The runnable examples in examples/ work as the docs say."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_embedding_example_runs_and_delivers():
    result = runpy.run_path(str(ROOT / "examples" / "embed.py"))["main"]()
    assert result == {"received": 10, "middle_seen": 10, "ping_phase": 1}


def test_embedding_example_as_a_script():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hello 9" in proc.stdout


# ------------------------------------------------------------------ a runtime from the docs alone
DOC = ROOT / "docs" / "writing-a-runtime.md"
PUREPY = ROOT / "examples" / "purepy-runtime"


def _doc_listings() -> dict[str, str]:
    """The files docs/writing-a-runtime.md prints whole: fenced blocks whose first line is
    ``# file: PATH``."""
    out = {}
    for block in re.findall(r"```(?:toml|python)\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        first = block.split("\n", 1)[0]
        if first.startswith("# file: "):
            out[first[len("# file: "):].strip()] = block
    return out


def test_the_docs_print_the_purepy_example_as_it_is_in_the_repository():
    listings = _doc_listings()
    assert set(listings) == {"pyproject.toml", "pan_purepy/__init__.py", "pan_purepy/plugin.py"}
    for rel, text in listings.items():
        assert (PUREPY / rel).read_text(encoding="utf-8") == text, f"docs and examples/purepy-runtime/{rel} differ"


@pytest.mark.slow
def test_a_runtime_written_from_the_docs_alone_passes_conformance_and_runs_in_demo_and_bench(tmp_path):
    """The package is written from the page's listings into a folder outside the repository,
    installed with pip (into a folder on PYTHONPATH, not into pan's environment), and then
    is a runtime like the built-in ones: ``pan conformance``, ``pan demo``, ``pan bench``."""

    package = tmp_path / "purepy-runtime"
    for rel, text in _doc_listings().items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text, encoding="utf-8")
    assert not package.is_relative_to(ROOT)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(package)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), TMPDIR=str(tmp_path / "tmp"))

    def pan(*args: str, ok: bool = True) -> str:
        proc = subprocess.run([sys.executable, "-m", "pan_runtime.cli.main", *args], capture_output=True, text=True,
                              timeout=900, env=env, cwd=tmp_path)
        assert (proc.returncode == 0) == ok, f"pan {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    infos = {i["name"]: i for i in json.loads(pan("runtimes", "--json"))}
    assert infos["purepy"]["available"] and infos["purepy"]["isolation"] == "none"

    results = json.loads(pan("conformance", "purepy", "--json"))["results"]
    outcomes = {r["check"]: r["outcome"] for r in results}
    assert {c for c, o in outcomes.items() if o != "passed"} == {"spin", "raise"}, results
    assert all(r["detail"].startswith("isolation none:") for r in results if r["outcome"] == "skipped")
    assert {"differential-ping", "differential-flood", "badargs", "dep"} <= set(outcomes)

    demo = pan("demo", "--count", "200", "--quiet")  # every runtime with reference protocols
    rows = {cols[0]: cols for cols in (line.split() for line in demo.splitlines()) if cols}
    assert "purepy" in rows and int(rows["purepy"][4]) == 200, demo
    assert "native" in rows and "purepy:" not in demo

    out = tmp_path / "bench.json"
    pan("bench", "--quick", "--runtime", "purepy", "--experiment", "dispatch,ping,flood", "--topology", "inproc,udp",
        "--size", "1500", "--json", str(out), "--quiet")
    cells = {(r["experiment"], r["topology"], r["config"], r["metric"]) for r in json.loads(out.read_text())["results"]
             if r["runtime"] == "purepy"}
    assert {("dispatch", "inproc", "active", "dispatch_us"), ("ping", "udp", "active", "added_us"),
            ("flood", "udp", "active", "capsules_per_s"), ("ping", "inproc", "active", "rtt_us")} <= cells
    assert list((tmp_path / "tmp").iterdir()) == []
