/* raise: the C analogue of an exception is a trap. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    if (length < 1000000) __builtin_trap();
    return PNI_DONE;
}
