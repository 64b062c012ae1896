"""The PAN Node Interface, defined once: the spec file, its loader and the binding generator."""

from pni_spec.errors import SpecError
from pni_spec.spec import Call, Entry, Param, Spec, Status, Struct, StructField, Verdict, load_spec

__all__ = [
    "Call",
    "Entry",
    "Param",
    "Spec",
    "SpecError",
    "Status",
    "Struct",
    "StructField",
    "Verdict",
    "load_spec",
]
