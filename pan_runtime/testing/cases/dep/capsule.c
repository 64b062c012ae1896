/* dep user: calls dependency 0's `triple` (exported) and `hidden` (not exported). */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    int64_t t = pni_dep_call(0, "triple", 6, 5, 1);
    int64_t h = pni_dep_call(0, "hidden", 6, 0, 0);
    int64_t m = pni_dep_call(1, "triple", 6, 0, 0);
    return (t == 16 && h == PNI_NOT_FOUND && m == PNI_NOT_FOUND) ? PNI_DONE : PNI_DROP;
}
