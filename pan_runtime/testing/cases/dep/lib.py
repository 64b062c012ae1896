# dep library: exports triple; hidden is defined but not listed in the manifest
# ruff: noqa: F821


def accept(pni, capsule, length):
    return DROP


def triple(pni, a0, a1):
    return 3 * a0 + a1


def hidden(pni, a0, a1):
    return 99
