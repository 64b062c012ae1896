/* Support object of the pan `native` runtime: one per loaded code object.
 *
 * It answers the PNI's hot calls (pni_hot.h, generated from the spec) in C: segment calls on
 * the capsule body (handle 1) from a pointer and a length the runtime passes on each run, so
 * a capsule that reads and writes its own body costs no call back into Python. Every other handle, and every other call, goes to the
 * host through the `pan_host_*` functions, which the runtime binds to Python callbacks.
 * `pan_run` and `pan_run_batch` are the only ways the runtime enters `accept`: one ctypes
 * call per capsule, or one per batch. `pan_run_fast` is the entry the node's compiled UDP
 * fast path calls directly (include/pan_fast.h); during such a run the environment calls
 * below are answered from its context, in C. Built with `cc` at first use, linked by pan_native.
 */
#include "pni_hot.h"

typedef __SIZE_TYPE__ size_t;
void *memcpy(void *dst, const void *src, size_t n); /* what __builtin_memcpy may call */

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

/* what the hot calls are answered from: the body of the capsule being run (data == 0 outside
 * a run or for a chained body) and, during pan_run_fast, the fast path's context */
static pni_hot_body pan_body;
/* index of the capsule in the current batch (-1 outside batches); Python reads it */
volatile int32_t pan_batch_index = -1;
/* the code object's accept, written by the runtime after linking */
int32_t (*pan_accept_fn)(pni_handle_t capsule, uint32_t length);

#define ON_BODY(seg) pni_hot_on_body(&pan_body, (seg))
#define IN_CONTEXT pni_hot_in_context(&pan_body)

/* the hot calls (pni_hot.h): from the body or context, else from the host */
int64_t pni_seg_length(pni_handle_t seg) {
    return ON_BODY(seg) ? pni_hot_seg_length(&pan_body) : pan_host_seg_length(seg);
}

int32_t pni_seg_read(pni_handle_t seg, uint32_t offset, void *dst, uint32_t dst_len) {
    return ON_BODY(seg) ? pni_hot_seg_read(&pan_body, offset, dst, dst_len) : pan_host_seg_read(seg, offset, dst, dst_len);
}

int32_t pni_seg_write(pni_handle_t seg, uint32_t offset, const void *src, uint32_t src_len) {
    return ON_BODY(seg) ? pni_hot_seg_write(&pan_body, offset, src, src_len) : pan_host_seg_write(seg, offset, src, src_len);
}

int64_t pni_seg_get_u8(pni_handle_t seg, uint32_t offset) {
    return ON_BODY(seg) ? pni_hot_seg_get_u8(&pan_body, offset) : pan_host_seg_get_u8(seg, offset);
}

int64_t pni_seg_get_u16(pni_handle_t seg, uint32_t offset) {
    return ON_BODY(seg) ? pni_hot_seg_get_u16(&pan_body, offset) : pan_host_seg_get_u16(seg, offset);
}

int64_t pni_seg_get_u32(pni_handle_t seg, uint32_t offset) {
    return ON_BODY(seg) ? pni_hot_seg_get_u32(&pan_body, offset) : pan_host_seg_get_u32(seg, offset);
}

int32_t pni_seg_set_u8(pni_handle_t seg, uint32_t offset, uint32_t value) {
    return ON_BODY(seg) ? pni_hot_seg_set_u8(&pan_body, offset, value) : pan_host_seg_set_u8(seg, offset, value);
}

int32_t pni_seg_set_u16(pni_handle_t seg, uint32_t offset, uint32_t value) {
    return ON_BODY(seg) ? pni_hot_seg_set_u16(&pan_body, offset, value) : pan_host_seg_set_u16(seg, offset, value);
}

int32_t pni_seg_set_u32(pni_handle_t seg, uint32_t offset, uint32_t value) {
    return ON_BODY(seg) ? pni_hot_seg_set_u32(&pan_body, offset, value) : pan_host_seg_set_u32(seg, offset, value);
}

int32_t pni_env_origin_kind(void) {
    return IN_CONTEXT ? pni_hot_env_origin_kind(&pan_body) : pan_host_env_origin_kind();
}

int32_t pni_env_prev_hop(uint8_t *dst) {
    return IN_CONTEXT ? pni_hot_env_prev_hop(&pan_body, dst) : pan_host_env_prev_hop(dst);
}

int32_t pni_node_address(uint8_t *dst) {
    return IN_CONTEXT ? pni_hot_node_address(&pan_body, dst) : pan_host_node_address(dst);
}

/* The node's fast path: accept on one capsule body, environment calls answered from CTX. */
int32_t pan_run_fast(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    (void)state;
    pan_body.ctx = ctx;
    pan_body.data = body;
    pan_body.length = (uint32_t)length;
    int32_t verdict = pan_accept_fn(1, (uint32_t)length);
    pan_body.data = 0;
    pan_body.ctx = 0;
    return verdict;
}

/* The node's fast path, a batch at once (include/pan_fast.h): stops after the first capsule
 * whose verdict is not a forward, or once the fast path set `stop`. */
uint32_t pan_run_fast_batch(void *state, pan_fast_batch *b, const pan_fast_ctx *ctx) {
    (void)state;
    uint32_t i = 0;
    pan_body.ctx = ctx;
    while (i < b->count) {
        b->index = i;
        pan_body.data = b->bodies[i];
        pan_body.length = (uint32_t)b->lengths[i];
        int32_t verdict = pan_accept_fn(1, (uint32_t)b->lengths[i]);
        b->verdicts[i++] = verdict;
        if (PNI_VERDICT_KIND(verdict) != PNI_KIND_FORWARD || verdict < 0 || b->stop) break;
    }
    pan_body.data = 0;
    pan_body.ctx = 0;
    return i;
}

/* Run accept on one capsule whose body is LENGTH bytes at BODY (0: ask the host).
 * LENGTH is pointer-sized only because ctypes passes two c_void_p fastest. */
int32_t pan_run(uint8_t *body, uintptr_t length) {
    pan_body.data = body;
    pan_body.length = (uint32_t)length;
    int32_t verdict = pan_accept_fn(1, (uint32_t)length);
    pan_body.data = 0;
    return verdict;
}

/* Run accept on COUNT capsules; verdicts go to OUT. */
void pan_run_batch(uint32_t count, const uint64_t *bodies, const uint32_t *lengths, int32_t *out) {
    for (uint32_t i = 0; i < count; i++) {
        pan_batch_index = (int32_t)i;
        pan_body.data = (uint8_t *)(uintptr_t)bodies[i];
        pan_body.length = lengths[i];
        out[i] = pan_accept_fn(1, lengths[i]);
    }
    pan_body.data = 0;
    pan_batch_index = -1;
}
