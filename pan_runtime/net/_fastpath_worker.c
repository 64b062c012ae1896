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

/* Hand the COUNT capsules at rslot[FIRST ...] (neighbour LI, code object CI, which runs in a
 * worker) to the worker as one batch, or, when the node does not admit it, each to the
 * node's Python as before. Returns how many were handled (the rest are looked at again), or
 * -1 on a Python error (the slots not handled stay in rslot: handle_batch counts them lost). */
static int to_worker(FastPath *self, int first, int count, int li, int ci, int *called) {
    fp_code *code = &self->codes[ci];
    fp_link *in = &self->links[li];
    size_t total = 8 + (((size_t)count * WK_CAP_SIZE + 7) & ~(size_t)7);
    PyObject *meta = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * WK_META_SIZE);
    if (!meta) return -1;
    uint8_t *m = (uint8_t *)PyBytes_AS_STRING(meta);
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
    flush_sends(self); /* what this receive forwarded before these leaves first */
    int called_before = *called;
    *called = 1;
    self->crossings++;
    unsigned long long tables = self->tables;
    int held = self->held;
    PyObject *r = PyObject_CallFunction(code->admit, "inOO", count, (Py_ssize_t)total, meta, self->owner);
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
    uint8_t *p = pb.buf;
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
        PyObject *dgram = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)HEADER_SIZE + len);
        if (!dgram) {
            Py_DECREF(why);
            goto done;
        }
        memcpy(PyBytes_AS_STRING(dgram), e, HEADER_SIZE);
        memcpy(PyBytes_AS_STRING(dgram) + HEADER_SIZE, body, len);
        PyObject *t = Py_BuildValue("(niNNy#)", i, (int)verdict, why, dgram, (const char *)e + WK_META_PREV,
                                    (Py_ssize_t)ADDR_SIZE);
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
