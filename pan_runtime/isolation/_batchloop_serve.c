/* BatchLoop.serve: a worker's whole serve cycle for plain batches, in C (included by _batchloop.c).
 *
 * The worker (pan_runtime/net/worker.py, Worker.serve) hands its loop to `serve` while no
 * record is held back. It reads the down ring's records itself (the frames and checks of
 * Ring.get, pan_runtime/isolation/ring.py: a head more than a ring ahead, a frame crossing the
 * end or running past what was written is a WorkerError; wrap frames are skipped), and runs
 * each BATCH through the batch entry (start, run). A batch whose every capsule finished in
 * C has its VERDICTS record written into the up ring here (Ring.reserve and commit: a wrap
 * frame when it would cross the end, the room checked against the node's tail, which is
 * refused when it is outside what was produced), the counters after the head
 * (Ring.put_counters: calls into the entry, capsules they ran, capsules run on Python)
 * before the head is published, the down ring released (tail = the read cursor: nothing is
 * held back while serve runs) and the node woken (its eventfd). With no record, the down
 * ring is released and the worker sleeps on its eventfd with the GIL released (a runtime
 * may have threads of its own); a worker the node gave CPUs of its own (`poll_ns`,
 * limits.worker_poll_us) first looks at the ring again for that long, so that a record
 * written meanwhile needs no wake-up (the node's eventfd write is then read at the next sleep).
 *
 * Anything else returns to Python, which continues exactly where this stopped: a record
 * that is not a BATCH; a batch whose run gave back a capsule (a fault, a claim, a capsule
 * for the Python path: run's tuple, the batch started and the loop past that capsule); a
 * batch that ran but whose verdicts do not fit the up ring now (the Python path then
 * raises the WorkerError of a full channel). The ring positions come in and go out: the
 * worker's Ring objects take them back (Ring.adopt). While a batch runs, its positions are
 * readable (`positions`): a capsule whose code reaches the worker's Python host is claimed,
 * and the worker syncs its rings then, before its host calls the node over them (the run
 * then returns: the worker's rings are ahead of what serve returns).
 *
 * The channel's layout (channel.py): the down ring at 0, the up ring after it, each a
 * 128-byte header (head, then the producer's counters; the tail at 64) and a power-of-two
 * data area; the view passed to BatchLoop is the whole channel.
 */

#include <errno.h>
#include <time.h>
#include <unistd.h>

#define RING_HEADER 128
#define RING_TAIL 64
/* consumer flags after the tail (0 unless the side follows the protocol): in the down ring, the
 * worker polls it (the node need not write its eventfd); in the up ring, the node spins for it
 * (the worker need not write the node's). Each side sets its flag, fences, and looks at the
 * ring again after clearing it; the other fences between publishing and reading the flag. */
#define RING_POLLING 72
#define KIND_WRAP 0u
#define KIND_BATCH 4u    /* protocol.Kind.BATCH */
#define KIND_VERDICTS 22 /* protocol.Kind.VERDICTS */

static PyObject *str_needs_reset; /* "needs_reset", interned at the module's start */

#if defined(__x86_64__) || defined(__i386__)
#define POLL_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define POLL_RELAX() __asm__ __volatile__("yield")
#else
#define POLL_RELAX() ((void)0)
#endif

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t load_u64(const uint8_t *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }
static void store_u64(uint8_t *p, uint64_t v) { __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); }

/* Write 1 to eventfd FD (-1 with OSError set); EINTR is retried once signals are handled. */
static int wake(int fd) {
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0) {
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) return -1;
    }
    return 0;
}

/* Sleep until eventfd FD is written, without the GIL (-1 with an error set). */
static int sleep_on(int fd) {
    uint64_t count;
    for (;;) {
        ssize_t r;
        Py_BEGIN_ALLOW_THREADS
        r = read(fd, &count, sizeof count);
        Py_END_ALLOW_THREADS
        if (r == (ssize_t)sizeof count) return 0;
        if (r >= 0) {
            PyErr_SetString(PyExc_OSError, "a short read from an eventfd");
            return -1;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

/* Write the finished batch's VERDICTS record into the up ring (at UP, SIZE bytes of data)
 * past *HEAD and publish it with the counters. 1: written; 0: no room now (nothing written);
 * -1 with an error set. */
static int put_verdicts(BatchLoop *self, uint8_t *up, uint64_t size, uint64_t *head, int needs_reset,
                        const uint64_t counters[3]) {
    uint64_t length = (uint64_t)verdicts_size(self);
    uint64_t need = 8 + ((length + 7) & ~7ull);
    if (need > size / 2) return 0; /* the Python path raises the WorkerError */
    uint64_t h = *head;
    uint64_t tail = load_u64(up + RING_TAIL);
    if (tail > h || h - tail > size) {
        worker_error("ring tail %llu is outside the produced range ..%llu", tail, h);
        return -1;
    }
    uint64_t pos = h % size;
    uint64_t pad = pos + need > size ? size - pos : 0;
    if (h + pad + need - tail > size) return 0;
    uint8_t *data = up + RING_HEADER;
    if (pad) {
        uint32_t frame[2] = {(uint32_t)(pad - 8), KIND_WRAP};
        memcpy(data + pos, frame, 8);
        h += pad;
        pos = 0;
    }
    uint32_t frame[2] = {(uint32_t)length, KIND_VERDICTS};
    memcpy(data + pos, frame, 8);
    write_verdicts(self, data + pos + 8, needs_reset);
    put_u64(up + 8, counters[0]);
    put_u64(up + 16, counters[1]);
    put_u64(up + 24, counters[2]);
    h += need;
    store_u64(up, h);
    *head = h;
    return 1;
}

PyDoc_STRVAR(serve_doc,
"serve(read, head, wake_down, wake_up, loaded, calls, ran, python_capsules[, poll_ns])\n"
"    -> (read, head, kind, at, length, got)\n\n"
"Serve the channel's records from the down ring's read cursor READ, the up ring's head HEAD\n"
"(the worker's Ring positions), sleeping on eventfd WAKE_DOWN and waking the node on WAKE_UP,\n"
"until a record needs Python (see the file's comment). LOADED is the code object\n"
"(its needs_reset goes with each batch's verdicts); CALLS and RAN are added to this loop's\n"
"counters and PYTHON_CAPSULES reported with them. POLL_NS: how long an empty ring is looked\n"
"at again before the loop sleeps (0: it sleeps at once). Returns the new positions and the record\n"
"for Python: its KIND and payload (AT, LENGTH bytes in the view); for a BATCH, started here,\n"
"GOT is what run() gave back, or None when every capsule has its result but the verdicts\n"
"did not fit the up ring.");

static PyObject *BatchLoop_serve(BatchLoop *self, PyObject *args) {
    unsigned long long read_at, head, calls, ran, py_capsules, poll_ns = 0;
    int wake_down, wake_up;
    PyObject *loaded;
    if (!PyArg_ParseTuple(args, "KKiiOKKK|K", &read_at, &head, &wake_down, &wake_up, &loaded, &calls, &ran, &py_capsules,
                          &poll_ns))
        return NULL;
    if (self->in_batch) {
        PyErr_SetString(PyExc_RuntimeError, "BatchLoop.serve during a run");
        return NULL;
    }
    uint64_t size = (uint64_t)(self->view.len / 2 - RING_HEADER);
    if (self->view.len % 2 || self->view.len / 2 <= RING_HEADER + 4096 - 1 || size & (size - 1)) {
        PyErr_SetString(PyExc_ValueError, "BatchLoop.serve: the view is not a channel of two rings");
        return NULL;
    }
    uint8_t *down = (uint8_t *)self->view.buf;
    uint8_t *up = down + RING_HEADER + size;
    uint8_t *data = down + RING_HEADER;
    uint64_t read = read_at;
    uint64_t up_head = head;
    int polled = 0; /* the ring was looked at again since the last record */
    for (;;) {
        uint64_t dhead = load_u64(down);
        if (read >= dhead) { /* nothing to read: give the node its ring back and sleep */
            store_u64(down + RING_TAIL, read);
            if (poll_ns && !polled) { /* on CPUs of its own: look again for a while first (no wake-up needed) */
                polled = 1;
                Py_BEGIN_ALLOW_THREADS /* the runtime's own threads run meanwhile */
                store_u64(down + RING_POLLING, 1);
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                uint64_t end = mono_ns() + poll_ns;
                for (unsigned i = 1; load_u64(down) <= read; i++) {
                    POLL_RELAX();
                    if ((i & 63) == 0 && mono_ns() >= end) break;
                }
                store_u64(down + RING_POLLING, 0); /* then the ring is read again before any sleep */
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                Py_END_ALLOW_THREADS
                continue;
            }
            polled = 0;
            if (sleep_on(wake_down) < 0) return NULL;
            continue;
        }
        polled = 0;
        if (dhead - read > size) {
            worker_error("ring head %llu is more than a ring ahead of the reader at %llu", dhead, read);
            return NULL;
        }
        uint64_t pos = read % size;
        if (pos + 8 > size) {
            worker_error("ring frame at %llu crosses the end (%llu)", pos, size);
            return NULL;
        }
        uint32_t frame[2];
        memcpy(frame, data + pos, 8);
        uint64_t need = 8 + (((uint64_t)frame[0] + 7) & ~7ull);
        if (pos + need > size || read + need > dhead) {
            worker_error("ring frame of %llu bytes at %llu runs past what was written", frame[0], pos);
            return NULL;
        }
        read += need;
        if (frame[1] == KIND_WRAP) continue;
        Py_ssize_t at = (Py_ssize_t)(RING_HEADER + pos + 8), length = (Py_ssize_t)frame[0];
        if (frame[1] != KIND_BATCH)
            return Py_BuildValue("(KKInnO)", (unsigned long long)read, (unsigned long long)up_head, frame[1], at, length,
                                 Py_None);
        if (start_batch(self, at, length) < 0) return NULL;
        self->serve_read = read;
        self->serve_head = up_head;
        self->serving = 1;
        PyObject *got = run_batch(self);
        self->serving = 0;
        if (!got) return NULL;
        if (got != Py_None)
            return Py_BuildValue("(KKInnN)", (unsigned long long)read, (unsigned long long)up_head, frame[1], at, length,
                                 got);
        Py_DECREF(got);
        PyObject *flag = PyObject_GetAttr(loaded, str_needs_reset);
        if (!flag) return NULL;
        int needs_reset = PyObject_IsTrue(flag);
        Py_DECREF(flag);
        if (needs_reset < 0) return NULL;
        store_u64(down + RING_TAIL, read); /* the bodies are no longer needed */
        uint64_t counters[3] = {calls + self->fast_calls, ran + self->fast_capsules, py_capsules};
        int put = put_verdicts(self, up, size, &up_head, needs_reset, counters);
        if (put < 0) return NULL;
        if (put == 0)
            return Py_BuildValue("(KKInnO)", (unsigned long long)read, (unsigned long long)up_head, frame[1], at, length,
                                 Py_None);
        __atomic_thread_fence(__ATOMIC_SEQ_CST); /* the verdicts published before the node's flag is read */
        if (!load_u64(up + RING_POLLING) && wake(wake_up) < 0) return NULL; /* a spinning node sees them itself */
    }
}
