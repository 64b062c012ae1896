/* initloop: once a capsule armed it (body[0] == 1 puts "armed" in soft state, which the node
 * keeps across the code's workers), init runs away: a restarted worker's init spins, looking
 * at its soft state every few million rounds, and returns only once "armed" is gone. */
#include "pni.h"

static volatile uint32_t spin_state;
static const char armed[] = "armed";

PNI_EXPORT(init) int32_t init(void) {
    uint8_t v = 0;
    while (pni_state_get(armed, sizeof armed - 1, &v, 1) == 1) {
        for (uint32_t i = 0; i < (1u << 22); i++) spin_state = spin_state * 1664525u + 1013904223u;
    }
    return 0;
}

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    static const uint8_t one = 1;
    if (length && pni_seg_get_u8(capsule, 0) == 1) pni_state_put(armed, sizeof armed - 1, &one, 1, 0);
    return PNI_DONE;
}
