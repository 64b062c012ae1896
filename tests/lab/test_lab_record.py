"""pan_runtime.lab.record: teardown removes what the lab made and nothing a wrong record names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pan_runtime.bench.testbed import netns_unavailable
from pan_runtime.errors import CleanupError, PanError
from pan_runtime.lab.record import STATE_ENV, LabRecord, find_record, teardown


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.skipif(netns_unavailable() is not None, reason=f"needs network namespaces: {netns_unavailable()}")
def test_teardown_touches_only_the_labs_own_namespaces_and_folder(tmp_path: Path):
    lab = f"r{os.getpid()}"
    mine, foreign = f"panlab-{lab}-a", f"panlab-x{os.getpid()}-a"
    folder = tmp_path / f"pan-lab-{lab}-abc"
    victim = tmp_path / "precious"
    folder.mkdir()
    victim.mkdir()
    for ns in (mine, foreign):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        rec = LabRecord(lab, "t.toml", 1, dir=str(folder), namespaces=[mine, foreign])
        rec.save()
        assert find_record(lab).namespaces == [mine, foreign]
        removed = teardown(rec)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert removed == [f"netns {mine}"] and mine not in listed and foreign in listed
        assert not folder.exists() and not rec.path.exists()
        wrong = LabRecord(lab, "t.toml", 1, dir=str(victim))
        wrong.save()
        teardown(wrong)
        assert victim.exists()  # not a folder a lab of this name makes
    finally:
        for ns in (mine, foreign):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_missing_or_broken_record_is_a_pan_error(state: Path):
    with pytest.raises(PanError, match="is the lab up"):
        find_record("nolab")
    state.mkdir()
    (state / "bad.json").write_text("{")
    with pytest.raises(PanError, match="not a lab record"):
        find_record("bad")


@pytest.mark.skipif(netns_unavailable() is not None, reason=f"needs network namespaces: {netns_unavailable()}")
def test_a_teardown_that_cannot_remove_something_is_an_error_that_names_it(state: Path, tmp_path: Path):
    lab = f"c{os.getpid()}"
    ns = f"panlab-{lab}-a"
    folder = tmp_path / f"pan-lab-{lab}-abc"
    busy = folder / "mnt"
    busy.mkdir(parents=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(busy)], check=True)  # rmdir of a mount point: EBUSY
    try:
        rec = LabRecord(lab, "t.toml", 1, dir=str(folder), namespaces=[ns])
        rec.save()
        with pytest.raises(CleanupError, match=rf"lab {lab} is not wholly removed: file {busy}: .*Device or resource busy"):
            teardown(rec)
        # what could go went; the record stays, so a second try finds what is left
        assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert rec.path.exists() and busy.exists()
        subprocess.run(["umount", str(busy)], check=True)
        assert teardown(find_record(lab)) == []
        assert not folder.exists() and not rec.path.exists()
    finally:
        subprocess.run(["umount", str(busy)], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
