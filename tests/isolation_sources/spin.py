# spin: accept never returns on its own; only the node's budget ends the call.


def accept(pni, capsule, length):
    n = length
    while True:
        n = (n * 1664525 + 1013904223) % 4294967296
