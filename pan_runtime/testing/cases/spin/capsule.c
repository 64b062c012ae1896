/* spin: never returns; the runtime's budget must stop it. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    volatile uint32_t n = length;
    (void)capsule;
    for (;;) n = n * 1664525u + 1013904223u;
    return (int32_t)n;
}
