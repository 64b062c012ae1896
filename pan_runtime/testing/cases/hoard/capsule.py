# hoard: body = seq u32, copies u8; see capsule.c. The Python binding raises PniError
# carrying the status, which becomes the verdict.
# ruff: noqa: F821


def accept(pni, capsule, length):
    if length < 5:
        return DROP
    key = b"h" + pni.seg_read(capsule, 0, 4)
    try:
        pni.state_put_seg(key, capsule, 0)
        copies = pni.seg_get_u8(capsule, 4)
        if copies == 0:
            return DONE
        pni.seg_set_u8(capsule, 4, 0)
        me = pni.node_address()
        while copies > 0:
            pni.send_toward(me, capsule)
            copies = copies - 1
    except PniError as err:
        return err.status
    return DONE
