"""`pan demo` runs every runtime end to end and prints its table."""

import subprocess
import sys


def test_demo_runs_every_runtime():
    proc = subprocess.run(
        [sys.executable, "-m", "pan_runtime.cli.main", "demo", "--count", "500", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split() and line.split()[0] in {"native", "wasm", "jvm", "restricted_py"}}
    assert set(rows) == {"native", "wasm", "jvm", "restricted_py"}, proc.stdout
    for name, cols in rows.items():
        rtt_median, received = float(cols[1]), int(cols[4])
        assert rtt_median > 0, name
        assert received == 500, name


def test_demo_json():
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "pan_runtime.cli.main", "demo", "--runtime", "restricted_py", "--runtime", "nosuch",
         "--count", "100", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1  # a runtime asked for did not run
    assert (doc["size"], doc["count"]) == (512, 100)
    [r] = doc["results"]
    assert r["runtime"] == "restricted_py" and r["flood_received"] == 100 and r["rtt_median_us"] > 0
    assert doc["not_run"]["nosuch"] == "no such runtime"
