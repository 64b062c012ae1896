# dv: distance-vector routing as mobile code (docs/network.md, "Routing").
# Runs under the restricted_py runtime: the public names of pan_runtime.pni_api and
# pan_runtime.protocol_headers (PingHdr, ...) are globals.
# ruff: noqa: F821 -- the runtime provides those globals, so the linter cannot see them
#
# Body, big-endian: type u8 @0 (0 = start: an application asks this node to advertise,
# 1 = advertisement from a neighbour), reserved u8 @1, entry count u16 @2, then entries of
# 18 bytes: destination address (16), metric u16. Metric 16 means unreachable.
#
# Soft state b"table": entries of 34 bytes: destination (16), next hop (16), metric u16.
# A node advertises its table (itself at metric 0) to every neighbour, with the routes it
# learned through that neighbour poisoned (split horizon with poisoned reverse), and again
# whenever an advertisement changed its table; each capsule of this code reaching a node
# that lacks the code makes that node fetch it, so the protocol spreads by itself.

INF = 16
ENTRY = 18
ROW = 34
MAX_ENTRIES = 400


def load_table(pni):
    try:
        raw = pni.state_get(b"table", ROW * MAX_ENTRIES)
    except PniError:
        return {}
    table = {}
    for i in range(len(raw) // ROW):
        o = i * ROW
        table[raw[o : o + 16]] = (raw[o + 16 : o + 32], int.from_bytes(raw[o + 32 : o + 34], "big"))
    return table


def save_table(pni, table):
    parts = []
    for dest in table:
        nh, metric = table[dest]
        parts.append(dest + nh + metric.to_bytes(2, "big"))
    pni.state_put(b"table", b"".join(parts), 0)


def advertise(pni, me, table):
    for i in range(pni.neighbor_count()):
        nb = pni.neighbor_address(i)
        entries = [me + b"\x00\x00"]
        for dest in table:
            nh, metric = table[dest]
            if nh == nb:
                metric = INF
            entries.append(dest + metric.to_bytes(2, "big"))
            if len(entries) >= MAX_ENTRIES:
                break
        body = b"\x01\x00" + len(entries).to_bytes(2, "big") + b"".join(entries)
        seg = pni.seg_alloc(len(body))
        pni.seg_write(seg, 0, body)
        try:
            pni.send_neighbor(nb, seg)
        except PniError:
            pass


def merge(pni, me, prev, body, n, table):
    changed = False
    for i in range(n):
        o = 4 + i * ENTRY
        dest = body[o : o + 16]
        if dest == me:
            continue
        new = min(int.from_bytes(body[o + 16 : o + 18], "big") + 1, INF)
        cur = table.get(dest)
        if cur is None:
            if new >= INF:
                continue
        elif cur[0] == prev:
            if cur[1] == new:
                continue
        elif new >= cur[1]:
            continue
        table[dest] = (prev, new)
        changed = True
        if new < INF:
            try:
                pni.route_set(dest, prev, new)
            except PniError:
                pass  # a static route wins, or the table is full
    return changed


def accept(pni, capsule, length):
    if length < 4:
        return DROP
    head = pni.seg_read(capsule, 0, 4)
    kind = head[0]
    n = int.from_bytes(head[2:4], "big")
    me = pni.node_address()
    if kind == 0:
        if pni.env_origin_kind() != 1:
            return DROP
        advertise(pni, me, load_table(pni))
        return DONE
    if kind != 1 or pni.env_origin_kind() != 0 or length < 4 + n * ENTRY or n > MAX_ENTRIES:
        return DROP
    body = pni.seg_read(capsule, 0, 4 + n * ENTRY)
    prev = pni.env_prev_hop()
    table = load_table(pni)
    if merge(pni, me, prev, body, n, table):
        save_table(pni, table)
        advertise(pni, me, table)
    return DONE
