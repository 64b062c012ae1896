"""The conformance kit for runtimes: the same checks for pan's runtimes and any installed
one (``pan conformance RUNTIME``, or the pytest plugin ``pan_runtime.testing.pytest_plugin``).

``checks`` holds the scenarios, ``kit`` runs them in a worker process under a time limit,
``conformance`` finds and builds a runtime's source of each shipped case.
"""

from pan_runtime.testing.conformance import BUILTIN_RUNTIMES, CaseSource, build_case, case_names, source_for
from pan_runtime.testing.kit import CheckResult, Kit, run_conformance

__all__ = ["BUILTIN_RUNTIMES", "CaseSource", "CheckResult", "Kit", "build_case", "case_names", "run_conformance", "source_for"]
