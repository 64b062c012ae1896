# initspin: init never returns on its own; only the node's budget ends it.
# ruff: noqa: F821 -- the runtime provides DONE as a global


def init(pni):
    n = 1
    while True:
        n = (n * 1664525 + 1013904223) % 4294967296


def accept(pni, capsule, length):
    return DONE
