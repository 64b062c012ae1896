/* hopmark: forward toward the `dest` at body offset 0 (as forward does); a capsule whose body
 * byte 20 is not 0 first asks the node for its own hop limit (a call only the node answers,
 * from the capsule's header) and writes it to body byte 21, so a receiver can check that the
 * answer was about that capsule. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    if (length >= 22 && pni_seg_get_u8(capsule, 20) != 0) pni_seg_set_u8(capsule, 21, (uint32_t)pni_capsule_hop_limit());
    return PNI_FORWARD(0);
}

PNI_BATCH_ENTRY(64)
