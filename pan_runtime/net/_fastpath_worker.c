/* Capsules for a code object in a worker process, handed over and finished by the fast path.
 *
 * Included by _fastpath.c (it works on the FastPath's receive batch, tables and sockets).
 * A run of capsules one receive read for such a code object (one neighbour, one code object)
 * becomes ONE BATCH record in the worker's down ring, written here, with one call into the
 * node's Python per batch, not per capsule: `admit(n, total, meta, owner)`
 * (pan_runtime/node/offload.py) checks the node's bounds (limits.worker_inflight,
 * worker_queue, the pool bound), reserves the record in the ring (the producer's position
 * stays the Python Ring's: it is the ring's only producer, C writes the payload into the
 * place it reserved and then publishes the new head itself, so the worker never sees a half
 * written batch), counts the capsules in and puts the batch behind the others in its code
 * object's queue of batches out (so deadlines, deaths and budgets are the node's as for any
 * batch). It returns (payload view, head view, new head, wake eventfd), or None: the batch
 * cannot go now (no worker up, a bound, the ring full) and each capsule takes the node's way,
 * as before. The copy of each body into the ring is the one copy a capsule costs on its way
 * to the worker; its pool slot is free again at once.
 *
 * `meta` is what the node keeps of each capsule while it is out, WK_META_SIZE bytes each:
 * its header as received, body length, the body's offset in the BATCH payload and the
 * neighbour it came from. The worker can rewrite anything in the ring, so nothing but a
 * body is read back from it: header, length, route and previous hop are the node's.
 *
 * When the worker answered (the node reads its up ring, WorkerCode.collect), the VERDICTS
 * record goes to `worker_verdicts` here, before the record is released: every field is
 * copied out once and checked (a bad record raises ValueError: the node counts the batch's
 * capsules as its worker's protocol fault), then plain forwards are sent straight from the
 * ring (one sendmmsg, the header from `meta` and the body in place: no copy), drops are
 * counted, and whatever else (a fault, a deliver, a forward C cannot route) comes back with
 * the capsule's bytes for the node's Python to finish, after this batch's forwards.
 *
 * The common case needs none of that Python: a code object's WorkerLane (below) admits the
 * batch and carries out its plain verdicts in C while the node grants it the worker's
 * channel, and calls `admit` or the node's collect only for what it leaves (one authority at
 * a time: the node takes the lane back before it does anything with the worker itself).
 */

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the worker records are little-endian and copied as host integers"
#endif

#include <unistd.h>

#define WK_CAP_SIZE 76        /* pan_runtime.isolation.protocol.CAPSULE: <BBxxI16s32s16sI */
#define WK_META_SIZE 80       /* per capsule out: header (52), u32 body length, u32 body offset, prev hop (16) */
#define WK_META_LEN 52
#define WK_META_REL 56
#define WK_META_PREV 60
#define WK_VERDICTS_HEAD 16   /* /work/notes/verdict-format.md: count, flags, text_bytes, reserved */
#define WK_VERDICT_SIZE 24    /* i32 verdict, u32 fault_len, u64 steps, u64 fuel */
#define WK_FAULT_MAX 2048
#define WK_KIND_DROP 0        /* PNI_KIND_DROP */

static inline void wk_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline uint32_t wk_get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A capsule the node's Python finishes, from what the node kept of it (META) and its body in
 * the ring (BODY, copied out before the record is released): (index I, VERDICT, WHY: its fault
 * text or None, a reference taken, datagram, previous hop); NULL with an error set. */
static PyObject *wk_rest_entry(Py_ssize_t i, int32_t verdict, PyObject *why, const uint8_t *meta, const uint8_t *body) {
    uint32_t len = wk_get32(meta + WK_META_LEN);
    PyObject *dgram = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)HEADER_SIZE + len);
    if (!dgram) {
        Py_DECREF(why);
        return NULL;
    }
    memcpy(PyBytes_AS_STRING(dgram), meta, HEADER_SIZE);
    memcpy(PyBytes_AS_STRING(dgram) + HEADER_SIZE, body, len);
    return Py_BuildValue("(niNNy#)", i, (int)verdict, why, dgram, (const char *)meta + WK_META_PREV,
                         (Py_ssize_t)ADDR_SIZE);
}

/* What the node keeps of the COUNT capsules at rslot[FIRST ...] from neighbour LI, into M
 * (COUNT * WK_META_SIZE bytes); returns the BATCH payload's size. */
static size_t wk_meta(FastPath *self, int first, int count, int li, uint8_t *m) {
    fp_link *in = &self->links[li];
    size_t total = 8 + (((size_t)count * WK_CAP_SIZE + 7) & ~(size_t)7);
    memset(m, 0, (size_t)count * WK_META_SIZE);
    for (int k = 0; k < count; k++) {
        int at = first + k;
        const uint8_t *buf = self->base + (Py_ssize_t)self->rslot[at] * self->slot_size;
        uint32_t len = (uint32_t)self->rmsg[at].msg_len - HEADER_SIZE;
        uint8_t *e = m + (size_t)k * WK_META_SIZE;
        memcpy(e, buf, HEADER_SIZE);
        wk_put32(e + WK_META_LEN, len);
        wk_put32(e + WK_META_REL, (uint32_t)total);
        memcpy(e + WK_META_PREV, in->address, ADDR_SIZE);
        total += ((size_t)len + 7) & ~(size_t)7;
    }
    return total;
}

/* Write the BATCH payload of those capsules at P (its place in the ring, as big as wk_meta
 * said) and give their slots back; returns the bytes received. */
static unsigned long long wk_write(FastPath *self, int first, int count, const uint8_t *m, uint8_t *p) {
    wk_put32(p, (uint32_t)count);
    wk_put32(p + 4, 0);
    unsigned long long bytes = 0;
    for (int k = 0; k < count; k++) {
        int at = first + k;
        const uint8_t *buf = self->base + (Py_ssize_t)self->rslot[at] * self->slot_size;
        const uint8_t *e = m + (size_t)k * WK_META_SIZE;
        uint32_t len = wk_get32(e + WK_META_LEN);
        uint8_t *c = p + 8 + (size_t)k * WK_CAP_SIZE;
        c[0] = 0;                                        /* origin: the network */
        c[1] = (uint8_t)(e[PAN_WIRE_HOP_LIMIT_OFFSET] - 1); /* the node's hop taken, as its parse does */
        c[2] = c[3] = 0;
        wk_put32(c + 4, len);
        memcpy(c + 8, e + PAN_WIRE_HOME_OFFSET, ADDR_SIZE);
        memcpy(c + 24, e + PAN_WIRE_NAME_OFFSET, NAME_SIZE);
        memcpy(c + 56, e + WK_META_PREV, ADDR_SIZE);
        wk_put32(c + 72, 0);
        memcpy(p + wk_get32(e + WK_META_REL), buf + HEADER_SIZE, len); /* the one copy */
        bytes += (unsigned long long)len + HEADER_SIZE;
        give_back(self, self->rslot[at]);
        self->rslot[at] = -1;
    }
    return bytes;
}


/* ------------------------------------------------------------ a worker code's lane
 *
 * The common case without the node's Python: a WorkerLane (one per code object in a worker,
 * made by the node, `Offload`) lets C admit a batch into the worker's down ring and carry out
 * its VERDICTS from the up ring itself, while the node has GRANTED it the lane: nothing of the
 * node's own out to that worker (no batch, no control record, no reset), nothing waiting, the
 * worker up and not demoted. One authority at a time: while granted, the ring positions (the
 * down ring's producer head, the up ring's read cursor) and the batches out are the lane's;
 * the node TAKES the lane back before it does anything with the worker (a budget look, a
 * death, a batch of its own, a PNI call, a fault, closing) and then has them as its own
 * (`take`: each batch still out becomes an ordinary batch of the node's, under the same
 * budget and in the same order). The counts C keeps go into the node's statistics on `pull`.
 *
 * Every fast-path thread admits into the lanes; the thread whose wait watches the worker's
 * eventfd (the event loop's) carries the verdicts out, each forward from the socket of the
 * fast path that read it. A lane is touched only under the node's lock (with several threads):
 * its sends keep the lock, and an admission flushes its receive's earlier sends (which drop
 * the lock) before it reads the lane.
 *
 * C admits within the node's bounds (limits.worker_inflight, the pool share, the pool's
 * reserve: `pool_low`, set by the node each turn) and the ring's room as `Ring.reserve` and
 * `WorkerCode.submit_raw` do. On the worker's wake-up (the fast path's wait) C reads the up
 * ring: a VERDICTS record for the oldest batch with no fault among its verdicts is carried
 * out (every field checked as `worker_verdicts` does; plain forwards sent from the ring, drops
 * counted, and the capsules C does not carry out, a deliver or a forward it cannot route,
 * copied out and handed to the lane's `finish`, the node's Python, after the forwards),
 * released, and the batch popped; anything else (a fault, a reset flag, a PNI call, a record
 * that breaks the layout, a frame out of place) is left where it is, unread, and the node's
 * Python takes the lane and reads it as always (so a bad record becomes the worker's protocol
 * fault there, with nothing sent). */

#define WK_KIND_BATCH 4       /* pan_runtime.isolation.protocol.Kind.BATCH */
#define WK_KIND_VERDICTS 22   /* Kind.VERDICTS */
#define WK_RING_HEADER 128    /* pan_runtime.isolation.ring.HEADER */
#define WK_RING_POLLING 72    /* a consumer's flag after the tail (isolation/_batchloop_serve.c, RING_POLLING) */

typedef struct wl_batch {
    struct wl_batch *next;
    FastPath *fp;             /* the fast path that wrote it (its socket sends the forwards) */
    unsigned long long t0, started, budget_ns, hold;
    Py_ssize_t at;            /* its payload's offset in the channel's mapping */
    size_t total;
    int n;
    uint8_t meta[];           /* n * WK_META_SIZE */
} wl_batch;

typedef struct {
    PyObject_HEAD
    PyObject *admit;          /* the node's admit(n, total, meta, owner): when C does not admit */
    PyObject *ready;          /* the node's collect (called with no arguments in the wait) */
    PyObject *finish;         /* finish(owner, rest, per_ns): what C left of a batch it collected */
    int granted;
    Py_buffer map;            /* the channel's mapping, held while granted */
    Py_ssize_t down_at, up_at; /* each ring's header in the mapping (data HEADER bytes after) */
    unsigned long long size;
    unsigned long long head;  /* the down ring's producer position */
    unsigned long long read;  /* the up ring's read cursor */
    int wake_down, wake_up;
    unsigned long long per_ns, grace_ns, demote_ns;
    unsigned long long spin_ns; /* how long the wait spins for its verdicts (a polling worker), 0: never */
    long long inflight_limit, share;
    wl_batch *first, *last;
    long long out_n;
    /* since the last pull */
    unsigned long long c_in, c_batches, c_forwarded, c_dropped, c_lost, c_steps, c_fuel, c_time, c_max;
    unsigned long long c_done, c_handovers, c_collects, c_spun, c_woke;
} WorkerLane;

static PyTypeObject WorkerLaneType;
static int worker_forward_link(FastPath *self, const uint8_t *body, uint32_t len, int32_t verdict, uint8_t *dest);
static void worker_ran(FastPath *self, const uint8_t *prev, unsigned long long ns);

static void lane_free_batches(WorkerLane *L) {
    wl_batch *b = L->first;
    while (b) {
        wl_batch *next = b->next;
        Py_XDECREF(b->fp);
        PyMem_Free(b);
        b = next;
    }
    L->first = L->last = NULL;
    L->out_n = 0;
}

static void lane_ungrant(WorkerLane *L) {
    lane_free_batches(L);
    if (L->granted) PyBuffer_Release(&L->map);
    L->granted = 0;
}

/* When the node's loop must look at the lane's batches out: the oldest one's budget end, or
 * sooner its first demotion look (as WorkerCode.look_due); 0: none out. */
static unsigned long long lane_due(WorkerLane *L) {
    wl_batch *b = L->first;
    if (!b) return 0;
    unsigned long long due = b->started + b->budget_ns;
    if (L->demote_ns) {
        unsigned long long d = b->started + L->demote_ns * (unsigned long long)b->n;
        if (d < due) due = d;
    }
    return due;
}

/* The lanes with batches out that C admitted or collected for during this `wait`: the wait
 * ends by the earliest due of those still out (a batch finished meanwhile needs no look). A
 * lane past the first WAIT_LANES has its due folded into g_due_ns (never relaxed). */
#define WAIT_LANES 8
static __thread PyObject *g_lanes[WAIT_LANES];
static __thread int g_nlanes;

static void lane_watch(WorkerLane *L) {
    if (!L->first) return;
    for (int i = 0; i < g_nlanes; i++) {
        if (g_lanes[i] == (PyObject *)L) return;
    }
    if (g_nlanes < WAIT_LANES) {
        g_lanes[g_nlanes++] = Py_NewRef((PyObject *)L);
        return;
    }
    unsigned long long due = lane_due(L);
    if (due && (!g_due_ns || due < g_due_ns)) g_due_ns = due;
}

static unsigned long long lanes_due(void) {
    unsigned long long due = 0;
    for (int i = 0; i < g_nlanes; i++) {
        unsigned long long d = lane_due((WorkerLane *)g_lanes[i]);
        if (d && (!due || d < due)) due = d;
    }
    return due;
}

static void lanes_clear(void) {
    while (g_nlanes > 0) {
        PyObject *l = g_lanes[--g_nlanes];
        g_lanes[g_nlanes] = NULL;
        Py_DECREF(l);
    }
}

static inline uint64_t *lane_u64(WorkerLane *L, Py_ssize_t at) { return (uint64_t *)((uint8_t *)L->map.buf + at); }

/* A lane of this wait that spins for its verdicts: granted, a batch out, a polling worker. */
static int spun_lane(WorkerLane *L) { return L->granted && L->first && L->spin_ns; }

/* Set (1) or clear (0) the spinning flag of this wait's lanes that spin, then fence. */
static void lanes_spinning(uint64_t on) {
    for (int i = 0; i < g_nlanes; i++) {
        WorkerLane *L = (WorkerLane *)g_lanes[i];
        if (spun_lane(L)) __atomic_store_n(lane_u64(L, L->up_at + WK_RING_POLLING), on, __ATOMIC_RELEASE);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* A lane of this wait that spins and whose worker wrote its up ring (counted spun; a new
 * reference), or NULL. */
static PyObject *lanes_answered(void) {
    for (int i = 0; i < g_nlanes; i++) {
        WorkerLane *L = (WorkerLane *)g_lanes[i];
        if (spun_lane(L) && __atomic_load_n(lane_u64(L, L->up_at), __ATOMIC_ACQUIRE) > L->read) {
            L->c_spun++;
            return Py_NewRef((PyObject *)L);
        }
    }
    return NULL;
}

/* A lane of this wait with a batch out to a worker that polls on CPUs of its own answers
 * within µs, while a wake-up across CPUs costs tens of µs on a virtual machine: before the
 * wait sleeps, it looks at those lanes' up rings for up to their spin time. The lane whose
 * worker wrote (a reference), or NULL. Only for a fast path on one thread: the spin holds
 * the GIL, and a lane is touched only under the node's lock. */
static PyObject *lanes_spin(void) {
    unsigned long long spin = 0;
    for (int i = 0; i < g_nlanes; i++) {
        WorkerLane *L = (WorkerLane *)g_lanes[i];
        if (spun_lane(L) && L->spin_ns > spin) spin = L->spin_ns;
    }
    if (!spin) return NULL;
    /* the workers need not wake this thread while it spins: each lane's flag says so */
    lanes_spinning(1);
    PyObject *got = NULL;
    unsigned long long end = now_ns() + spin;
    for (unsigned k = 1; !got; k++) {
        got = lanes_answered();
        if (got) break;
        NL_RELAX(); /* include/pan_nodelock.h */
        if ((k & 63) == 0 && now_ns() >= end) break;
    }
    lanes_spinning(0);
    if (!got) got = lanes_answered(); /* one written as the flags went down woke no one */
    return got;
}

/* Carry out the VERDICTS record REC (RLEN bytes) of batch B: plain forwards are sent from the
 * ring and drops counted here; a capsule C does not carry out but whose verdict is no fault
 * (a deliver, a forward it cannot route) goes into *REST (a new list, left NULL when there is
 * none) as wk_rest_entry makes it, for the node's Python after the batch's forwards. 0 done,
 * 1 the node's Python must read the record (a fault, a reset flag, another count, a record
 * that breaks the layout: nothing was sent, nothing changed), -1 a Python error (memory;
 * nothing was sent). */
static int lane_verdicts(WorkerLane *L, wl_batch *b, const uint8_t *rec, size_t rlen, unsigned long long per,
                         PyObject **rest) {
    FastPath *self = b->fp;
    int n = b->n;
    *rest = NULL;
    if (rlen < WK_VERDICTS_HEAD) return 1;
    uint8_t head[WK_VERDICTS_HEAD];
    memcpy(head, rec, WK_VERDICTS_HEAD); /* the worker may still write the ring: read once */
    if (wk_get32(head) != (uint32_t)n || wk_get32(head + 4) != 0 || wk_get32(head + 8) != 0 || wk_get32(head + 12) != 0)
        return 1; /* another count, a reset flag, fault texts: the node's */
    if (rlen != WK_VERDICTS_HEAD + (size_t)n * WK_VERDICT_SIZE) return 1;
    uint8_t *ents = PyMem_Malloc((size_t)n * WK_VERDICT_SIZE);
    uint8_t *hdrs = PyMem_Malloc((size_t)n * HEADER_SIZE);
    struct mmsghdr *msg = PyMem_Calloc((size_t)n, sizeof *msg);
    struct iovec *iov = PyMem_Calloc((size_t)n * 2, sizeof *iov);
    int *outl = PyMem_Calloc((size_t)n, sizeof *outl);
    struct sockaddr_storage *to = PyMem_Calloc((size_t)n, sizeof *to);
    int rc = 1;
    if (!ents || !hdrs || !msg || !iov || !outl || !to) {
        PyErr_NoMemory();
        rc = -1;
        goto done;
    }
    memcpy(ents, rec + WK_VERDICTS_HEAD, (size_t)n * WK_VERDICT_SIZE);
    uint8_t *batch = (uint8_t *)L->map.buf + b->at;
    unsigned long long steps = 0, fuel = 0, dropped = 0, forwarded = 0, lost = 0;
    int nrest = 0;
    for (int i = 0; i < n; i++) { /* every verdict first: a fault leaves all to the node */
        const uint8_t *v = ents + (size_t)i * WK_VERDICT_SIZE;
        int32_t verdict = (int32_t)wk_get32(v);
        const uint8_t *e = b->meta + (size_t)i * WK_META_SIZE;
        uint64_t rel = wk_get32(e + WK_META_REL), len = wk_get32(e + WK_META_LEN);
        if (wk_get32(v + 4) != 0 || verdict < 0 || rel + len > b->total) goto done;
        if ((verdict & PAN_WIRE_VERDICT_KIND_MASK) == WK_KIND_DROP) {
            outl[i] = -1;
            continue;
        }
        uint8_t dest[ADDR_SIZE];
        outl[i] = worker_forward_link(self, batch + rel, (uint32_t)len, verdict, dest);
        if (outl[i] < 0) {
            outl[i] = -2; /* the node's Python finishes it */
            nrest++;
        }
    }
    if (nrest) { /* copied out before anything is sent: a failure here sends nothing */
        *rest = PyList_New(nrest);
        if (!*rest) {
            rc = -1;
            goto done;
        }
        for (int i = 0, k = 0; i < n; i++) {
            if (outl[i] != -2) continue;
            const uint8_t *e = b->meta + (size_t)i * WK_META_SIZE;
            PyObject *t = wk_rest_entry(i, (int32_t)wk_get32(ents + (size_t)i * WK_VERDICT_SIZE), Py_NewRef(Py_None), e,
                                        batch + wk_get32(e + WK_META_REL));
            if (!t) {
                Py_CLEAR(*rest);
                rc = -1;
                goto done;
            }
            PyList_SET_ITEM(*rest, k++, t);
        }
    }
    int ns = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *v = ents + (size_t)i * WK_VERDICT_SIZE;
        uint64_t st, fu;
        memcpy(&st, v + 8, 8);
        memcpy(&fu, v + 16, 8);
        steps = steps + st < steps ? ULLONG_MAX : steps + st;
        fuel = fuel + fu < fuel ? ULLONG_MAX : fuel + fu;
        if (outl[i] == -2) continue; /* charged by Node.finish */
        const uint8_t *e = b->meta + (size_t)i * WK_META_SIZE;
        worker_ran(self, e + WK_META_PREV, per);
        if (outl[i] < 0) {
            dropped++;
            continue;
        }
        int ol = outl[i];
        uint8_t *h = hdrs + (size_t)ns * HEADER_SIZE;
        memcpy(h, e, HEADER_SIZE);
        h[PAN_WIRE_HOP_LIMIT_OFFSET]--;
        iov[2 * ns] = (struct iovec){h, HEADER_SIZE};
        iov[2 * ns + 1] = (struct iovec){batch + wk_get32(e + WK_META_REL), wk_get32(e + WK_META_LEN)};
        struct msghdr *mh = &msg[ns].msg_hdr;
        to[ns] = self->links[ol].sa;
        mh->msg_name = &to[ns];
        mh->msg_namelen = self->links[ol].salen;
        mh->msg_iov = &iov[2 * ns];
        mh->msg_iovlen = 2;
        outl[ns++] = ol; /* ns <= i: the entries still to read are past it */
    }
    for (int m = 0; m < ns;) { /* the GIL and the node's lock stay held: no other thread touches the lane mid-way */
        int r = sendmmsg(self->fd, &msg[m], (unsigned int)(ns - m), MSG_DONTWAIT);
        self->tx_calls++;
        if (r < 0) {
            if (errno == EINTR) continue;
            self->links[outl[m]].send_errors++;
            lost++;
            m++;
            continue;
        }
        for (int k = m; k < m + r; k++) {
            unsigned long long by = msg[k].msg_len;
            fp_link *ol = &self->links[outl[k]];
            ol->sent++;
            ol->sent_bytes += by;
            if (by > ol->largest_sent) ol->largest_sent = by;
            self->sent++;
            forwarded++;
        }
        self->tx_datagrams += (unsigned long long)r;
        m += r;
    }
    L->c_forwarded += forwarded;
    L->c_dropped += dropped;
    L->c_lost += lost;
    L->c_steps = L->c_steps + steps < L->c_steps ? ULLONG_MAX : L->c_steps + steps;
    L->c_fuel = L->c_fuel + fuel < L->c_fuel ? ULLONG_MAX : L->c_fuel + fuel;
    if (n > nrest) {
        L->c_time += per * (unsigned long long)(n - nrest);
        if (per > L->c_max) L->c_max = per;
    }
    rc = 0;
done:
    PyMem_Free(ents);
    PyMem_Free(hdrs);
    PyMem_Free(msg);
    PyMem_Free(iov);
    PyMem_Free(outl);
    PyMem_Free(to);
    return rc;
}

/* What a callback's answer R (a reference, taken) says about when the loop must turn:
 * monotonic ns, 0: no need, 1: at once (also for anything but an integer). */
static unsigned long long turn_due(PyObject *r) {
    unsigned long long due = PyLong_Check(r) ? PyLong_AsUnsignedLongLong(r) : 1;
    Py_DECREF(r);
    if (due == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        due = 1;
    }
    return due;
}

/* The worker woke the node (WOKEN: its eventfd, read here; else the wait's spin found its
 * verdicts): carry out in C what the lane can, and hand the capsules of a
 * batch C leaves to the node's Python to the lane's `finish` (which says by when the loop must
 * turn: *DUE as the ready callback's answer, the earliest kept). 0: nothing left for Python,
 * 1: Python must look (the record it cannot carry out stays unread), -1: a Python error. */
static int lane_collect(WorkerLane *L, unsigned long long *due, int woken) {
    uint64_t v;
    if (L->granted && woken) { /* not after a spin: a worker that saw it spinning wrote no eventfd */
        ssize_t r = read(L->wake_up, &v, sizeof v); /* non-blocking; none pending is fine */
        (void)r;
    }
    if (!L->granted) return 1;
    if (!L->first) /* nothing out: a wake-up whose verdicts a spin or an earlier read took is
                    * nothing for Python (a worker that wrote anything else leaves it unread) */
        return __atomic_load_n(lane_u64(L, L->up_at), __ATOMIC_ACQUIRE) > L->read;
    while (L->first) { /* the mapping read again each time: a finish may have taken and granted it again */
        uint8_t *data = (uint8_t *)L->map.buf + L->up_at + WK_RING_HEADER;
        unsigned long long size = L->size;
        unsigned long long head = __atomic_load_n(lane_u64(L, L->up_at), __ATOMIC_ACQUIRE);
        unsigned long long rd = L->read;
        if (rd >= head) return 0; /* nothing (more) written yet */
        if (head - rd > size) return 1;
        unsigned long long pos = rd % size;
        if (pos + 8 > size) return 1;
        uint32_t len = wk_get32(data + pos), kind = wk_get32(data + pos + 4);
        unsigned long long need = 8 + (((unsigned long long)len + 7) & ~7ull);
        if (pos + need > size || rd + need > head) return 1;
        if (kind == 0) { /* a wrap frame */
            L->read = rd + need;
            continue;
        }
        if (kind != WK_KIND_VERDICTS) return 1;
        wl_batch *b = L->first;
        unsigned long long now = now_ns();
        unsigned long long per = (now - b->t0) / (unsigned long long)(b->n > 0 ? b->n : 1);
        PyObject *rest;
        int r = lane_verdicts(L, b, data + pos + 8, len, per, &rest);
        if (r) return r;
        L->read = rd + need;
        __atomic_store_n(lane_u64(L, L->up_at + 64), (uint64_t)L->read, __ATOMIC_RELEASE); /* released */
        L->first = b->next;
        if (!L->first) L->last = NULL;
        else L->first->started = now;
        L->out_n -= b->n;
        L->c_done++;
        FastPath *fp = b->fp; /* the reference goes with the batch record */
        PyMem_Free(b);
        if (rest) { /* the batch is the lane's no more: its finish may take the lane back */
            fp->crossings++;
            PyObject *owner = fp->owner ? fp->owner : Py_None;
            PyObject *got = PyObject_CallFunction(L->finish, "OOK", owner, rest, per);
            Py_DECREF(rest);
            Py_DECREF(fp);
            if (!got) return -1;
            unsigned long long d = turn_due(got);
            if (d && (!*due || d < *due)) *due = d;
            if (!L->granted) return 0; /* taken back: what is still out is the node's */
            continue;
        }
        Py_DECREF(fp);
    }
    return 0;
}

/* Admit the COUNT capsules at rslot[FIRST ...] (neighbour LI) into the lane's worker as one
 * batch, as Offload.admit and WorkerCode.submit_raw would: 1 admitted (written, woken,
 * counted), 0 not by C (the node's admit decides; nothing changed). */
static int lane_admit(FastPath *self, WorkerLane *L, int first, int count, int li);

PyDoc_STRVAR(lane_grant_doc,
"grant(mapping, down_at, up_at, size, head, read, wake_down, wake_up, per_ns, grace_ns, demote_ns,\n"
"      inflight_limit, share[, spin_ns])\n\n"
"The node gives the lane its worker's channel (nothing of the node's is out): the mapping, each\n"
"ring's header offset and data size, the down ring's head and the up ring's read cursor, the two\n"
"eventfds, each capsule's budget and the grace (ns), the demotion look per capsule (0: none), and\n"
"the bounds on capsules out; SPIN_NS: how long the fast path's wait spins for the verdicts of a\n"
"batch out before it sleeps (a worker polling on CPUs of its own answers within it; 0: never).");

static PyObject *lane_grant(WorkerLane *L, PyObject *args) {
    PyObject *mapping;
    Py_ssize_t down_at, up_at;
    unsigned long long size, head, read, per, grace, demote;
    int wd, wu;
    long long limit, share;
    unsigned long long spin = 0;
    if (!PyArg_ParseTuple(args, "OnnKKKiiKKKLL|K", &mapping, &down_at, &up_at, &size, &head, &read, &wd, &wu, &per,
                          &grace, &demote, &limit, &share, &spin))
        return NULL;
    if (L->granted) {
        PyErr_SetString(PyExc_RuntimeError, "the lane is granted already");
        return NULL;
    }
    Py_buffer mb;
    if (PyObject_GetBuffer(mapping, &mb, PyBUF_WRITABLE) < 0) return NULL;
    if (size < 4096 || (size & (size - 1)) || down_at < 0 || up_at < 0 || (down_at & 7) || (up_at & 7) ||
        (unsigned long long)down_at + WK_RING_HEADER + size > (unsigned long long)mb.len ||
        (unsigned long long)up_at + WK_RING_HEADER + size > (unsigned long long)mb.len || ((uintptr_t)mb.buf & 7)) {
        PyBuffer_Release(&mb);
        PyErr_SetString(PyExc_ValueError, "the rings do not lie in the mapping");
        return NULL;
    }
    L->map = mb;
    L->granted = 1;
    L->down_at = down_at, L->up_at = up_at, L->size = size;
    L->head = head, L->read = read;
    L->wake_down = wd, L->wake_up = wu;
    L->per_ns = per, L->grace_ns = grace, L->demote_ns = demote, L->spin_ns = spin;
    L->inflight_limit = limit, L->share = share;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lane_take_doc,
"take() -> (head, read, batches) or None\n\n"
"The node takes the lane back (None: it was not granted): the down ring's head and the up ring's\n"
"read cursor, and each batch still out, oldest first, as (meta, payload offset in the mapping,\n"
"payload bytes, hold, t0, started, budget_ns, n, owner).");

static PyObject *lane_take(WorkerLane *L, PyObject *Py_UNUSED(ignored)) {
    if (!L->granted) Py_RETURN_NONE;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    for (wl_batch *b = L->first; b; b = b->next) {
        PyObject *t = Py_BuildValue("(y#nnKKKKiO)", (const char *)b->meta, (Py_ssize_t)b->n * WK_META_SIZE, b->at,
                                    (Py_ssize_t)b->total, b->hold, b->t0, b->started, b->budget_ns, b->n,
                                    b->fp->owner ? b->fp->owner : Py_None);
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    PyObject *out = Py_BuildValue("(KKN)", L->head, L->read, list);
    if (!out) return NULL;
    lane_ungrant(L);
    return out;
}

PyDoc_STRVAR(lane_pull_doc,
"pull() -> (capsules_in, batches, forwarded, dropped, lost, steps, fuel, time_ns, max_ns, done,\n"
"           handovers_kept, collects_kept, spun, woke)\n\n"
"What C counted since the last pull (zeroed): capsules and batches admitted, the verdicts carried\n"
"out (forwards sent, drops, forwards the kernel refused, steps, fuel, run time and the longest\n"
"per-capsule time, batches finished), admissions and collects that needed no turn of the loop,\n"
"collects whose verdicts the wait's spin found (no wake-up), and batches handed to a worker that\n"
"was not polling (its eventfd written).");

static PyObject *lane_pull(WorkerLane *L, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = Py_BuildValue("(KKKKKKKKKKKKKK)", L->c_in, L->c_batches, L->c_forwarded, L->c_dropped, L->c_lost,
                                  L->c_steps, L->c_fuel, L->c_time, L->c_max, L->c_done, L->c_handovers, L->c_collects,
                                  L->c_spun, L->c_woke);
    if (!out) return NULL;
    L->c_in = L->c_batches = L->c_forwarded = L->c_dropped = L->c_lost = L->c_steps = L->c_fuel = 0;
    L->c_time = L->c_max = L->c_done = L->c_handovers = L->c_collects = L->c_spun = L->c_woke = 0;
    return out;
}

static PyObject *lane_due_py(WorkerLane *L, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromUnsignedLongLong(lane_due(L));
}

static int lane_init(WorkerLane *L, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"admit", "ready", "finish", NULL};
    PyObject *admit, *ready, *finish;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:WorkerLane", kw, &admit, &ready, &finish)) return -1;
    if (!PyCallable_Check(admit) || !PyCallable_Check(ready) || !PyCallable_Check(finish)) {
        PyErr_SetString(PyExc_TypeError, "a WorkerLane's admit, ready and finish are callables");
        return -1;
    }
    lane_ungrant(L);
    Py_XSETREF(L->admit, Py_NewRef(admit));
    Py_XSETREF(L->ready, Py_NewRef(ready));
    Py_XSETREF(L->finish, Py_NewRef(finish));
    return 0;
}

static int lane_traverse(WorkerLane *L, visitproc visit, void *arg) {
    Py_VISIT(L->admit);
    Py_VISIT(L->ready);
    Py_VISIT(L->finish);
    for (wl_batch *b = L->first; b; b = b->next) Py_VISIT(b->fp);
    return 0;
}

static int lane_clear(WorkerLane *L) {
    lane_ungrant(L);
    Py_CLEAR(L->admit);
    Py_CLEAR(L->ready);
    Py_CLEAR(L->finish);
    return 0;
}

static void lane_dealloc(WorkerLane *L) {
    PyObject_GC_UnTrack(L);
    lane_clear(L);
    Py_TYPE(L)->tp_free((PyObject *)L);
}

/* Called as the node's collect (an event loop without the fast path's wait calls it so). */
static PyObject *lane_call(WorkerLane *L, PyObject *args, PyObject *kwds) {
    if (!L->ready) {
        PyErr_SetString(PyExc_RuntimeError, "an uninitialised WorkerLane");
        return NULL;
    }
    return PyObject_Call(L->ready, args, kwds);
}

static PyObject *lane_get_granted(WorkerLane *L, void *Py_UNUSED(c)) { return PyBool_FromLong(L->granted); }
static PyObject *lane_get_out(WorkerLane *L, void *Py_UNUSED(c)) { return PyLong_FromLongLong(L->out_n); }

static PyMethodDef lane_methods[] = {
    {"grant", (PyCFunction)lane_grant, METH_VARARGS, lane_grant_doc},
    {"take", (PyCFunction)lane_take, METH_NOARGS, lane_take_doc},
    {"pull", (PyCFunction)lane_pull, METH_NOARGS, lane_pull_doc},
    {"due", (PyCFunction)lane_due_py, METH_NOARGS, "due() -> when the loop must look at the lane's batches (ns), 0: none out"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lane_getset[] = {
    {"granted", (getter)lane_get_granted, NULL, "whether C has the worker's channel", NULL},
    {"out", (getter)lane_get_out, NULL, "capsules C has out in the worker", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WorkerLaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_runtime.net._fastpath.WorkerLane",
    .tp_doc = PyDoc_STR("WorkerLane(admit, ready, finish): a worker code object's channel, in C while the node grants it."),
    .tp_basicsize = sizeof(WorkerLane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)lane_init,
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_traverse = (traverseproc)lane_traverse,
    .tp_clear = (inquiry)lane_clear,
    .tp_call = (ternaryfunc)lane_call,
    .tp_methods = lane_methods,
    .tp_getset = lane_getset,
};

static int lane_admit(FastPath *self, WorkerLane *L, int first, int count, int li) {
    if (!L->granted || self->pool_low || count <= 0) return 0;
    /* what this receive forwarded before these leaves first; before the lane's state is read:
     * with several fast-path threads the send drops the node's lock, and another thread may
     * admit into this lane, collect from it or the node take it back meanwhile */
    flush_sends(self);
    if (!L->granted) return 0;
    if (L->out_n && L->out_n + count > L->inflight_limit) return 0;
    if (L->out_n + count > (L->share > 1 ? L->share : 1)) return 0;
    wl_batch *b = PyMem_Malloc(sizeof *b + (size_t)count * WK_META_SIZE);
    if (!b) return 0; /* the node's way, which has its own answer to memory */
    size_t total = wk_meta(self, first, count, li, b->meta);
    unsigned long long size = L->size, head = L->head;
    unsigned long long need = 8 + (((unsigned long long)total + 7) & ~7ull);
    unsigned long long tail = __atomic_load_n(lane_u64(L, L->down_at + 64), __ATOMIC_ACQUIRE);
    if (need > size / 2 || tail > head || head - tail > size) { /* the node's Ring says what is wrong */
        PyMem_Free(b);
        return 0;
    }
    if (L->first && L->first->hold < tail) tail = L->first->hold;
    unsigned long long room = size - (head - tail);
    unsigned long long pos = head % size, pad = pos + need > size ? size - pos : 0;
    if ((L->first && (long long)room - (long long)total < (long long)(size / 4)) || head + pad + need - tail > size) {
        PyMem_Free(b);
        return 0;
    }
    uint8_t *data = (uint8_t *)L->map.buf + L->down_at + WK_RING_HEADER;
    b->hold = head;
    if (pad) {
        wk_put32(data + pos, (uint32_t)(pad - 8));
        wk_put32(data + pos + 4, 0);
        head += pad;
        pos = 0;
    }
    wk_put32(data + pos, (uint32_t)total);
    wk_put32(data + pos + 4, WK_KIND_BATCH);
    uint8_t *p = data + pos + 8;
    b->at = (Py_ssize_t)(p - (uint8_t *)L->map.buf);
    b->total = total;
    b->n = count;
    unsigned long long bytes = wk_write(self, first, count, b->meta, p);
    L->head = head + need;
    __atomic_store_n(lane_u64(L, L->down_at), (uint64_t)L->head, __ATOMIC_RELEASE); /* published */
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* before the worker's flag is read */
    if (!__atomic_load_n(lane_u64(L, L->down_at + WK_RING_POLLING), __ATOMIC_ACQUIRE)) { /* a polling worker sees it */
        uint64_t one = 1;
        ssize_t w = write(L->wake_down, &one, sizeof one); /* refused: its budget fails it, counted */
        (void)w;
        L->c_woke++; /* the worker was not polling: it sleeps, or is about to */
    }
    b->t0 = b->started = now_ns();
    b->budget_ns = (unsigned long long)count * L->per_ns + L->grace_ns;
    b->fp = (FastPath *)Py_NewRef((PyObject *)self);
    b->next = NULL;
    if (L->last) L->last->next = b;
    else L->first = b;
    L->last = b;
    L->out_n += count;
    L->c_in += (unsigned long long)count;
    L->c_batches++;
    L->c_handovers++;
    fp_link *in = &self->links[li];
    in->received += (unsigned long long)count;
    in->received_bytes += bytes;
    self->received += (unsigned long long)count;
    self->n_to_worker += (unsigned long long)count;
    lane_watch(L); /* the wait ends by its budget or demotion look while it is out */
    return 1;
}

/* Hand the COUNT capsules at rslot[FIRST ...] (neighbour LI, code object CI, which runs in a
 * worker) to the worker as one batch, or, when the node does not admit it, each to the
 * node's Python as before. Returns how many were handled (the rest are looked at again), or
 * -1 on a Python error (the slots not handled stay in rslot: handle_batch counts them lost). */
static int to_worker(FastPath *self, int first, int count, int li, int ci, int *called) {
    fp_code *code = &self->codes[ci];
    fp_link *in = &self->links[li];
    PyObject *admit = code->admit;
    if (Py_IS_TYPE(admit, &WorkerLaneType)) {
        WorkerLane *lane = (WorkerLane *)admit;
        if (lane_admit(self, lane, first, count, li)) return count; /* no Python */
        admit = lane->admit;
        if (!admit) {
            PyErr_SetString(PyExc_RuntimeError, "an uninitialised WorkerLane");
            return -1;
        }
    }
    PyObject *meta = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * WK_META_SIZE);
    if (!meta) return -1;
    uint8_t *m = (uint8_t *)PyBytes_AS_STRING(meta);
    size_t total = wk_meta(self, first, count, li, m);
    flush_sends(self); /* what this receive forwarded before these leaves first */
    int called_before = *called;
    *called = 1;
    self->crossings++;
    unsigned long long tables = self->tables;
    int held = self->held;
    Py_INCREF(admit); /* the call may replace the tables (and the code's reference) */
    PyObject *r = PyObject_CallFunction(admit, "inOO", count, (Py_ssize_t)total, meta, self->owner);
    Py_DECREF(admit);
    if (!r) {
        Py_DECREF(meta);
        return -1;
    }
    if (r == Py_None) { /* not now: each capsule goes the node's way (it queues or drops them, counted) */
        Py_DECREF(r);
        Py_DECREF(meta);
        int k = 0;
        for (; k < count && tables == self->tables && held == self->held; k++) {
            if (handle_one(self, first + k, li, ci, called) < 0) return -1;
        }
        return k;
    }
    /* admitted: the batch is the node's from here (counted in, out to the worker); a failure
     * below leaves its record unpublished, and the worker's budget then fails it, counted */
    PyObject *pview, *hview;
    unsigned long long head, due = 0;
    int wfd;
    Py_buffer pb = {0}, hb = {0};
    int ok = PyTuple_Check(r) && PyArg_ParseTuple(r, "OOKi|K", &pview, &hview, &head, &wfd, &due);
    if (ok) ok = PyObject_GetBuffer(pview, &pb, PyBUF_WRITABLE) == 0;
    if (ok && PyObject_GetBuffer(hview, &hb, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&pb);
        ok = 0;
    }
    if (ok && ((size_t)pb.len != total || hb.len < 8 || ((uintptr_t)hb.buf & 7))) {
        PyErr_Format(PyExc_ValueError, "admit gave a %zd-byte place for a %zu-byte batch", pb.len, total);
        PyBuffer_Release(&pb);
        PyBuffer_Release(&hb);
        ok = 0;
    }
    if (!ok) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "admit returns (payload, head view, head, eventfd[, due]) or None");
        Py_DECREF(r);
        Py_DECREF(meta);
        for (int k = 0; k < count; k++) {
            give_back(self, self->rslot[first + k]);
            self->rslot[first + k] = -1;
        }
        return -1;
    }
    unsigned long long bytes = wk_write(self, first, count, m, pb.buf);
    __atomic_store_n((uint64_t *)hb.buf, (uint64_t)head, __ATOMIC_RELEASE); /* published: the worker may read it */
    PyBuffer_Release(&pb);
    PyBuffer_Release(&hb);
    Py_DECREF(r);
    Py_DECREF(meta);
    uint64_t one = 1;
    ssize_t w = write(wfd, &one, sizeof one); /* refused: the worker sleeps on, its budget fails it, counted */
    (void)w;
    if (tables == self->tables) {
        in->received += (unsigned long long)count;
        in->received_bytes += bytes;
    }
    self->received += (unsigned long long)count;
    self->n_to_worker += (unsigned long long)count;
    if (due) { /* admit was the only Python: the wait goes on, back in the loop by `due` */
        *called = called_before;
        if (!g_due_ns || due < g_due_ns) g_due_ns = due;
    }
    return count;
}

/* The link toward which a worker's plain forward VERDICT of the BODY (LEN bytes, in the
 * ring) goes, its destination copied to DEST; -1 when Python must finish it. */
static int worker_forward_link(FastPath *self, const uint8_t *body, uint32_t len, int32_t verdict, uint8_t *dest) {
    if (verdict < 0 || (verdict & PAN_WIRE_VERDICT_KIND_MASK) != PAN_WIRE_VERDICT_FORWARD) return -1;
    uint32_t off = (uint32_t)verdict >> 8;
    if ((uint64_t)off + ADDR_SIZE > len) return -1;
    memcpy(dest, body + off, ADDR_SIZE); /* read once: the worker may still write the ring */
    if (memcmp(dest, self->self_addr, ADDR_SIZE) == 0) return -1;
    int out = find_route(self, dest);
    if (out < 0 || (Py_ssize_t)len + HEADER_SIZE > self->links[out].mtu) return -1;
    return out;
}

/* The run of a capsule from neighbour PREV, counted on its link (the ledger's charge). */
static void worker_ran(FastPath *self, const uint8_t *prev, unsigned long long ns) {
    for (int j = 0; j < self->nlinks; j++) {
        if (memcmp(self->links[j].address, prev, ADDR_SIZE) == 0) {
            self->links[j].runs++;
            self->links[j].run_ns += ns;
            return;
        }
    }
}

PyDoc_STRVAR(worker_verdicts_doc,
"worker_verdicts(batch, meta, verdicts, per_ns) -> (reset, forwarded, dropped, lost, steps, fuel, rest)\n\n"
"Carry out a worker's VERDICTS record (`verdicts`, in the up ring, not yet released) for the\n"
"batch this fast path wrote (`batch`: its payload in the down ring, `meta`: what admit was\n"
"given): plain forwards are sent from the ring, drops counted, each run charged `per_ns` on\n"
"its neighbour's link. Returns the code's reset flag, forwards sent, drops, forwards the\n"
"kernel refused, steps and fuel used, and `rest`: (index, verdict, fault text or None,\n"
"datagram bytes, previous hop) of each capsule the node's Python finishes. ValueError: the\n"
"record breaks its layout (nothing was sent).");

static PyObject *FastPath_worker_verdicts(FastPath *self, PyObject *args) {
    Py_buffer bv, mv, vv;
    unsigned long long per_ns;
    if (!PyArg_ParseTuple(args, "y*y*y*K", &bv, &mv, &vv, &per_ns)) return NULL;
    PyObject *rest = NULL, *out = NULL;
    uint8_t *ents = NULL, *text = NULL, *hdrs = NULL;
    struct mmsghdr *msg = NULL;
    struct iovec *iov = NULL;
    struct sockaddr_storage *to = NULL;
    int *outl = NULL;
    Py_ssize_t n = mv.len / WK_META_SIZE;
    if (n <= 0 || mv.len % WK_META_SIZE || n > INT_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "a batch's meta is a whole number of capsules");
        goto done;
    }
    if ((size_t)vv.len < WK_VERDICTS_HEAD) {
        PyErr_Format(PyExc_ValueError, "a VERDICTS record of %zd bytes", vv.len);
        goto done;
    }
    uint8_t head[WK_VERDICTS_HEAD];
    memcpy(head, vv.buf, WK_VERDICTS_HEAD); /* the worker may still write the ring: read once */
    uint32_t count = wk_get32(head), flags = wk_get32(head + 4), tbytes = wk_get32(head + 8);
    if (count != (uint32_t)n || wk_get32(head + 12) != 0) {
        PyErr_Format(PyExc_ValueError, "VERDICTS for %u capsules (reserved %u), the batch has %zd", count,
                     wk_get32(head + 12), n);
        goto done;
    }
    size_t need = WK_VERDICTS_HEAD + (size_t)n * WK_VERDICT_SIZE + tbytes;
    if ((size_t)vv.len != need) {
        PyErr_Format(PyExc_ValueError, "a VERDICTS record of %zd bytes for %zu", vv.len, need);
        goto done;
    }
    ents = PyMem_Malloc((size_t)n * WK_VERDICT_SIZE);
    text = PyMem_Malloc(tbytes ? tbytes : 1);
    hdrs = PyMem_Malloc((size_t)n * HEADER_SIZE);
    msg = PyMem_Calloc((size_t)n, sizeof *msg);
    iov = PyMem_Calloc((size_t)n * 2, sizeof *iov);
    outl = PyMem_Calloc((size_t)n, sizeof *outl);
    to = PyMem_Calloc((size_t)n, sizeof *to);
    rest = PyList_New(0);
    if (!ents || !text || !hdrs || !msg || !iov || !outl || !to) {
        PyErr_NoMemory();
        goto done;
    }
    if (!rest) goto done;
    memcpy(ents, (uint8_t *)vv.buf + WK_VERDICTS_HEAD, (size_t)n * WK_VERDICT_SIZE);
    memcpy(text, (uint8_t *)vv.buf + WK_VERDICTS_HEAD + (size_t)n * WK_VERDICT_SIZE, tbytes);
    const uint8_t *meta = mv.buf;
    size_t texts = 0;
    for (Py_ssize_t i = 0; i < n; i++) { /* the whole record first: a bad one sends nothing */
        uint32_t flen = wk_get32(ents + i * WK_VERDICT_SIZE + 4);
        const uint8_t *e = meta + i * WK_META_SIZE;
        uint64_t rel = wk_get32(e + WK_META_REL), len = wk_get32(e + WK_META_LEN);
        if (flen > WK_FAULT_MAX) {
            PyErr_Format(PyExc_ValueError, "a fault text of %u bytes", flen);
            goto done;
        }
        texts += flen;
        if (rel + len > (uint64_t)bv.len) {
            PyErr_SetString(PyExc_ValueError, "a capsule of the batch lies outside its record");
            goto done;
        }
    }
    if (texts != tbytes) {
        PyErr_Format(PyExc_ValueError, "fault texts of %zu bytes in a text area of %u", texts, tbytes);
        goto done;
    }
    unsigned long long steps = 0, fuel = 0, dropped = 0, forwarded = 0, lost = 0;
    int ns = 0;
    size_t tpos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *v = ents + i * WK_VERDICT_SIZE;
        int32_t verdict = (int32_t)wk_get32(v);
        uint32_t flen = wk_get32(v + 4);
        uint64_t st, fu;
        memcpy(&st, v + 8, 8);
        memcpy(&fu, v + 16, 8);
        steps = steps + st < steps ? ULLONG_MAX : steps + st;
        fuel = fuel + fu < fuel ? ULLONG_MAX : fuel + fu;
        const uint8_t *e = meta + i * WK_META_SIZE;
        uint32_t len = wk_get32(e + WK_META_LEN);
        uint8_t *body = (uint8_t *)bv.buf + wk_get32(e + WK_META_REL);
        if (!flen && verdict >= 0 && (verdict & PAN_WIRE_VERDICT_KIND_MASK) == WK_KIND_DROP) {
            worker_ran(self, e + WK_META_PREV, per_ns); /* the rest are charged by Node.finish */
            dropped++;
            continue;
        }
        uint8_t dest[ADDR_SIZE];
        int ol = flen ? -1 : worker_forward_link(self, body, len, verdict, dest);
        if (ol >= 0) {
            worker_ran(self, e + WK_META_PREV, per_ns);
            uint8_t *h = hdrs + (size_t)ns * HEADER_SIZE;
            memcpy(h, e, HEADER_SIZE);
            h[PAN_WIRE_HOP_LIMIT_OFFSET]--; /* this node's hop, in the byte sent */
            iov[2 * ns] = (struct iovec){h, HEADER_SIZE};
            iov[2 * ns + 1] = (struct iovec){body, len}; /* from the ring: no copy */
            struct msghdr *mh = &msg[ns].msg_hdr;
            to[ns] = self->links[ol].sa; /* a copy: another thread may replace the tables while the lock is dropped */
            mh->msg_name = &to[ns];
            mh->msg_namelen = self->links[ol].salen;
            mh->msg_iov = &iov[2 * ns];
            mh->msg_iovlen = 2;
            outl[ns++] = ol;
            continue;
        }
        PyObject *why = Py_None;
        if (flen) {
            why = PyBytes_FromStringAndSize((const char *)text + tpos, flen);
            tpos += flen;
            if (!why) goto done;
        } else {
            Py_INCREF(why);
        }
        PyObject *t = wk_rest_entry(i, verdict, why, e, body);
        if (!t) goto done;
        int bad = PyList_Append(rest, t);
        Py_DECREF(t);
        if (bad) goto done;
    }
    unsigned long long tables = self->tables; /* link counters only into the tables the indices are of */
    for (int m = 0; m < ns;) { /* the forwards, in order, in one sendmmsg (more when the kernel takes part) */
        int r;
        NL_SYSCALL(self->lock, r, sendmmsg(self->fd, &msg[m], (unsigned int)(ns - m), MSG_DONTWAIT));
        self->tx_calls++;
        if (r < 0) {
            if (errno == EINTR) continue;
            if (tables == self->tables) self->links[outl[m]].send_errors++; /* the node counts it: link_lost */
            lost++;
            m++;
            continue;
        }
        for (int k = m; k < m + r; k++) {
            unsigned long long b = msg[k].msg_len;
            if (tables == self->tables) {
                fp_link *ol = &self->links[outl[k]];
                ol->sent++;
                ol->sent_bytes += b;
                if (b > ol->largest_sent) ol->largest_sent = b;
            }
            self->sent++;
            forwarded++;
        }
        self->tx_datagrams += (unsigned long long)r;
        m += r;
    }
    out = Py_BuildValue("(iKKKKKO)", (int)(flags & 1), forwarded, dropped, lost, steps, fuel, rest);
done:
    Py_XDECREF(rest);
    PyMem_Free(ents);
    PyMem_Free(text);
    PyMem_Free(hdrs);
    PyMem_Free(msg);
    PyMem_Free(iov);
    PyMem_Free(outl);
    PyMem_Free(to);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&mv);
    PyBuffer_Release(&vv);
    return out;
}
