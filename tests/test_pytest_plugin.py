"""The conformance kit's pytest plugin (``pan_runtime.testing.pytest_plugin``), as a runtime
package's own suite uses it: installed with pan (entry point ``pytest11``), a test that takes
``pan_check`` runs once per check and runtime, passing, failing with what differed, or
skipped with the kit's reason."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SUITE = '''
import pytest

pytestmark = pytest.mark.pan_conformance({runtimes}, timeout=120, plugins={plugins})


def test_conformance(pan_check):
    pan_check.verify()
'''


def _pytest(tmp_path: Path, suite: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_mine.py").write_text(suite)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(tmp_path / "test_mine.py"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_the_plugin_is_installed_with_pan():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert eps.get("pan_conformance") == "pan_runtime.testing.pytest_plugin"


def test_a_suite_runs_every_check_on_the_runtimes_its_marker_names(tmp_path: Path):
    r = _pytest(tmp_path, SUITE.format(runtimes='"wasm"', plugins="()"), "-k", "forward or spin or dep")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 passed" in r.stdout, r.stdout  # forward, spin, dep, differential-forward
    r = _pytest(tmp_path, SUITE.format(runtimes='"wasm"', plugins="()"), "--collect-only", "-q")
    assert "test_mine.py::test_conformance[wasm-differential-portmapper]" in r.stdout


def test_failures_and_skips_carry_the_kits_reasons(tmp_path: Path):
    r = _pytest(tmp_path, SUITE.format(runtimes='"aborts"', plugins='("kit_runtimes",)'), "-k", "spin or badargs")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 failed, 1 skipped" in r.stdout, r.stdout
    assert "aborts spin: isolation none:" in r.stdout
    assert "aborts badargs: the worker process died during the check (killed by SIGABRT)" in r.stdout


def test_the_command_line_names_the_runtime_and_a_suite_without_one_is_refused(tmp_path: Path):
    bare = "def test_conformance(pan_check):\n    pan_check.verify()\n"
    r = _pytest(tmp_path, bare, "--pan-runtime", "restricted_py", "-k", "badargs")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    r = _pytest(tmp_path, bare)
    assert r.returncode != 0
    assert "name runtimes with @pytest.mark.pan_conformance(NAME, ...) or --pan-runtime NAME" in r.stdout + r.stderr
