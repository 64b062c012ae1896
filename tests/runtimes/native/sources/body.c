/* Reads and writes its body through the hot segment calls, allocates a second segment
 * through the host, and reports what it saw in the verdict. */
#include "pni.h"

int32_t init_calls;

PNI_EXPORT(init) int32_t init(void) { return ++init_calls; }
PNI_EXPORT(finalize) int32_t finalize(void) { return 40 + init_calls; }

int64_t counter(int64_t a0, int64_t a1) { (void)a0; (void)a1; return init_calls; }

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    uint8_t buf[4];
    int64_t op = pni_seg_get_u8(capsule, 0);
    if (op < 0) return (int32_t)op;
    switch (op) {
    case 0: /* increment the u32 at offset 4 in place, return the body length */
        pni_seg_set_u32(capsule, 4, (uint32_t)pni_seg_get_u32(capsule, 4) + 1);
        return PNI_DELIVER((uint32_t)pni_seg_length(capsule));
    case 1: { /* copy 4 bytes at 4 into a new segment and back to offset 8 */
        int64_t seg = pni_seg_alloc(4);
        if (seg < 0) return (int32_t)seg;
        if (pni_seg_read(capsule, 4, buf, 4) != 4) return -100;
        if (pni_seg_write((pni_handle_t)seg, 0, buf, 4) != 4) return -101;
        buf[0] = buf[1] = buf[2] = buf[3] = 0;
        if (pni_seg_read((pni_handle_t)seg, 0, buf, 4) != 4) return -102;
        if (pni_seg_write(capsule, 8, buf, 4) != 4) return -103;
        if (pni_seg_get_u16((pni_handle_t)seg, 2) != pni_seg_get_u16(capsule, 6)) return -104;
        if (pni_seg_release((pni_handle_t)seg) != PNI_OK) return -105;
        return PNI_DONE;
    }
    case 2: /* statuses: out of range, bad argument, bad handle */
        return PNI_DELIVER((uint32_t)(-pni_seg_get_u32(capsule, length - 2)) |
                           ((uint32_t)(-pni_seg_set_u8(capsule, 1, 300)) << 4) |
                           ((uint32_t)(-pni_seg_length(77)) << 8));
    case 3: /* which environment is this? */
        return PNI_DELIVER((uint32_t)pni_env_origin_kind() * 1000 + pni_seg_get_u8(capsule, 1));
    case 4: /* a host call that the test makes raise */
        return PNI_DELIVER((uint32_t)pni_node_now_ns());
    default:
        return PNI_DROP;
    }
}
