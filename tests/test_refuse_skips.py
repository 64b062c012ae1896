"""CI refuses skipped tests: a runtime that silently did not run must fail the suite."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(tmp_path, body):
    (tmp_path / "test_x.py").write_text(body)
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "refuse_skips", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )


def test_a_skipped_test_fails_the_session(tmp_path):
    proc = run(tmp_path, "import pytest\n\ndef test_s():\n    pytest.skip('jvm unavailable: no JDK')\n")
    assert proc.returncode == 1, proc.stdout
    assert "skips are refused" in proc.stdout and "jvm unavailable" in proc.stdout


def test_an_allowed_skip_and_passing_tests_pass(tmp_path):
    proc = run(tmp_path, "import pytest\n\ndef test_ok():\n    pass\n\ndef test_s():\n    pytest.skip('[allowed-skip] not a runtime')\n")
    assert proc.returncode == 0, proc.stdout
