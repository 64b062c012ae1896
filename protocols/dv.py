# dv: distance-vector routing as mobile code (docs/protocols.md, "dv").
# Runs under the restricted_py runtime: the public names of pan_runtime.pni_api and
# pan_runtime.protocol_headers (PingHdr, ...) are globals. protocols/dv.c (native, wasm) and
# protocols/java/Dv.java (jvm) are the same protocol; keep the three in step.
# ruff: noqa: F821 -- the runtime provides those globals, so the linter cannot see them
#
# Body, big-endian: type u8 @0 (0 = tick: an application tells this node a period has
# passed, 1 = advertisement from a neighbour), reserved u8 @1, entry count u16 @2, then
# entries of 18 bytes: destination address (16), metric u16. Metric 16 means unreachable.
#
# Soft state: b"tick" is the u32 count of ticks this node has seen; b"table" holds rows of
# 40 bytes: destination (16), next hop (16), metric u16, reserved u16, seen u32 (the tick at
# which the next hop last confirmed the route, or at which it was withdrawn).
#
# The PNI has no timer, so periods come from outside: whoever runs the protocol (pan lab)
# sends every node a tick each period. On a tick a node withdraws (metric 16) each route its
# next hop has not re-advertised for EXPIRE ticks, forgets each route withdrawn FLUSH ticks
# ago, and advertises its table to every neighbour: itself at metric 0, and the routes it
# learned through that neighbour poisoned (split horizon with poisoned reverse). An
# advertisement that changes the table is passed on at once (a triggered update). A link
# that goes down so loses its routes within EXPIRE + 1 periods; one that comes back is
# learned again on the next advertisement across it.

INF = 16
ENTRY = 18
ROW = 40
MAX_ROWS = 256
EXPIRE = 3
FLUSH = 3
MTU_FALLBACK = 1200


def load_tick(pni):
    try:
        raw = pni.state_get(b"tick", 4)
    except PniError:
        return 0
    return int.from_bytes(raw, "big") if len(raw) == 4 else 0


def load_table(pni):
    try:
        raw = pni.state_get(b"table", ROW * MAX_ROWS)
    except PniError:
        return {}
    table = {}
    for i in range(min(len(raw) // ROW, MAX_ROWS)):
        o = i * ROW
        metric = int.from_bytes(raw[o + 32 : o + 34], "big")
        seen = int.from_bytes(raw[o + 36 : o + 40], "big")
        table[raw[o : o + 16]] = [raw[o + 16 : o + 32], metric, seen]
    return table


def save_table(pni, table):
    parts = []
    for dest in table:
        nh, metric, seen = table[dest]
        parts.append(dest + nh + metric.to_bytes(2, "big") + b"\x00\x00" + seen.to_bytes(4, "big"))
    try:
        pni.state_put(b"table", b"".join(parts), 0)
    except PniError:
        pass  # soft state is full: the table is learned again from the next advertisements


def install(pni, dest, nh, metric):
    try:
        pni.route_set(dest, nh, metric)
    except PniError:
        pass  # a static route wins, or the node's table is full


def send(pni, nb, entries):
    body = b"\x01\x00" + len(entries).to_bytes(2, "big") + b"".join(entries)
    try:
        seg = pni.seg_alloc(len(body))
    except PniError:
        return  # no room this time: the next period advertises again
    pni.seg_write(seg, 0, body)
    try:
        pni.send_neighbor(nb, seg)
    except PniError:
        pass  # the neighbour is gone or the budget is spent: the next period advertises again
    pni.seg_release(seg)


def advertise(pni, me, table):
    for i in range(pni.neighbor_count()):
        try:
            nb = pni.neighbor_address(i)
        except PniError:
            continue
        try:
            per = (pni.node_mtu(nb) - 4) // ENTRY
        except PniError:
            per = (MTU_FALLBACK - 4) // ENTRY
        per = max(1, per)
        entries = [me + b"\x00\x00"]
        for dest in table:
            nh, metric, seen = table[dest]
            if nh == nb:
                metric = INF
            entries.append(dest + metric.to_bytes(2, "big"))
            if len(entries) >= per:
                send(pni, nb, entries)
                entries = []
        if entries:
            send(pni, nb, entries)


def expire(pni, tick, table):
    for dest in list(table):
        nh, metric, seen = table[dest]
        if metric < INF and tick - seen > EXPIRE:
            table[dest] = [nh, INF, tick]
            install(pni, dest, nh, INF)
        elif metric >= INF and tick - seen > FLUSH:
            del table[dest]


def merge(pni, me, prev, body, n, tick, table):
    changed = False
    for i in range(n):
        o = 4 + i * ENTRY
        dest = body[o : o + 16]
        if dest == me:
            continue
        new = min(int.from_bytes(body[o + 16 : o + 18], "big") + 1, INF)
        cur = table.get(dest)
        if cur is None:
            if new >= INF or len(table) >= MAX_ROWS:
                continue
        elif cur[0] == prev:
            if new >= INF:
                if cur[1] >= INF:
                    continue  # already withdrawn: let it age out
            elif cur[1] == new:
                cur[2] = tick  # confirmed
                continue
        elif new >= cur[1]:
            continue
        table[dest] = [prev, new, tick]
        changed = True
        install(pni, dest, prev, new)
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
        tick = (load_tick(pni) + 1) & 0xFFFFFFFF
        try:
            pni.state_put(b"tick", tick.to_bytes(4, "big"), 0)
        except PniError:
            return DROP
        table = load_table(pni)
        expire(pni, tick, table)
        save_table(pni, table)
        advertise(pni, me, table)
        return DONE
    if kind != 1 or pni.env_origin_kind() != 0 or length < 4 + n * ENTRY:
        return DROP
    body = pni.seg_read(capsule, 0, 4 + n * ENTRY)
    prev = pni.env_prev_hop()
    tick = load_tick(pni)
    table = load_table(pni)
    changed = merge(pni, me, prev, body, n, tick, table)
    save_table(pni, table)
    if changed:
        advertise(pni, me, table)
    return DONE
