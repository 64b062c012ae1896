/* dep library: exports triple(a0, a1) = 3*a0 + a1; `hidden` is defined but not in the manifest. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    return PNI_DROP;
}

PNI_EXPORT(triple) int64_t triple(int64_t a0, int64_t a1) { return 3 * a0 + a1; }

PNI_EXPORT(hidden) int64_t hidden(int64_t a0, int64_t a1) {
    (void)a0;
    (void)a1;
    return 99;
}
