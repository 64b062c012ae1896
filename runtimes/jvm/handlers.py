"""Exception handlers that could swallow the watchdog's stop: found in the bytecode, refused.

The watchdog ends a call with ``Thread.stop``: a ``ThreadDeath`` thrown wherever the code is.
Code keeps running after a stop only if a handler that catches it (``finally``, i.e. catch
any, or a catch of ``Throwable``, ``Error``, ``ThreadDeath``) does not pass it on: returns,
jumps back into a loop (``for (;;) { try { ... } finally { continue; } }`` runs forever,
every new stop swallowed like the first), or throws something else in its place, which a
caller can catch and carry on. The handlers of ``OutOfMemoryError`` and
``StackOverflowError`` (``allowlist.FORBIDDEN_CATCH``) must pass theirs on too, since the
lane contains those errors.

So the code reachable from such a handler's entry must, on every path, end in ``athrow`` of
the very exception it caught, moving forward only (no loop), returning nowhere, and doing
nothing that can throw an exception of its own (no calls, no field or array access, no
allocation, no integer division, no class constants). That is the shape javac gives a
``finally`` or ``catch`` block that only updates locals before rethrowing. It is checked
by a small abstract interpreter over the operand stack and the locals that tracks one fact:
which slots hold the caught exception. ``try``-with-resources (its handler calls
``close()``), ``synchronized`` blocks (``monitorexit``) and finally blocks that call
methods are therefore refused; the reason names the handler and the instruction.
"""

from __future__ import annotations

import heapq
import struct

from pan_jvm.classfile import DOUBLE, FLOAT, INTEGER, LONG, STRING, ClassFile, Method

__all__ = ["absorbs_stop"]

#: opcode -> (operand-stack slots popped, slots pushed) for what a handler may do: loads and
#: stores of locals, constants, stack shuffles, arithmetic that cannot throw, comparisons
_EFFECT: dict[int, tuple[int, int]] = {0x00: (0, 0), 0x01: (0, 1)}
for _op in range(0x02, 0x09):  # iconst_m1..iconst_5
    _EFFECT[_op] = (0, 1)
_EFFECT.update({0x09: (0, 2), 0x0A: (0, 2), 0x0B: (0, 1), 0x0C: (0, 1), 0x0D: (0, 1), 0x0E: (0, 2)})
_EFFECT.update({0x0F: (0, 2), 0x10: (0, 1), 0x11: (0, 1)})
_WIDTH = {"i": 1, "l": 2, "f": 1, "d": 2, "a": 1}
_KINDS = "ilfda"
for _k, _c in enumerate(_KINDS):
    _EFFECT[0x15 + _k] = (0, _WIDTH[_c])  # iload..aload
    _EFFECT[0x36 + _k] = (_WIDTH[_c], 0)  # istore..astore
    for _n in range(4):
        _EFFECT[0x1A + 4 * _k + _n] = (0, _WIDTH[_c])  # iload_0..aload_3
        _EFFECT[0x3B + 4 * _k + _n] = (_WIDTH[_c], 0)  # istore_0..astore_3
for _base in (0x60, 0x64, 0x68, 0x6C, 0x70):  # add, sub, mul, div, rem: i l f d
    _EFFECT.update({_base: (2, 1), _base + 1: (4, 2), _base + 2: (2, 1), _base + 3: (4, 2)})
del _EFFECT[0x6C], _EFFECT[0x6D], _EFFECT[0x70], _EFFECT[0x71]  # idiv ldiv irem lrem throw
_EFFECT.update({0x74: (1, 1), 0x75: (2, 2), 0x76: (1, 1), 0x77: (2, 2)})  # neg
_EFFECT.update({0x78: (2, 1), 0x79: (3, 2), 0x7A: (2, 1), 0x7B: (3, 2), 0x7C: (2, 1), 0x7D: (3, 2)})
_EFFECT.update({0x7E: (2, 1), 0x7F: (4, 2), 0x80: (2, 1), 0x81: (4, 2), 0x82: (2, 1), 0x83: (4, 2)})
_EFFECT[0x84] = (0, 0)  # iinc
_CONVERT = [(1, 2), (1, 1), (1, 2), (2, 1), (2, 1), (2, 2), (1, 1), (1, 2), (1, 2), (2, 1), (2, 2), (2, 1)]
for _k, _e in enumerate(_CONVERT):  # i2l .. d2f
    _EFFECT[0x85 + _k] = _e
_EFFECT.update({0x91: (1, 1), 0x92: (1, 1), 0x93: (1, 1)})  # i2b i2c i2s
_EFFECT.update({0x94: (4, 1), 0x95: (2, 1), 0x96: (2, 1), 0x97: (4, 1), 0x98: (4, 1)})  # compares
_BRANCH_POPS = {**dict.fromkeys(range(0x99, 0x9F), 1), **dict.fromkeys(range(0x9F, 0xA7), 2)}
_BRANCH_POPS.update({0xA7: 0, 0xC6: 1, 0xC7: 1, 0xC8: 0})
_RETURNS = set(range(0xAC, 0xB2))
_NAMES = {
    0x2E: "an array load", 0x4F: "an array store", 0xB2: "getstatic", 0xB3: "putstatic",
    0xB4: "getfield", 0xB5: "putfield", 0xB6: "a call", 0xB7: "a call", 0xB8: "a call",
    0xB9: "a call", 0xBA: "invokedynamic", 0xBB: "new", 0xBC: "newarray", 0xBD: "anewarray",
    0xBE: "arraylength", 0xC0: "checkcast", 0xC1: "instanceof", 0xC2: "monitorenter",
    0xC3: "monitorexit", 0xC5: "multianewarray", 0x6C: "idiv", 0x6D: "ldiv", 0x70: "irem",
    0x71: "lrem", 0xA8: "jsr", 0xA9: "ret", 0xC9: "jsr_w", 0x12: "ldc", 0x13: "ldc_w",
}  # fmt: skip
for _op in range(0x2E, 0x36):
    _NAMES[_op] = "an array load"
for _op in range(0x4F, 0x57):
    _NAMES[_op] = "an array store"

_CAUGHT = True  # the tag: this slot holds the exception the handler caught


class _Refused(Exception):
    def __init__(self, pc: int, what: str):
        super().__init__(what)
        self.pc = pc
        self.what = what


def _u2(code: bytes, at: int) -> int:
    return (code[at] << 8) | code[at + 1]


def _s2(code: bytes, at: int) -> int:
    return int(struct.unpack_from(">h", code, at)[0])


def _shuffle(op: int, stack: list[bool]) -> None:
    """pop/pop2/dup*/swap on the slot model (long and double are two slots, as in the JVM)."""
    if op == 0x57:
        stack.pop()
    elif op == 0x58:
        del stack[-2:]
    elif op == 0x59:
        stack.append(stack[-1])
    elif op == 0x5A:
        stack.insert(-2, stack[-1])
    elif op == 0x5B:
        stack.insert(-3, stack[-1])
    elif op == 0x5C:
        stack.extend(stack[-2:])
    elif op == 0x5D:
        stack[-3:-3] = stack[-2:]
    elif op == 0x5E:
        stack[-4:-4] = stack[-2:]
    else:  # swap
        stack[-1], stack[-2] = stack[-2], stack[-1]


def _constant_ok(cls: ClassFile, index: int, wide: bool) -> bool:
    """An ldc of a number or a string (a class or method-handle constant may fail to resolve)."""
    c = cls.pool[index] if 0 < index < len(cls.pool) else None
    if c is None:
        return False
    return c.tag in ((LONG, DOUBLE) if wide else (INTEGER, FLOAT, STRING))


def _successors(code: bytes, pc: int, op: int) -> tuple[int, list[int]]:
    """(next instruction's pc, branch targets) of a branch or switch at ``pc``."""
    if op in (0xAA, 0xAB):
        p = pc + 1 + ((4 - (pc + 1) % 4) % 4)
        default = pc + int(struct.unpack_from(">i", code, p)[0])
        if op == 0xAA:
            lo, hi = struct.unpack_from(">ii", code, p + 4)
            offs = struct.unpack_from(f">{hi - lo + 1}i", code, p + 12)
        else:
            (n,) = struct.unpack_from(">i", code, p + 4)
            offs = struct.unpack_from(f">{2 * n}i", code, p + 8)[1::2]
        return len(code), [default, *(pc + o for o in offs)]
    if op == 0xC8:
        return pc + 5, [pc + int(struct.unpack_from(">i", code, pc + 1)[0])]
    return pc + 3, [pc + _s2(code, pc + 1)]


def _step(cls: ClassFile, code: bytes, pc: int, stack: list[bool], local: dict[int, bool]) -> tuple[int, list[int]]:
    """Interpret one instruction on the tags; returns (fall-through pc or -1, jump targets)."""
    op = code[pc]
    if op == 0xBF:  # athrow
        if not stack or stack[-1] is not _CAUGHT:
            raise _Refused(pc, "throws something other than the exception it caught")
        return -1, []
    if op in _RETURNS:
        raise _Refused(pc, "returns instead of rethrowing")
    if op == 0xC4:  # wide: iload..astore, iinc with a two-byte index
        inner = code[pc + 1]
        index = _u2(code, pc + 2)
        if inner == 0x84:
            local.pop(index, None)
            return pc + 6, []
        if inner not in _EFFECT or not (0x15 <= inner <= 0x19 or 0x36 <= inner <= 0x3A):
            raise _Refused(pc, f"uses wide opcode 0x{inner:02x}")
        _local_op(inner, index, stack, local)
        return pc + 4, []
    if op in _BRANCH_POPS:
        for _ in range(_BRANCH_POPS[op]):
            stack.pop()
        nxt, targets = _successors(code, pc, op)
        return (-1 if op in (0xA7, 0xC8) else nxt), targets
    if op in (0xAA, 0xAB):
        stack.pop()
        return -1, _successors(code, pc, op)[1]
    if 0x57 <= op <= 0x5F:
        _shuffle(op, stack)
        return pc + 1, []
    if op in (0x12, 0x13, 0x14):
        index = code[pc + 1] if op == 0x12 else _u2(code, pc + 1)
        if not _constant_ok(cls, index, op == 0x14):
            raise _Refused(pc, "loads a class, method or dynamic constant (it can fail to resolve)")
        stack.extend([False] * (2 if op == 0x14 else 1))
        return pc + (2 if op == 0x12 else 3), []
    if op not in _EFFECT:
        what = _NAMES.get(op, f"opcode 0x{op:02x}")
        raise _Refused(pc, f"uses {what}, which can throw in place of the stop")
    if 0x15 <= op <= 0x19 or 0x36 <= op <= 0x3A:
        _local_op(op, code[pc + 1], stack, local)
        return pc + 2, []
    if 0x1A <= op <= 0x2D:
        kind, n = divmod(op - 0x1A, 4)
        _local_op(0x15 + kind, n, stack, local)
        return pc + 1, []
    if 0x3B <= op <= 0x4E:
        kind, n = divmod(op - 0x3B, 4)
        _local_op(0x36 + kind, n, stack, local)
        return pc + 1, []
    if op == 0x84:  # iinc
        local.pop(code[pc + 1], None)
        return pc + 3, []
    pops, pushes = _EFFECT[op]
    if pops:
        del stack[-pops:]
    stack.extend([False] * pushes)
    return pc + 1 + {0x10: 1, 0x11: 2}.get(op, 0), []


def _local_op(op: int, index: int, stack: list[bool], local: dict[int, bool]) -> None:
    """A load (0x15..0x19) or store (0x36..0x3A) of local ``index``."""
    if op <= 0x19:
        if op == 0x19:
            stack.append(local.get(index, False))
        else:
            stack.extend([False] * _WIDTH[_KINDS[op - 0x15]])
        return
    width = _WIDTH[_KINDS[op - 0x36]]
    value = stack[-1] if op == 0x3A else False
    del stack[-width:]
    if width == 2:
        local.pop(index + 1, None)
    if value:
        local[index] = True
    else:
        local.pop(index, None)


def _rethrows(cls: ClassFile, code: bytes, entry: int) -> None:
    """Follow every forward path from ``entry`` (the handler's first instruction, the caught
    exception on the stack); raise ``_Refused`` at the first instruction that breaks the rule.
    Instructions are taken in bytecode order, so each is interpreted once, on the merge of
    the states every path brings it (a slot keeps the tag only if all of them do)."""
    pending: dict[int, tuple[list[bool], dict[int, bool]]] = {entry: ([_CAUGHT], {})}
    order = [entry]
    while order:
        pc = heapq.heappop(order)
        stack, local = pending.pop(pc)
        if pc >= len(code):
            raise _Refused(pc, "runs off the end of the code")
        try:
            nxt, targets = _step(cls, code, pc, stack, local)
        except (IndexError, struct.error):  # the stack model ran dry: not javac's output
            raise _Refused(pc, "leaves the operand stack in a state the check cannot follow") from None
        for t in (*targets, nxt) if nxt >= 0 else targets:
            if t <= pc:
                raise _Refused(pc, f"jumps back to bytecode index {t}")
            if t not in pending:
                heapq.heappush(order, t)
            _merge(pending, t, stack, local, pc)


def _merge(
    pending: dict[int, tuple[list[bool], dict[int, bool]]],
    at: int,
    stack: list[bool],
    local: dict[int, bool],
    pc: int,
) -> None:
    seen = pending.get(at)
    if seen is None:
        pending[at] = (list(stack), dict(local))
        return
    other_stack, other_local = seen
    if len(other_stack) != len(stack):
        raise _Refused(pc, f"reaches bytecode index {at} with operand stacks of different heights")
    merged_stack = [a and b for a, b in zip(other_stack, stack, strict=True)]
    merged_local = {k: True for k, v in local.items() if v and other_local.get(k)}
    pending[at] = (merged_stack, merged_local)


def absorbs_stop(cls: ClassFile, m: Method, handler: int) -> str | None:
    """Why the handler at bytecode index ``handler`` of ``m`` could swallow what it caught
    (the instruction and what it does), or None when every path rethrows it."""
    code = m.code or b""
    try:
        _rethrows(cls, code, handler)
    except _Refused as r:
        return f"at bytecode index {r.pc} it {r.what}"
    return None
