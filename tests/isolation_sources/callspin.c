/* callspin: accept calls the node for ever; only the node's budget ends the call. */
#include "pni.h"

static volatile int32_t seen;

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    for (;;) seen += pni_neighbor_count();
    return 0;
}
