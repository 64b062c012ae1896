# ping: out to `dest`, bounced back to the sender with both timestamps (docs/protocols.md).
# Runs under the restricted_py runtime: the public names of pan_runtime.pni_api and
# pan_runtime.protocol_headers (PingHdr, ...) are globals.
# ruff: noqa: F821 -- the runtime provides those globals, so the linter cannot see them


def count_ping(pni):
    """Add one to the big-endian u64 counter kept under b"pinged"."""
    count = 0
    try:
        value = pni.state_get(b"pinged", 8)
        if len(value) == 8:
            count = int.from_bytes(value, "big")
    except PniError:
        count = 0
    count = (count + 1) & 0xFFFFFFFFFFFFFFFF
    pni.state_put(b"pinged", count.to_bytes(8, "big"), 0)


def accept(pni, capsule, length):
    if length < PingHdr.SIZE:
        return DROP
    h = PingHdr.read(pni, capsule, 0)
    if h.phase == 1:
        return FORWARD
    if h.phase != 0:
        return DROP
    if pni.env_origin_kind() == 1:
        h.sent_ns = pni.node_now_ns()
        h.src = pni.node_address()
        h.write(pni, capsule, 0)
        return FORWARD
    me = pni.node_address()
    if me != h.dest:
        return FORWARD
    count_ping(pni)
    h.phase = 1
    h.bounced_ns = pni.node_now_ns()
    h.dest = h.src
    h.src = me
    h.write(pni, capsule, 0)
    return FORWARD
