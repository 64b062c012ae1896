/* bigstate: soft-state values as large as the body asks. Body: op (u8), size (u32), reads (u8).
 * op 0: put a value of SIZE bytes under "k": DONE when it was stored, DROP when the node said
 * it cannot take it (NO_SPACE). op 1: read "k" READS times: DONE when every read returned the whole
 * value, DROP when one was refused for want of room (NO_SPACE). Anything else: a bad verdict. */
#include "pni.h"

#define MAX_VALUE (4u << 20)
static uint8_t value[MAX_VALUE];

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    if (length < 6) return -100;
    uint32_t op = (uint32_t)pni_seg_get_u8(capsule, 0);
    uint32_t size = (uint32_t)pni_seg_get_u32(capsule, 1);
    uint32_t reads = (uint32_t)pni_seg_get_u8(capsule, 5);
    if (size > MAX_VALUE) return -100;
    if (op == 0) {
        int32_t rc = pni_state_put("k", 1, value, size, 0);
        if (rc == PNI_NO_SPACE) return PNI_DROP;
        return rc < 0 ? -100 : PNI_DONE;
    }
    int32_t refused = 0;
    for (uint32_t i = 0; i < reads; i++) {
        int32_t rc = pni_state_get("k", 1, value, MAX_VALUE);
        if (rc == PNI_NO_SPACE) refused = 1;
        else if (rc < 0) return -100;
    }
    return refused ? PNI_DROP : PNI_DONE;
}
