"""``-v`` and ``-q`` before or after the command (``pan_runtime.cli.verbosity``), and log lines
that carry the time."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from pan_runtime.cli.main import build_parser
from pan_runtime.cli.verbosity import verbosity
from pan_runtime.net.lifetime import child_env


@pytest.mark.parametrize(
    ("argv", "level", "quiet"),
    [
        (["-v", "node", "x.toml"], 1, None),
        (["node", "x.toml", "-v", "-v"], 2, None),
        (["-v", "node", "x.toml", "--verbose"], 2, None),
        (["node", "x.toml", "-q"], -1, None),
        (["-q", "stats", "s"], -1, None),
        (["code", "list", "s", "-vv"], 2, None),
        (["state", "dump", "s", "c", "-q"], -1, None),
        (["demo", "-q"], -1, True),  # demo's own --quiet (no progress) goes with it
        (["-q", "demo"], -1, True),
        (["demo"], 0, False),
        (["ping", "s", "--to", "1.2.3.4:5", "-q", "-v"], 0, True),  # ping's -q: only the summary
    ],
)
def test_flags_mean_the_same_before_and_after_the_command(argv, level, quiet):
    args = build_parser().parse_args(argv)
    assert verbosity(args) == level
    assert getattr(args, "quiet", None) == quiet


def _node_output(tmp_path, after: list[str]) -> str:
    """What ``pan node CONFIG AFTER...`` prints until it is ready and stopped."""
    cfg = tmp_path / "n.toml"
    cfg.write_text('[node]\nname = "solo"\nlisten = ["127.0.0.1:0"]\n')
    out = tmp_path / "out.log"
    with open(out, "wb") as f:
        p = subprocess.Popen([sys.executable, "-m", "pan_runtime.cli.main", "node", str(cfg), *after],
                             stdout=f, stderr=subprocess.STDOUT, env=child_env())
    try:
        end = time.monotonic() + 300  # a hang guard
        while b"ready" not in out.read_bytes():
            assert p.poll() is None and time.monotonic() < end, out.read_text()
            time.sleep(0.05)
    finally:
        p.terminate()
        assert p.wait(60) == 0
    return out.read_text()


def test_pan_node_v_after_the_command_logs_info_with_time_stamps(tmp_path):
    assert " INFO " not in _node_output(tmp_path, [])
    info = [line for line in _node_output(tmp_path, ["-v"]).splitlines() if " INFO " in line]
    assert info and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pan\.", line) for line in info)
    assert any("solo: 0 neighbours" in line for line in info)
