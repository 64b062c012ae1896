"""pan's own runtimes pass the conformance kit (``pan_runtime.testing``), through the same
pytest plugin a third-party runtime's suite uses: the reference protocols, the shipped cases
and the differential comparison with ``native``, each check in the kit's worker under its
time limit.

A check the kit skips must be skipped for the reason the kit gives, and only where it
applies: the cases that need containment on a runtime whose isolation is ``none``, and the
comparison of the reference runtime with itself.
"""

from __future__ import annotations

import pytest

from pan_runtime.plugin.plugins import default_plugins
from pan_runtime.plugin.runtime import Isolation
from pan_runtime.testing import BUILTIN_RUNTIMES
from pan_runtime.testing.checks import CHECKS, expected

NEEDS_CONTAINMENT = {c for c in ("spin", "raise") if expected(c).get("needs_sandbox")}


def test_the_cases_that_need_containment_say_so():
    assert NEEDS_CONTAINMENT == {"spin", "raise"}


@pytest.mark.pan_conformance(*BUILTIN_RUNTIMES)
def test_conformance(pan_check):
    result = pan_check.run()
    if result.outcome == "skipped":
        isolation = default_plugins().runtimes.get(pan_check.runtime).isolation
        if pan_check.check in NEEDS_CONTAINMENT and isolation is Isolation.NONE:
            assert result.detail.startswith("isolation none:"), result.detail
        elif CHECKS[pan_check.check].kind == "differential" and pan_check.runtime == "native":
            assert result.detail == "native is the reference runtime", result.detail
        else:
            pytest.fail(f"{pan_check.runtime} {pan_check.check} was skipped: {result.detail}")
        return
    pan_check.verify()


@pytest.mark.pan_conformance(*BUILTIN_RUNTIMES, isolation="process")
def test_conformance_in_process_isolation(pan_check):
    """The same checks with the runtime's code in worker processes: nothing is skipped but the
    reference's comparison with itself (in a worker, even native code is contained)."""
    result = pan_check.run()
    if result.outcome == "skipped":
        assert CHECKS[pan_check.check].kind == "differential" and pan_check.runtime == "native", result.detail
        return
    pan_check.verify()
