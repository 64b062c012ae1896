"""The `pan` command through a real subprocess and through main()."""

import json
import subprocess
import sys

import pytest

from pan_runtime.cli.main import main
from pan_runtime.data.codeobj import CodeObject


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "pan_runtime.cli.main", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"pan {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_and_version():
    out = run("--help").stdout
    for cmd in ("runtimes", "inspect", "keygen", "sign", "build", "demo", "bench"):
        assert cmd in out
    assert "pan 0." in run("--version").stdout


def test_runtimes_lists_isolation_and_availability():
    data = json.loads(run("runtimes", "--json").stdout)
    names = {d["name"]: d for d in data}
    assert names["null"]["available"] and names["null"]["isolation"] == "sandboxed"
    assert "native" in names and "wasm" in names


def test_runtimes_lists_where_each_runtime_can_run_and_what_its_worker_may_call():
    from pan_runtime.isolation.mechanism import process_unavailable

    names = {d["name"]: d for d in json.loads(run("runtimes", "--json").stdout)}
    want = ["in_process"] if process_unavailable() else ["in_process", "process"]
    assert all(d["mechanisms"] == want for d in names.values())
    assert "socket" not in names["native"]["worker_syscalls"] and "clone" not in names["native"]["worker_syscalls"]
    assert "clone" in names["jvm"]["worker_syscalls"] and "openat (read-only)" in names["jvm"]["worker_syscalls"]
    assert "can run" in run("runtimes").stdout.splitlines()[0]


def test_keygen_sign_inspect_round_trip(tmp_path, capsys):
    code = CodeObject.create("restricted_py", b"def accept(pni, c, n):\n    return DROP\n", meta={"label": "x"})
    pco = code.write(tmp_path / "x.pco")
    key = tmp_path / "k"
    assert main(["keygen", str(key)]) == 0
    assert (tmp_path / "k.pub").exists()
    assert main(["keygen", str(key)]) == 2  # refuses to overwrite
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["sign", str(pco), "--key", str(key)]) == 0
    assert "signed" in capsys.readouterr().out
    assert main(["inspect", str(pco), "--json", "--trust", str(tmp_path / "k.pub")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == code.hex_name and info["label"] == "x"
    assert info["signatures"][0]["valid"] and info["signatures"][0]["trusted"]
    signed = CodeObject.read(pco)
    assert signed.name == code.name and len(signed.verified_signers()) == 1


def test_inspect_bad_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.pco"
    bad.write_bytes(b"not a code object at all")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.pco" in err and "bad magic" in err


def test_sign_with_bad_key_file(tmp_path, capsys):
    code = CodeObject.create("x", b"").write(tmp_path / "c.pco")
    (tmp_path / "key").write_text("nope")
    assert main(["sign", str(code), "--key", str(tmp_path / "key")]) == 2
    assert "not an unencrypted PEM" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--runtime", "nosuch"], "unknown runtime"),
        (["bench", "--size", "20"], "below the smallest"),
        (["bench", "--size", "70000"], "datagram"),
        (["bench", "--experiment", "warp"], "unknown experiment"),
    ],
)
def test_bench_rejects_bad_options(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bench_dispatch_writes_the_documented_json(tmp_path):
    out = tmp_path / "b.json"
    run("bench", "--experiment", "dispatch", "--runtime", "null,bare", "--size", "128,1500", "--quick", "--json", str(out), "--quiet")
    doc = json.loads(out.read_text())
    assert set(doc) == {"meta", "results"}
    for key in ("machine", "python", "versions", "date", "options"):
        assert key in doc["meta"]
    rows = doc["results"]
    assert {(r["runtime"], r["size"]) for r in rows} == {("null", 128), ("null", 1500), ("bare", 128), ("bare", 1500)}
    for r in rows:
        assert set(r) == {"experiment", "topology", "config", "runtime", "size", "metric", "stat", "value", "isolation"}
        assert r["isolation"] == "in_process"
        assert r["experiment"] == "dispatch" and r["topology"] == "inproc" and r["metric"] in ("dispatch_us", "others_cpu")
        assert r["value"] > 0 if r["metric"] == "dispatch_us" else 0 <= r["value"] <= 1
    assert {r["stat"] for r in rows if r["metric"] == "dispatch_us"} >= {"median", "trial_min", "trial_max"}
    assert doc["meta"]["quick"] is True


def test_bench_isolation_process_runs_the_middles_code_in_workers(tmp_path):
    out = tmp_path / "p.json"
    run("bench", "--experiment", "dispatch", "--runtime", "native", "--isolation", "process", "--size", "1500", "--quick",
        "--json", str(out), "--quiet")
    rows = json.loads(out.read_text())["results"]
    assert {(r["runtime"], r["isolation"]) for r in rows} == {("native/process", "process")}
    timed = [r["value"] for r in rows if r["metric"] == "dispatch_us" and r["stat"] == "median"]
    workers = [r["value"] for r in rows if r["metric"] == "middle_workers"]
    # the middle ran its forward in a worker, in each configuration (active, activecopy)
    assert timed and all(t > 0 for t in timed) and workers == [1.0] * len(timed)


def test_runtimes_lists_the_limits_each_runtime_declares():
    names = {d["name"]: d for d in json.loads(run("runtimes", "--json").stdout)}
    assert names["native"]["limits"] == []
    assert names["restricted_py"]["limits"] == ["steps", "time_ms"]
    assert "time_ms" in names["wasm"]["limits"] and "time_ms" in names["jvm"]["limits"]
    assert "limits" in run("runtimes").stdout.splitlines()[0]


def test_conformance_runs_checks_and_reports_them():
    data = json.loads(run("conformance", "wasm", "--check", "ping", "--check", "differential-ping", "--json").stdout)
    assert data["reference"] == "native"
    assert [(r["check"], r["kind"], r["outcome"]) for r in data["results"]] == [
        ("ping", "protocol", "passed"), ("differential-ping", "differential", "passed")
    ]
    out = run("conformance", "native", "--check", "raise").stdout
    assert "raise  case  skipped" in out and "isolation none:" in out and "0 passed, 0 failed, 1 skipped" in out
    listed = run("conformance", "--list").stdout
    assert "differential-flood" in listed and "softstate" in listed
    bad = run("conformance", check=False)
    assert bad.returncode == 2 and "name the runtime to check" in bad.stderr
    bad = run("conformance", "nosuch", check=False)
    assert bad.returncode == 2 and "no runtime named 'nosuch'" in bad.stderr


def test_conformance_stops_a_check_that_hangs_and_exits_1(tmp_path):
    import os
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "pan_runtime.cli.main", "conformance", "loops", "--plugin", "kit_runtimes",
                           "--check", "spin", "--check", "dep", "--timeout", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("no answer within the time limit of 2 s; the worker was ended") == 2, proc.stdout
    assert "0 passed, 2 failed, 0 skipped" in proc.stdout


def test_build_and_inspect_name_user_code_by_its_source_file(tmp_path, capsys):
    src = tmp_path / "my_proto.py"
    src.write_text("def accept(pni, capsule, length):\n    return DROP\n")
    assert main(["build", str(src), "-o", str(tmp_path / "out.pco")]) == 0
    code = CodeObject.read(tmp_path / "out.pco")
    assert capsys.readouterr().out.split()[1] == f"my_proto@{code.hex_name[:12]}"
    assert main(["inspect", str(tmp_path / "out.pco")]) == 0
    assert "label        my_proto\n" in capsys.readouterr().out
