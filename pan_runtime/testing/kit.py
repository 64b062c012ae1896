"""The conformance kit: every check of ``pan_runtime.testing.checks`` on any installed runtime.

Checks run one after another in a worker process (``pan_runtime.testing.worker``) that dies
with this one. Each has an outer time limit: a check that does not answer in time, or whose
worker dies (a crash in unsandboxed code), fails with what the worker wrote to standard
error, the worker is ended and a fresh one runs the next check. ``pan conformance RUNTIME``
and the pytest plugin (``pan_runtime.testing.pytest_plugin``) are its two faces.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

from pan_runtime.errors import PanError
from pan_runtime.isolation.mechanism import ENV as ISOLATION_ENV
from pan_runtime.net.lifetime import child_env

__all__ = ["DEFAULT_TIMEOUT_S", "CheckResult", "Kit", "check_runtime", "run_conformance"]

#: the outer time limit of one check (the first build of a runtime's sources on a loaded
#: machine is what takes longest; no check needs anything near it when it passes)
DEFAULT_TIMEOUT_S = 180.0
#: the tail of the worker's standard error shown with a failure
STDERR_TAIL = 2000


@dataclass
class CheckResult:
    """The outcome of one check: ``passed``, ``failed`` or ``skipped``, with the reason."""

    check: str
    kind: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_runtime(runtime: str, reference: str, plugin_modules: Sequence[str] = ()) -> None:
    """Refuse, before anything starts, a runtime (or reference) that is not installed or cannot run here."""
    import importlib

    from pan_runtime.plugin import nullrt
    from pan_runtime.plugin.plugins import load_plugins

    plugins = load_plugins(extra=[nullrt, *(importlib.import_module(m) for m in plugin_modules)])
    for name, role in ((runtime, "runtime"), (reference, "reference runtime")):
        if name not in plugins.runtimes:
            why = plugins.failures.get(name)
            raise PanError(f"no {role} named {name!r}" + (f": {why}" if why else f"; installed: {', '.join(plugins.runtimes.names())}"))
    why = plugins.runtimes.get(runtime).available()
    if why:
        raise PanError(f"runtime {runtime} cannot run here: {why}")


class Kit:
    """A worker for one runtime and the checks run in it; ``with Kit(...) as kit: kit.run(id)``."""

    def __init__(
        self,
        runtime: str,
        *,
        reference: str = "native",
        timeout: float = DEFAULT_TIMEOUT_S,
        plugin_modules: Sequence[str] = (),
        isolation: str | None = None,
    ):
        if timeout <= 0:
            raise PanError("the time limit of a check must be positive")
        if isolation is not None and isolation not in ("in_process", "process"):
            raise PanError(f"isolation must be in_process or process, got {isolation!r}")
        self.runtime = runtime
        #: how the checked runtime runs its code in the checks' nodes (None: the nodes' default);
        #: the reference runtime stays in-process
        self.isolation = isolation
        self.reference = reference
        self.timeout = timeout
        self.plugin_modules = list(plugin_modules)
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = ""
        #: plugins that failed to load in the worker (entry point -> why)
        self.plugin_failures: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        """The worker's process id while one runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- the worker --------------------------------------------------------------------
    def _start(self, deadline: float) -> None:
        cmd = [sys.executable, "-m", "pan_runtime.testing.worker", "--runtime", self.runtime, "--reference", self.reference]
        for m in self.plugin_modules:
            cmd += ["--plugin", m]
        self._stderr = tempfile.TemporaryFile()
        env = child_env()
        if self.isolation is not None:
            env[ISOLATION_ENV] = f"{self.runtime}={self.isolation}"
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                      env=env, start_new_session=True)
        self._buffer = ""
        hello = self._read_line(deadline)
        if hello is None:
            raise _WorkerGone(self._why_gone("did not start"))
        self.plugin_failures = dict(json.loads(hello).get("failures") or {})

    def _read_line(self, deadline: float) -> str | None:
        """The worker's next answer, or None when it died or the deadline passed."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while "\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buffer += chunk.decode("utf-8", "replace")
        line, self._buffer = self._buffer.split("\n", 1)
        return line

    def _stderr_tail(self, since: int = 0) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(since)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return text[-STDERR_TAIL:]

    def _stderr_mark(self) -> int:
        if self._stderr is None:
            return 0
        self._stderr.seek(0, os.SEEK_END)
        return self._stderr.tell()

    def _why_gone(self, what: str) -> str:
        proc = self._proc
        code = proc.poll() if proc else None
        if code is None:
            how = "it was still running"
        elif code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit {code}"
        return f"the worker process {what} ({how})"

    def _stop(self) -> None:
        """End the worker (and what it started) and drop its standard error."""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and whatever it started (compilers)
            except ProcessLookupError:
                pass
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
        proc.wait()

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> Kit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checks ------------------------------------------------------------------------
    def run(self, check: str) -> CheckResult:
        """Run one check under the time limit (the worker is started or restarted as needed)."""
        from pan_runtime.testing.checks import CHECKS

        if check not in CHECKS:
            raise PanError(f"no conformance check {check!r}; known: {', '.join(CHECKS)}")
        kind = CHECKS[check].kind
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        mark = 0
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                self._start(deadline)
            mark = self._stderr_mark()
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"check": check}) + "\n")
            self._proc.stdin.flush()
            line = self._read_line(deadline)
            if line is None:
                if time.monotonic() >= deadline and self._proc.poll() is None:
                    raise _WorkerGone(f"no answer within the time limit of {self.timeout:g} s; the worker was ended")
                try:  # its output ended: it is exiting
                    self._proc.wait(max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                raise _WorkerGone(self._why_gone("died during the check"))
        except (_WorkerGone, BrokenPipeError) as exc:
            tail = self._stderr_tail(mark)
            self._stop()
            detail = str(exc) if isinstance(exc, _WorkerGone) else self._why_gone("went away")
            return CheckResult(check, kind, "failed", detail + (f"\nits standard error:\n{tail}" if tail else ""),
                               round(time.monotonic() - t0, 3))
        answer = json.loads(line)
        detail = answer["detail"]
        if answer["outcome"] == "failed":
            tail = self._stderr_tail(mark)
            if tail:
                detail += f"\nthe worker's standard error:\n{tail}"
        return CheckResult(check, kind, answer["outcome"], detail, answer["seconds"])

    def run_all(self, checks: Iterable[str] | None = None) -> Iterator[CheckResult]:
        from pan_runtime.testing.checks import check_ids

        for check in checks or check_ids():
            yield self.run(check)


class _WorkerGone(Exception):
    """The worker did not answer: it died, or the time limit passed."""


def run_conformance(
    runtime: str,
    *,
    reference: str = "native",
    checks: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    plugin_modules: Sequence[str] = (),
    progress: Callable[[CheckResult], None] | None = None,
    isolation: str | None = None,
) -> list[CheckResult]:
    """Every check (or ``checks``) on ``runtime``, compared with ``reference`` where it applies;
    ``isolation``: how ``runtime`` runs its code in the checks' nodes (``process``: in workers)."""
    check_runtime(runtime, reference, plugin_modules)
    out = []
    with Kit(runtime, reference=reference, timeout=timeout, plugin_modules=plugin_modules, isolation=isolation) as kit:
        for result in kit.run_all(checks):
            out.append(result)
            if progress:
                progress(result)
    return out
