# forward: carry the capsule on toward the `dest` at body offset 0 (docs/protocols.md).
# Runs under the restricted_py runtime: the public names of pan_runtime.pni_api and
# pan_runtime.protocol_headers (PingHdr, ...) are globals.
# ruff: noqa: F821 -- the runtime provides those globals, so the linter cannot see them


def accept(pni, capsule, length):
    return FORWARD
