# initloop: once a capsule armed it (body[0] == 1 puts "armed" in soft state, which the node
# keeps across the code's workers), init never returns: a restarted worker's init runs away.
# ruff: noqa: F821 -- the runtime provides DONE and PniError as globals


def init(pni):
    try:
        pni.state_get(b"armed", 1)
    except PniError:
        return 0  # not armed
    n = 1
    while True:
        n = (n * 1664525 + 1013904223) % 4294967296


def accept(pni, capsule, length):
    if length and pni.seg_get_u8(capsule, 0) == 1:
        pni.state_put(b"armed", b"\x01", 0)
    return DONE
