/* softstate: body = op u8, pad[3], key u32. op 0 puts key, op 2 puts it with a 1 s TTL,
 * op 1 answers DONE if key is stored and DROP if it is not. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    uint8_t b[8];
    uint8_t key[5];
    uint8_t value[4] = {1, 2, 3, 4};
    if (length < 8 || pni_seg_read(capsule, 0, b, 8) != 8) return PNI_DROP;
    key[0] = 'k';
    key[1] = b[4]; key[2] = b[5]; key[3] = b[6]; key[4] = b[7];
    if (b[0] == 0) return pni_state_put(key, 5, value, 4, 0) == PNI_OK ? PNI_DONE : PNI_DROP;
    if (b[0] == 2) return pni_state_put(key, 5, value, 4, 1000) == PNI_OK ? PNI_DONE : PNI_DROP;
    if (b[0] == 1) return pni_state_get(key, 5, value, 4) >= 0 ? PNI_DONE : PNI_DROP;
    return PNI_DROP;
}
