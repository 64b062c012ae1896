/* hoard: body = seq u32, copies u8. Keeps the whole body in soft state under "h" + seq, then
 * sends it to its own node COPIES times (the copies carry 0: they are only kept). The first
 * status a call returns is the verdict, so the node counts what the code was refused. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    uint8_t key[5];
    uint8_t me[16];
    if (length < 5 || pni_seg_read(capsule, 0, key + 1, 4) != 4) return PNI_DROP;
    key[0] = 'h';
    int32_t st = pni_state_put_seg(key, 5, capsule, 0);
    if (st < 0) return st;
    int64_t copies = pni_seg_get_u8(capsule, 4);
    if (copies <= 0) return PNI_DONE;
    if (pni_seg_set_u8(capsule, 4, 0) < 0 || pni_node_address(me) < 0) return PNI_DROP;
    for (int64_t i = 0; i < copies; i++) {
        st = pni_send_toward(me, capsule);
        if (st < 0) return st;
    }
    return PNI_DONE;
}
