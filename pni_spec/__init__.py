"""The PAN Node Interface, defined once: the spec file, its loader and the binding generators;
and the codec generator for protocols' header specs (``pni_spec.codecs``)."""

from pni_spec.errors import SpecError
from pni_spec.spec import Call, Entry, Param, Spec, Status, Verdict, load_spec

__all__ = [
    "Call",
    "Entry",
    "Param",
    "Spec",
    "SpecError",
    "Status",
    "Verdict",
    "load_spec",
]
