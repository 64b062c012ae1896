/* Support object of the pan `native` runtime: one per loaded code object.
 *
 * It answers the hot segment calls on the capsule body (handle 1) in C, from a pointer and
 * a length the runtime passes on each run, so a capsule that reads and writes its own body
 * costs no call back into Python. Every other handle, and every other call, goes to the
 * host through the `pan_host_*` functions, which the runtime binds to Python callbacks.
 * `pan_run` and `pan_run_batch` are the only ways the runtime enters `accept`: one ctypes
 * call per capsule, or one per batch. `pan_run_fast` is the entry the node's compiled UDP
 * fast path calls directly (include/pan_fast.h); during such a run the environment calls
 * below are answered from its context, in C. Built with `cc` at first use, linked by pan_native.
 */
#include "pni.h"
#include "pan_fast.h"

typedef __SIZE_TYPE__ size_t;
void *memcpy(void *dst, const void *src, size_t n);

/* fallbacks: the host's implementation of the same calls */
int64_t pan_host_seg_length(pni_handle_t seg);
int32_t pan_host_seg_read(pni_handle_t seg, uint32_t offset, void *dst, uint32_t dst_len);
int32_t pan_host_seg_write(pni_handle_t seg, uint32_t offset, const void *src, uint32_t src_len);
int64_t pan_host_seg_get_u8(pni_handle_t seg, uint32_t offset);
int64_t pan_host_seg_get_u16(pni_handle_t seg, uint32_t offset);
int64_t pan_host_seg_get_u32(pni_handle_t seg, uint32_t offset);
int32_t pan_host_seg_set_u8(pni_handle_t seg, uint32_t offset, uint32_t value);
int32_t pan_host_seg_set_u16(pni_handle_t seg, uint32_t offset, uint32_t value);
int32_t pan_host_seg_set_u32(pni_handle_t seg, uint32_t offset, uint32_t value);
int32_t pan_host_env_origin_kind(void);
int32_t pan_host_env_prev_hop(uint8_t *dst);
int32_t pan_host_node_address(uint8_t *dst);

/* the fast path's context during pan_run_fast, else 0 */
static const pan_fast_ctx *pan_fast;

/* the body of the capsule being run; pan_body == 0 outside a run or for a chained body */
static uint8_t *pan_body;
static uint64_t pan_body_len;
/* index of the capsule in the current batch (-1 outside batches); Python reads it */
volatile int32_t pan_batch_index = -1;
/* the code object's accept, written by the runtime after linking */
int32_t (*pan_accept_fn)(pni_handle_t capsule, uint32_t length);

#define IS_BODY(seg) ((seg) == 1 && pan_body != 0)
#define IN_RANGE(off, n) ((uint64_t)(off) + (uint64_t)(n) <= pan_body_len)

int64_t pni_seg_length(pni_handle_t seg) {
    if (!IS_BODY(seg)) return pan_host_seg_length(seg);
    return (int64_t)pan_body_len;
}

int32_t pni_seg_read(pni_handle_t seg, uint32_t offset, void *dst, uint32_t dst_len) {
    if (!IS_BODY(seg)) return pan_host_seg_read(seg, offset, dst, dst_len);
    if (!IN_RANGE(offset, dst_len) || (dst == 0 && dst_len != 0)) return PNI_OUT_OF_RANGE;
    memcpy(dst, pan_body + offset, dst_len);
    return (int32_t)dst_len;
}

int32_t pni_seg_write(pni_handle_t seg, uint32_t offset, const void *src, uint32_t src_len) {
    if (!IS_BODY(seg)) return pan_host_seg_write(seg, offset, src, src_len);
    if (!IN_RANGE(offset, src_len) || (src == 0 && src_len != 0)) return PNI_OUT_OF_RANGE;
    memcpy(pan_body + offset, src, src_len);
    return (int32_t)src_len;
}

int64_t pni_seg_get_u8(pni_handle_t seg, uint32_t offset) {
    if (!IS_BODY(seg)) return pan_host_seg_get_u8(seg, offset);
    if (!IN_RANGE(offset, 1)) return PNI_OUT_OF_RANGE;
    return pan_body[offset];
}

int64_t pni_seg_get_u16(pni_handle_t seg, uint32_t offset) {
    if (!IS_BODY(seg)) return pan_host_seg_get_u16(seg, offset);
    if (!IN_RANGE(offset, 2)) return PNI_OUT_OF_RANGE;
    return pni_be16_get(pan_body + offset);
}

int64_t pni_seg_get_u32(pni_handle_t seg, uint32_t offset) {
    if (!IS_BODY(seg)) return pan_host_seg_get_u32(seg, offset);
    if (!IN_RANGE(offset, 4)) return PNI_OUT_OF_RANGE;
    return pni_be32_get(pan_body + offset);
}

int32_t pni_seg_set_u8(pni_handle_t seg, uint32_t offset, uint32_t value) {
    if (!IS_BODY(seg)) return pan_host_seg_set_u8(seg, offset, value);
    if (!IN_RANGE(offset, 1)) return PNI_OUT_OF_RANGE;
    if (value > 0xffu) return PNI_BAD_ARGUMENT;
    pan_body[offset] = (uint8_t)value;
    return PNI_OK;
}

int32_t pni_seg_set_u16(pni_handle_t seg, uint32_t offset, uint32_t value) {
    if (!IS_BODY(seg)) return pan_host_seg_set_u16(seg, offset, value);
    if (!IN_RANGE(offset, 2)) return PNI_OUT_OF_RANGE;
    if (value > 0xffffu) return PNI_BAD_ARGUMENT;
    pni_be16_put(pan_body + offset, (uint16_t)value);
    return PNI_OK;
}

int32_t pni_seg_set_u32(pni_handle_t seg, uint32_t offset, uint32_t value) {
    if (!IS_BODY(seg)) return pan_host_seg_set_u32(seg, offset, value);
    if (!IN_RANGE(offset, 4)) return PNI_OUT_OF_RANGE;
    pni_be32_put(pan_body + offset, value);
    return PNI_OK;
}

int32_t pni_env_origin_kind(void) {
    if (pan_fast == 0) return pan_host_env_origin_kind();
    return pan_fast->origin_kind;
}

int32_t pni_env_prev_hop(uint8_t *dst) {
    if (pan_fast == 0) return pan_host_env_prev_hop(dst);
    if (dst == 0) return PNI_OUT_OF_RANGE;
    if (!pan_fast->has_prev_hop) return PNI_NOT_FOUND;
    memcpy(dst, pan_fast->prev_hop, PNI_ADDR_SIZE);
    return PNI_OK;
}

int32_t pni_node_address(uint8_t *dst) {
    if (pan_fast == 0) return pan_host_node_address(dst);
    if (dst == 0) return PNI_OUT_OF_RANGE;
    memcpy(dst, pan_fast->node_address, PNI_ADDR_SIZE);
    return PNI_OK;
}

/* The node's fast path: accept on one capsule body, environment calls answered from CTX. */
int32_t pan_run_fast(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    (void)state;
    pan_fast = ctx;
    pan_body = body;
    pan_body_len = (uint32_t)length;
    int32_t verdict = pan_accept_fn(1, (uint32_t)length);
    pan_body = 0;
    pan_fast = 0;
    return verdict;
}

/* Run accept on one capsule whose body is LENGTH bytes at BODY (0: ask the host).
 * LENGTH is pointer-sized only because ctypes passes two c_void_p fastest. */
int32_t pan_run(uint8_t *body, uintptr_t length) {
    pan_body = body;
    pan_body_len = (uint32_t)length;
    int32_t verdict = pan_accept_fn(1, (uint32_t)length);
    pan_body = 0;
    return verdict;
}

/* Run accept on COUNT capsules; verdicts go to OUT. */
void pan_run_batch(uint32_t count, const uint64_t *bodies, const uint32_t *lengths, int32_t *out) {
    for (uint32_t i = 0; i < count; i++) {
        pan_batch_index = (int32_t)i;
        pan_body = (uint8_t *)(uintptr_t)bodies[i];
        pan_body_len = lengths[i];
        out[i] = pan_accept_fn(1, lengths[i]);
    }
    pan_body = 0;
    pan_batch_index = -1;
}
