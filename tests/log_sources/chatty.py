# chatty: each capsule writes 100 warning lines, each with a newline and an escape in it.
# ruff: noqa: F821

LINE = b"chatty line\n2026-01-01 00:00:00 pan.node ERROR forged\x1b[31m"


def accept(pni, capsule, length):
    for _ in range(100):
        pni.log(30, LINE)
    return DONE
