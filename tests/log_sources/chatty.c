/* chatty: each capsule writes 100 warning lines, each with a newline and an escape in it. */
#include "pni.h"

static const char line[] = "chatty line\n2026-01-01 00:00:00 pan.node ERROR forged\x1b[31m";

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    for (int i = 0; i < 100; i++) pni_log(30, line, sizeof line - 1);
    return PNI_DONE;
}
