"""The runnable examples in examples/ work as the docs say."""

import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_embedding_example_runs_and_delivers():
    result = runpy.run_path(str(ROOT / "examples" / "embed.py"))["main"]()
    assert result == {"received": 10, "middle_seen": 10, "ping_phase": 1}


def test_embedding_example_as_a_script():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hello 9" in proc.stdout
