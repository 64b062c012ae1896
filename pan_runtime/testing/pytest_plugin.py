"""A pytest plugin: the conformance kit's checks as test items of a runtime package's suite.

pytest loads it wherever pan-runtime is installed (entry point ``pytest11``). A test that
takes the ``pan_check`` fixture runs once per check and per runtime named by the
``pan_conformance`` marker (or by ``--pan-runtime``), each in the kit's worker under its
time limit, and passes, fails with what differed, or is skipped with the kit's reason::

    import pytest

    @pytest.mark.pan_conformance("myruntime")   # reference="native", timeout=180.0, isolation=None
    def test_conformance(pan_check):
        pan_check.verify()

One worker per runtime serves every check of the session, as in ``pan conformance``.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["PanCheck"]

_KITS = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pan", "pan conformance kit")
    group.addoption("--pan-runtime", action="append", default=[], metavar="NAME",
                    help="run tests that take pan_check on this runtime (repeatable; overrides the marker)")
    group.addoption("--pan-isolation", choices=("in_process", "process"), default=None,
                    help="how the checked runtime runs its code (overrides the marker's isolation=)")
    group.addoption("--pan-timeout", type=float, default=None, metavar="S",
                    help="outer time limit of one conformance check in seconds")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pan_conformance(*runtimes, reference='native', timeout=None, plugins=(), isolation=None): run a test that takes "
        "pan_check once per conformance check on each runtime",
    )
    config.stash[_KITS] = {}


def pytest_unconfigure(config: pytest.Config) -> None:
    for kit in config.stash.get(_KITS, {}).values():
        kit.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pan_check" not in metafunc.fixturenames:
        return
    from pan_runtime.testing.checks import check_ids

    marker = metafunc.definition.get_closest_marker("pan_conformance")
    runtimes = list(metafunc.config.getoption("--pan-runtime")) or (list(marker.args) if marker else [])
    if not runtimes:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} takes pan_check: name runtimes with "
                                "@pytest.mark.pan_conformance(NAME, ...) or --pan-runtime NAME")
    params = [(rt, check) for rt in runtimes for check in check_ids()]
    metafunc.parametrize("pan_check", params, indirect=True, ids=[f"{rt}-{check}" for rt, check in params])


class PanCheck:
    """One check on one runtime; ``verify()`` runs it and turns its outcome into pytest's."""

    def __init__(self, kit: Any, runtime: str, check: str):
        self.kit = kit
        self.runtime = runtime
        self.check = check
        self.result: Any = None

    def run(self) -> Any:
        """Run the check (once) and return its ``CheckResult``."""
        if self.result is None:
            self.result = self.kit.run(self.check)
        return self.result

    def verify(self) -> None:
        r = self.run()
        if r.outcome == "skipped":
            pytest.skip(f"{self.runtime} {self.check}: {r.detail}")
        if r.outcome != "passed":
            pytest.fail(f"{self.runtime} {self.check}: {r.detail}", pytrace=False)


@pytest.fixture
def pan_check(request: pytest.FixtureRequest) -> PanCheck:
    from pan_runtime.errors import PanError
    from pan_runtime.testing.kit import DEFAULT_TIMEOUT_S, Kit, check_runtime

    runtime, check = request.param
    marker = request.node.get_closest_marker("pan_conformance")
    kw = dict(marker.kwargs) if marker else {}
    timeout = request.config.getoption("--pan-timeout") or kw.get("timeout") or DEFAULT_TIMEOUT_S
    reference = kw.get("reference", "native")
    plugins = tuple(kw.get("plugins", ()))
    isolation = request.config.getoption("--pan-isolation") or kw.get("isolation")
    kits = request.config.stash[_KITS]
    key = (runtime, reference, timeout, plugins, isolation)
    if key not in kits:
        try:
            check_runtime(runtime, reference, plugins)
        except PanError as exc:
            pytest.fail(str(exc), pytrace=False)
        kits[key] = Kit(runtime, reference=reference, timeout=timeout, plugin_modules=plugins, isolation=isolation)
    return PanCheck(kits[key], runtime, check)
