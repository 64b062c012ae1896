"""The exception tree (``pan_runtime.errors``): one root, and fault reasons from one enum."""

import json

import pytest

from pan_runtime.errors import BudgetExceeded, FaultReason, PanError, RuntimeFault


def test_fault_reasons_are_the_strings_counted_and_serialised():
    fault = RuntimeFault("trapped", FaultReason.OOB)
    assert fault.reason == "oob" and f"{fault.reason}" == "oob"
    assert json.dumps({fault.reason: 1}) == '{"oob": 1}'
    assert RuntimeFault("boom").reason is FaultReason.CODE_ERROR
    assert BudgetExceeded("slow").reason is FaultReason.BUDGET and isinstance(BudgetExceeded("x"), PanError)


def test_a_reason_outside_the_enum_is_refused():
    assert RuntimeFault("x", "memory").reason is FaultReason.MEMORY  # a known string maps to its member
    with pytest.raises(ValueError, match="out_of_memory"):
        RuntimeFault("x", "out_of_memory")
