/* faulty: from an application, forward toward the address at body offset 1; from the
 * network, body[0] == 1 traps (a fault of the code) and anything else is DONE. The `twice`
 * export answers 2 * a0 + a1.
 * Exports: twice */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    if (pni_env_origin_kind() == 1) return PNI_FORWARD(1);
    if (length > 0 && pni_seg_get_u8(capsule, 0) == 1) __builtin_trap();
    return PNI_DONE;
}

PNI_EXPORT(twice) int64_t twice(int64_t a0, int64_t a1) { return 2 * a0 + a1; }

/* capsules queued together cross into the code once (wasm) */
PNI_BATCH_ENTRY(64)
