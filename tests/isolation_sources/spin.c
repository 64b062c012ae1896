/* spin: accept never returns on its own; only the node's budget ends the call. */
#include "pni.h"

static volatile uint32_t spin_state;

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    spin_state = length;
    for (;;) spin_state = spin_state * 1664525u + 1013904223u;
    return 0;
}
