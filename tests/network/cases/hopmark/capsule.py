# hopmark: forward; a marked capsule writes its own hop limit to body byte 21 (see capsule.c)
# ruff: noqa: F821


def accept(pni, capsule, length):
    if length >= 22 and pni.seg_get_u8(capsule, 20) != 0:
        pni.seg_set_u8(capsule, 21, pni.capsule_hop_limit())
    return FORWARD
