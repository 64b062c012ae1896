# stall: runs for 100 ms by the node's clock, past the budget the tests give (see capsule.c)
# ruff: noqa: F821


def accept(pni, capsule, length):
    end = pni.node_now_ns() + 100_000_000
    while pni.node_now_ns() < end:
        pass
    return DROP
