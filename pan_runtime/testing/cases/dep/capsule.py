# dep user: see capsule.c
# ruff: noqa: F821


def call(pni, dep, name, a0, a1):
    try:
        return pni.dep_call(dep, name, a0, a1)
    except PniError as err:
        return err.status


def accept(pni, capsule, length):
    t = call(pni, 0, b"triple", 5, 1)
    h = call(pni, 0, b"hidden", 0, 0)
    m = call(pni, 1, b"triple", 0, 0)
    if t == 16 and h == NOT_FOUND and m == NOT_FOUND:
        return DONE
    return DROP
