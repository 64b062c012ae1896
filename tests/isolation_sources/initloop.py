# initloop: once a capsule armed it (body[0] == 1 puts "armed" in soft state, which the node
# keeps across the code's workers), init runs away: a restarted worker's init spins, looking at
# its soft state every so many rounds, and returns only once "armed" is gone.
# ruff: noqa: F821 -- the runtime provides DONE and PniError as globals


def armed(pni):
    try:
        pni.state_get(b"armed", 1)
    except PniError:
        return False
    return True


def init(pni):
    n = 1
    while armed(pni):
        for _ in range(16384):
            n = (n * 1664525 + 1013904223) % 4294967296
    return 0


def accept(pni, capsule, length):
    if length and pni.seg_get_u8(capsule, 0) == 1:
        pni.state_put(b"armed", b"\x01", 0)
    return DONE
