# portmapper: binds ports to the application links that ask for them; the node calls the
# `lookup` export to find where to deliver (docs/protocols.md).
# ruff: noqa: F821 -- the runtime provides those globals, so the linter cannot see them
# Runs under the restricted_py runtime: the public names of pan_runtime.pni_api and
# pan_runtime.protocol_headers (PingHdr, ...) are globals.
# Exports: lookup


def port_key(port):
    return b"port" + port.to_bytes(2, "big")


def accept(pni, capsule, length):
    if pni.env_origin_kind() != 1:
        return DROP
    if length < PortmapReq.SIZE:
        return DROP
    req = PortmapReq.read(pni, capsule, 0)
    if req.op == 0:
        try:
            link = pni.env_origin_link()
            pni.state_put(port_key(req.port), link.to_bytes(8, "big"), 0)
        except PniError as exc:
            return exc.status
        return DONE
    if req.op == 1:
        try:
            pni.state_delete(port_key(req.port))
        except PniError:
            pass
        return DONE
    return DROP


def lookup(pni, a0, a1):
    """The link token bound to port A0 (A1 unused), or NOT_FOUND."""
    if a0 < 0 or a0 > 0xFFFF:
        return NOT_FOUND
    try:
        token = pni.state_get(port_key(a0), 8)
    except PniError as exc:
        return exc.status
    if len(token) != 8:
        return NOT_FOUND
    return int.from_bytes(token, "big")
