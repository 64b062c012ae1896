/* pan_fast.h: the contract between the node's compiled fast path and a runtime's C entry.
 *
 * Hand-written (it is host-internal, not part of the PNI): the UDP fast path
 * (pan_runtime/net/_fastpath.c) calls a code object's `pan_fast_run_fn` with the capsule body
 * and this context instead of going through Python. The context answers the environment
 * calls a forwarding capsule makes most often, so they cost no call back into Python.
 * The calls answered from the body and this context are generated (pni_hot.h). Any other
 * PNI call the code makes during the run reaches the node's PNI server as usual, which has
 * the node take the capsule over on the spot (its materialize hook, registered by
 * pan_runtime/net/udp_fast.py), and the node finishes that capsule in Python.
 */
#ifndef PAN_FAST_H
#define PAN_FAST_H

#include <stdint.h>

typedef struct pan_fast_ctx {
    int32_t origin_kind;      /* PNI origin kind of the capsule (0: network) */
    int32_t has_prev_hop;     /* 1 when prev_hop holds the previous hop's address */
    uint8_t node_address[16]; /* this node's address */
    uint8_t prev_hop[16];     /* the neighbour the capsule came from */
} pan_fast_ctx;

/* Run accept on one capsule whose body is LENGTH bytes at BODY; returns the verdict.
 * STATE is the runtime's own pointer for the code object (LoadedCode.fast_entry gives both). */
typedef int32_t (*pan_fast_run_fn)(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx);

/* Several capsules of one code object from one neighbour (one receive's worth), run in one
 * call: the crossing into the runtime (the GIL released, an engine entered) is paid once.
 *
 * Which capsule runs: when the code makes a PNI call the context cannot answer, the caller
 * takes that capsule over (it reads the running index during the call), so the runtime keeps
 * the index current before each capsule: in `index`, or, when the capsules run inside an
 * engine that writes the index to memory of its own (jvm: one JNI call runs the batch), in
 * the int32 that `index_at` points to, set by the runtime before the first capsule runs.
 * The caller zeroes the whole struct, so an entry that does not know `index_at` leaves it
 * NULL and `index` is read; fields are only ever added at the end. */
typedef struct pan_fast_batch {
    uint32_t count;          /* capsules in the batch (at least 1) */
    uint32_t index;          /* the runtime sets it to the capsule it is about to run (unless
                              * it set index_at) */
    volatile int32_t stop;   /* the fast path sets it during a run (the code reached the host):
                              * run no capsule after the current one */
    int32_t reserved;
    uint8_t *const *bodies;  /* body of capsule i, lengths[i] bytes */
    const uintptr_t *lengths;
    int32_t *verdicts;       /* out: the verdict of each capsule run */
    volatile const int32_t *index_at; /* NULL, or where the runtime keeps the index of the
                              * capsule it runs instead of `index` (kept current before each) */
} pan_fast_batch;

/* The capsule of B the runtime is running (or last ran): what a caller reads mid-batch. */
static inline uint32_t pan_fast_batch_running(const pan_fast_batch *b) {
    return b->index_at ? (uint32_t)*b->index_at : b->index;
}

/* Run accept on the capsules of BATCH in order, from the first, each with CTX, as
 * pan_fast_run_fn would one by one; stop after the first whose verdict is not a forward
 * (PNI_KIND_FORWARD in its low byte; a fault included, so the runtime's record of the last
 * run is that capsule's) and before the next one once `stop` is set. Returns how many ran. */
typedef uint32_t (*pan_fast_batch_fn)(void *state, pan_fast_batch *batch, const pan_fast_ctx *ctx);

#endif
