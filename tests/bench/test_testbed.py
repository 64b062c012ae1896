"""Testbed clean-up (``pan_runtime.bench.testbed``): what cannot be removed is an error that
names it, never silently left behind (we are root here)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from bench_helpers import bench_namespaces

from pan_runtime.bench.testbed import NS_PREFIX, NetnsTestbed, sweep_stale_namespaces
from pan_runtime.errors import PanError

REAL_IP = shutil.which("ip")
FAKE_IP = """#!/bin/sh
if [ "$1" = netns ] && [ "$2" = del ]; then
    echo "Cannot remove namespace file \\"/run/netns/$3\\": Device or resource busy" >&2
    exit 1
fi
exec %s "$@"
"""


@pytest.fixture
def busy_ip(tmp_path, monkeypatch):
    """An ``ip`` first on PATH whose ``netns del`` fails like a namespace held busy."""
    assert REAL_IP is not None, "these tests need iproute2's ip"
    d = tmp_path / "bin"
    d.mkdir()
    (d / "ip").write_text(FAKE_IP % REAL_IP)
    (d / "ip").chmod(0o755)
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


def test_a_namespace_that_cannot_be_deleted_is_an_error(busy_ip, monkeypatch):
    bed = NetnsTestbed("free")
    made = list(bed.made)
    assert len(made) == 3 and set(bench_namespaces(os.getpid())) == set(made)
    try:
        with pytest.raises(PanError) as err:
            bed.close()
        for name in made:
            assert f"cannot delete network namespace {name}" in str(err.value)
        assert "Device or resource busy" in str(err.value) and "ip netns del" in str(err.value)
        assert not bed.tmp.exists()  # the rest was cleaned up all the same
    finally:
        monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])
        for name in made:
            subprocess.run([REAL_IP, "netns", "del", name], check=True)
    assert bench_namespaces(os.getpid()) == []


def test_a_stale_namespace_that_cannot_be_deleted_is_an_error(busy_ip, monkeypatch):
    """Another suite running beside this one sweeps stale namespaces too and may delete a real
    one first, so the refusal is shown on the listing the sweep reads; the real sweep after it
    runs on a real namespace."""
    import pan_runtime.bench.testbed as testbed

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no bench process has any more
    name = f"{NS_PREFIX}{dead.pid}-x"
    real_list = testbed._our_namespaces
    monkeypatch.setattr(testbed, "_our_namespaces", lambda: [*real_list(), name])
    with pytest.raises(PanError, match=f"cannot delete stale network namespaces {name} "):
        sweep_stale_namespaces()
    monkeypatch.setattr(testbed, "_our_namespaces", real_list)
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])
    subprocess.run([REAL_IP, "netns", "add", name], check=True)
    try:
        sweep_stale_namespaces()  # deletes it, unless a sweep beside this one did first
    finally:
        subprocess.run([REAL_IP, "netns", "del", name], capture_output=True)
    assert name not in bench_namespaces()
