"""pytest plugin: on this machine kind every runtime runs, so a skipped test hides a runtime
that did not. Any skip fails the session unless its reason says "[allowed-skip]"."""

from __future__ import annotations

_SKIPS: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "[allowed-skip]" not in reason:
            _SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _SKIPS and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _SKIPS:
        terminalreporter.write_line(
            f"FAILED: {len(_SKIPS)} skipped test(s); skips are refused on this machine kind:", red=True
        )
        for s in _SKIPS[:20]:
            terminalreporter.write_line(f"  {s}")
