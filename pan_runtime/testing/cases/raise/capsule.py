# raise: accept raises


def accept(pni, capsule, length):
    raise ValueError("accept refuses this capsule")
