/* A dependency: exports one data object and one function; keeps a private static. */
#include "pni.h"

int64_t shared_counter = 1000;
static int64_t calls;

int64_t dep_add(int64_t a0, int64_t a1) {
    calls++;
    return a0 + a1 + calls * 0;
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule; (void)length;
    return PNI_DROP;
}
