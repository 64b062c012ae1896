# softstate: body = op u8, pad[3], key u32; see capsule.c
# ruff: noqa: F821


def accept(pni, capsule, length):
    if length < 8:
        return DROP
    b = pni.seg_read(capsule, 0, 8)
    key = b"k" + b[4:8]
    op = b[0]
    if op == 0:
        pni.state_put(key, b"\x01\x02\x03\x04", 0)
        return DONE
    if op == 2:
        pni.state_put(key, b"\x01\x02\x03\x04", 1000)
        return DONE
    if op == 1:
        try:
            pni.state_get(key, 4)
        except PniError:
            return DROP
        return DONE
    return DROP
