/* ping: out to `dest`, bounced back to the sender with both timestamps (docs/protocols.md). */
#include "pni.h"
#include "headers.h"

/* Add one to the big-endian u64 counter kept under "pinged". */
static void count_ping(void) {
    const uint8_t key[6] = {'p', 'i', 'n', 'g', 'e', 'd'};
    uint8_t value[8];
    uint64_t count = 0;
    if (pni_state_get(key, sizeof key, value, sizeof value) == (int32_t)sizeof value) {
        count = pni_be64_get(value);
    }
    pni_be64_put(value, count + 1);
    pni_state_put(key, sizeof key, value, sizeof value, 0);
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    pan_ping_hdr h;
    uint8_t self[PNI_ADDR_SIZE];
    if (length < PAN_PING_HDR_SIZE || pan_ping_hdr_read(capsule, 0, &h) != PNI_OK) {
        return PNI_DROP;
    }
    if (h.phase == 1) {
        return PNI_FORWARD(0);
    }
    if (h.phase != 0) {
        return PNI_DROP;
    }
    if (pni_env_origin_kind() == 1) {
        /* the sender: stamp the departure time and our address */
        h.sent_ns = (uint64_t)pni_node_now_ns();
        pni_node_address(h.src);
        return pan_ping_hdr_write(capsule, 0, &h) == PNI_OK ? PNI_FORWARD(0) : PNI_DROP;
    }
    pni_node_address(self);
    if (!pni_addr_eq(self, h.dest)) {
        return PNI_FORWARD(0);
    }
    /* the receiver: count, stamp and send back */
    count_ping();
    h.phase = 1;
    h.bounced_ns = (uint64_t)pni_node_now_ns();
    pni_addr_copy(h.dest, h.src);
    pni_addr_copy(h.src, self);
    return pan_ping_hdr_write(capsule, 0, &h) == PNI_OK ? PNI_FORWARD(0) : PNI_DROP;
}

/* capsules of this protocol queued together cross into the code once (wasm) */
PNI_BATCH_ENTRY(64)
