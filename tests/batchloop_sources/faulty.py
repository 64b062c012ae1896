# faulty: from an application, forward toward the address at body offset 1; from the
# network, body[0] == 1 raises (a fault of the code) and anything else is DONE. The `twice`
# export answers 2 * a0 + a1.
# Exports: twice
# ruff: noqa: F821


def accept(pni, capsule, length):
    if pni.env_origin_kind() == 1:
        return forward(1)
    if length > 0 and pni.seg_get_u8(capsule, 0) == 1:
        raise ValueError("faulty refuses this capsule")
    return DONE


def twice(pni, a0, a1):
    return 2 * a0 + a1
