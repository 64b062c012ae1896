/* stall: runs for 100 ms by the node's clock, past the budget the tests give; a sandboxed
 * runtime stops it there, native code (which nothing can stop) returns at the end. */
#include "pni.h"

PNI_EXPORT(accept) int32_t accept(pni_handle_t capsule, uint32_t length) {
    (void)capsule;
    (void)length;
    int64_t end = pni_node_now_ns() + 100000000;
    while (pni_node_now_ns() < end) {
    }
    return PNI_DROP;
}
