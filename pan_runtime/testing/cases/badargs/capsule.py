# badargs: see capsule.c; the Python binding raises PniError carrying the status
# ruff: noqa: F821


def check(pni, capsule, length, which):
    if which == 0:
        pni.seg_length(99)
    elif which == 1:
        pni.seg_read(capsule, length, 4)
    elif which == 2:
        pni.seg_set_u8(capsule, 0, 300)
    elif which == 3:
        pni.state_get(b"missing", 4)
    else:
        pni.send_toward(b"\xee" * 16, capsule)


def status(pni, capsule, length, which):
    try:
        check(pni, capsule, length, which)
    except PniError as err:
        return err.status
    return OK


def accept(pni, capsule, length):
    want = [BAD_HANDLE, OUT_OF_RANGE, BAD_ARGUMENT, NOT_FOUND, NO_ROUTE]
    for which in range(5):
        if status(pni, capsule, length, which) != want[which]:
            return DROP
    if pni.seg_length(capsule) != length:
        return DROP
    return DONE
