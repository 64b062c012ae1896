/* initspin: init never returns on its own; only the node's budget ends it. */
#include "pni.h"

static volatile uint32_t spin_state;

PNI_EXPORT(init) int32_t init(void) {
    for (;;) spin_state = spin_state * 1664525u + 1013904223u;
    return 0;
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    return PNI_DONE;
}
