# flood: a sender streams data capsules to `dest`, which counts them per flow and reports
# back every `report_every` capsules (docs/protocols.md).
# ruff: noqa: F821 -- the runtime provides those globals, so the linter cannot see them
# Runs under the restricted_py runtime: the public names of pan_runtime.pni_api and
# pan_runtime.protocol_headers (PingHdr, ...) are globals.
#
# The per-flow record under b"flow" + u32 flow, big-endian:
# count u32 @0, bytes u64 @4, start_ns u64 @12, report_every u32 @20, pad u32 @24.

RECORD_SIZE = 28


def record_start(pni, report_every):
    start = pni.node_now_ns()
    return b"\x00" * 12 + start.to_bytes(8, "big") + report_every.to_bytes(4, "big") + b"\x00" * 4


def send_report(pni, h, me, count, nbytes, start, every):
    seg = pni.seg_alloc(FloodHdr.SIZE)
    r = FloodHdr(
        dest=h.src, port=h.port, kind=2, flags=0, src=me, flow=h.flow, seq=h.seq, count=count,
        report_every=every, bytes=nbytes, elapsed_ns=(pni.node_now_ns() - start) & 0xFFFFFFFFFFFFFFFF,
    )
    r.write(pni, seg, 0)
    pni.send_toward(h.src, seg)


def accept(pni, capsule, length):
    if length < FloodHdr.SIZE:
        return DROP
    h = FloodHdr.read(pni, capsule, 0)
    me = pni.node_address()
    if pni.env_origin_kind() == 1:
        h.src = me
        h.write(pni, capsule, 0)
    if me != h.dest:
        return FORWARD
    key = b"flow" + h.flow.to_bytes(4, "big")
    if h.kind == 0:
        pni.state_put(key, record_start(pni, h.report_every), 0)
        return DONE
    if h.kind == 2:
        return FORWARD
    if h.kind != 1:
        return DROP
    try:
        rec = pni.state_get(key, RECORD_SIZE)
    except PniError:
        rec = b""
    if len(rec) != RECORD_SIZE:
        rec = record_start(pni, h.report_every)
    count = (int.from_bytes(rec[0:4], "big") + 1) & 0xFFFFFFFF
    nbytes = (int.from_bytes(rec[4:12], "big") + length) & 0xFFFFFFFFFFFFFFFF
    start = int.from_bytes(rec[12:20], "big")
    every = int.from_bytes(rec[20:24], "big")
    if every != 0 and count % every == 0:
        try:
            send_report(pni, h, me, count, nbytes, start, every)
        except PniError:
            pass
    rec = count.to_bytes(4, "big") + nbytes.to_bytes(8, "big") + rec[12:]
    pni.state_put(key, rec, 0)
    return DONE
