"""``--placement``: the CPUs each role is started on, read back from the started processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Runs in a child so the pinning cannot narrow the test session's own CPUs.
_CHILD = r"""
import json, os, subprocess, sys
from pan_runtime.bench.placement import pin_self, taskset_prefix
placement = sys.argv[1]
pin_self(placement, "sender")
seen = {}
for role in ("sender", "middle", "receiver"):
    out = subprocess.run(taskset_prefix(placement, role) + [sys.executable, "-c",
                         "import os; print(sorted(os.sched_getaffinity(0)))"],
                         capture_output=True, text=True, check=True).stdout
    seen[role] = json.loads(out)
seen["harness"] = sorted(os.sched_getaffinity(0))
print(json.dumps(seen))
"""


def _started(placement: str) -> dict[str, list[int]]:
    out = subprocess.run([sys.executable, "-c", _CHILD, placement], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_hosts_gives_the_middle_a_cpu_of_its_own_after_the_harness_is_pinned():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("[allowed-skip] --placement hosts needs two CPUs; this session may use one")
    seen = _started("hosts")
    assert seen["middle"] == [cpus[1]]
    assert seen["sender"] == seen["receiver"] == seen["harness"] == [cpus[0]]


def test_onecpu_puts_every_role_on_the_first_cpu():
    first = min(os.sched_getaffinity(0))
    seen = _started("onecpu")
    assert seen == {"sender": [first], "middle": [first], "receiver": [first], "harness": [first]}
