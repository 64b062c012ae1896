/* flood: a sender streams data capsules to `dest`, which counts them per flow and reports
 * back every `report_every` capsules (docs/protocols.md). */
#include "pni.h"
#include "headers.h"

/* The per-flow record kept in soft state under "flow" + u32 flow, big-endian:
 * count u32 @0, bytes u64 @4, start_ns u64 @12, report_every u32 @20, pad u32 @24. */
#define RECORD_SIZE 28u

static void flow_key(uint8_t key[8], uint32_t flow) {
    key[0] = 'f';
    key[1] = 'l';
    key[2] = 'o';
    key[3] = 'w';
    pni_be32_put(key + 4, flow);
}

static void record_start(uint8_t rec[RECORD_SIZE], uint32_t report_every) {
    for (uint32_t i = 0; i < RECORD_SIZE; i++) rec[i] = 0;
    pni_be64_put(rec + 12, (uint64_t)pni_node_now_ns());
    pni_be32_put(rec + 20, report_every);
}

/* Send a report of REC for the flow of H back to H's sender. */
static void send_report(const pan_flood_hdr *h, const uint8_t rec[RECORD_SIZE], const uint8_t self[16]) {
    pan_flood_hdr r;
    int64_t seg = pni_seg_alloc(PAN_FLOOD_HDR_SIZE);
    if (seg < 0) return;
    pni_addr_copy(r.dest, h->src);
    r.port = h->port;
    r.kind = 2;
    r.flags = 0;
    pni_addr_copy(r.src, self);
    r.flow = h->flow;
    r.seq = h->seq;
    r.count = pni_be32_get(rec);
    r.report_every = pni_be32_get(rec + 20);
    r.bytes = pni_be64_get(rec + 4);
    r.elapsed_ns = (uint64_t)pni_node_now_ns() - pni_be64_get(rec + 12);
    if (pan_flood_hdr_write((pni_handle_t)seg, 0, &r) == PNI_OK) {
        pni_send_toward(h->src, (pni_handle_t)seg);
    }
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    pan_flood_hdr h;
    uint8_t self[PNI_ADDR_SIZE];
    uint8_t key[8];
    uint8_t rec[RECORD_SIZE];
    if (length < PAN_FLOOD_HDR_SIZE || pan_flood_hdr_read(capsule, 0, &h) != PNI_OK) {
        return PNI_DROP;
    }
    pni_node_address(self);
    if (pni_env_origin_kind() == 1) {
        pni_addr_copy(h.src, self);
        if (pan_flood_hdr_write(capsule, 0, &h) != PNI_OK) return PNI_DROP;
    }
    if (!pni_addr_eq(self, h.dest)) {
        return PNI_FORWARD(0);
    }
    flow_key(key, h.flow);
    if (h.kind == 0) {
        record_start(rec, h.report_every);
        pni_state_put(key, sizeof key, rec, RECORD_SIZE, 0);
        return PNI_DONE;
    }
    if (h.kind == 2) {
        return PNI_FORWARD(0);
    }
    if (h.kind != 1) {
        return PNI_DROP;
    }
    if (pni_state_get(key, sizeof key, rec, RECORD_SIZE) != (int32_t)RECORD_SIZE) {
        record_start(rec, h.report_every);
    }
    uint32_t count = pni_be32_get(rec) + 1;
    uint32_t every = pni_be32_get(rec + 20);
    pni_be32_put(rec, count);
    pni_be64_put(rec + 4, pni_be64_get(rec + 4) + length);
    if (every != 0 && count % every == 0) {
        send_report(&h, rec, self);
    }
    pni_state_put(key, sizeof key, rec, RECORD_SIZE, 0);
    return PNI_DONE;
}

/* capsules of this protocol queued together cross into the code once (wasm) */
PNI_BATCH_ENTRY(64)
