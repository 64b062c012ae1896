"""One Mininet network on the machine at a time: the session lock, and the sysctls put back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pan_runtime.bench.mininet_session import (
    LOCK_FD_ENV,
    MininetSession,
    lock_path,
    read_sysctls,
    sysctl_path,
)
from pan_runtime.errors import PanError

_CHILD = "from pan_runtime.bench.mininet_session import MininetSession as M; s = M(wait_s=0.3); print(s.fd); s.release()"


def test_a_second_session_waits_for_the_first_and_names_the_lock():
    first = MininetSession()
    try:
        with pytest.raises(PanError, match=str(lock_path())):
            MininetSession(wait_s=0.2)
    finally:
        first.release()
    second = MininetSession(wait_s=60)  # the lock is free again (another test session may hold it a while)
    second.release()


def test_close_puts_back_every_sysctl_that_changed():
    name = "net.core.netdev_max_backlog"
    session = MininetSession()
    try:
        before = read_sysctls()
        sysctl_path(name).write_text(str(int(before[name]) + 1))
        assert session.changed() == {name: (before[name], str(int(before[name]) + 1))}
    except BaseException:
        session.close()
        raise
    assert session.close() == []
    assert read_sysctls() == before


def test_a_child_handed_the_held_lock_neither_takes_nor_releases_it():
    session = MininetSession()
    try:
        fd = session.fd
        assert fd is not None
        env = dict(os.environ, **{LOCK_FD_ENV: str(fd)})
        r = subprocess.run([sys.executable, "-c", _CHILD], env=env, pass_fds=(fd,), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and r.stdout.split() == ["None"], r.stderr
        # without the descriptor it is a second session, and the lock is held
        r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "holds" in r.stderr
    finally:
        session.release()
