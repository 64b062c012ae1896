"""pan's ``restricted_py`` runtime: code objects in Python source, run under RestrictedPython.

Isolation is ``guarded``: RestrictedPython plus our guards and step meter make accidents and
the usual ways of exhausting a node fail fast, but they are not a security boundary. Run
code from parties you do not trust in the ``wasm`` runtime. See ``README.md`` here.
"""

from pan_restricted_py.limits import DEFAULT_LIMITS, Limits

__all__ = ["Limits", "DEFAULT_LIMITS"]
