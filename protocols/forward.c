/* forward: carry the capsule on toward the `dest` at body offset 0 (docs/protocols.md).
 * One call into the code, no call back out of it, the body never touched. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    return PNI_FORWARD(0);
}

/* capsules of this protocol queued together cross into the code once (wasm) */
PNI_BATCH_ENTRY(64)
