/* badargs: PNI calls with bad handles, ranges, keys and destinations answer with statuses. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    uint8_t buf[4];
    uint8_t nowhere[16];
    for (int i = 0; i < 16; i++) nowhere[i] = 0xEE;
    int ok = 1;
    ok &= pni_seg_length(99) == PNI_BAD_HANDLE;
    ok &= pni_seg_read(capsule, length, buf, 4) == PNI_OUT_OF_RANGE;
    ok &= pni_seg_set_u8(capsule, 0, 300) == PNI_BAD_ARGUMENT;
    ok &= pni_state_get("missing", 7, buf, 4) == PNI_NOT_FOUND;
    ok &= pni_send_toward(nowhere, capsule) == PNI_NO_ROUTE;
    ok &= pni_seg_length(capsule) == (int64_t)length;
    return ok ? PNI_DONE : PNI_DROP;
}
