/* The wait's io_uring (included by _fastpath.c): a visit's last sends and the next wait in
 * one system call.
 *
 * When the last ready socket of a wake-up was read and its forwards are queued, nothing else
 * would run before the wait's next epoll_wait: flush_sends' sendmmsg and that epoll_wait go
 * as one io_uring_enter instead, the forwards as IORING_OP_SENDMSG entries (the messages
 * build_sends makes, GSO ones included, MSG_DONTWAIT so the kernel sends at once or refuses,
 * never parks one) followed by an IORING_OP_EPOLL_WAIT on the wait's epoll descriptor. The
 * sends leave when the visit ends, as before, in the call that then waits. Every completion
 * is reaped before the wait goes on (the slots and messages stay the FastPath's until then)
 * and counted through send_done, as flush_sends counts; a GSO message the kernel refused is
 * sent again without through flush_sends. An epoll entry the timeout or a signal left
 * pending is cancelled, and the events it may still have taken are served.
 *
 * One ring per thread (each fast-path thread waits on its own epoll descriptor), set up the
 * first time that thread's wait wants it and closed when the thread ends. No liburing: the
 * three system calls and the ring layout are the kernel's stable uapi. Where the kernel has
 * no io_uring, refuses it (kernel.io_uring_disabled) or lacks the operations (EPOLL_WAIT came
 * with Linux 6.15), `uring_probe` says why once and the wait keeps epoll_wait + sendmmsg.
 */
#include <linux/io_uring.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* IORING_OP_EPOLL_WAIT (Linux 6.15; after IORING_OP_RECV_ZC in enum io_uring_op): newer than
 * some uapi headers, so named here; the probe confirms the kernel's number means it */
#define FP_OP_EPOLL_WAIT 59
#define URING_ENTRIES 1024                  /* submission entries (completions: twice that) */
#define URING_TAG_EPOLL (~0ULL)             /* user_data of the epoll entry */
#define URING_TAG_CANCEL (~0ULL - 1)        /* of its cancellation; a send's is its message */
#define URING_PENDING INT_MIN               /* a send's result before its completion came */
#define URING_GIVE_UP 1000                  /* io_uring_enter failures in a row that end the ring */

typedef struct fp_ring {
    int fd;            /* the ring, or -1 */
    unsigned forks;    /* g_forks when made (a forked child makes its own) */
    unsigned sq_entries;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_len, cq_len, sqes_len;
    /* the sends in flight (reaped, and counted, under the GIL: by the waiting thread once its
     * call returns, or by `take_counters` meanwhile, see ring_settle) */
    FastPath *fp;      /* whose sends they are, or NULL */
    int nm, np;        /* messages, forwards */
    int sends_left;    /* send completions not reaped yet */
    int counted;       /* send_done ran for them */
    int epoll, got;    /* the epoll entry's result, and whether it came */
    unsigned inflight; /* entries the kernel owes a completion */
    int broken;        /* io_uring_enter kept failing: the thread waits the old way from now on */
    int res[URING_ENTRIES]; /* each submitted send's result, by message (URING_PENDING: none yet) */
    /* where the epoll entry writes its events: the ring's own memory, so that nothing the
     * kernel may still write into belongs to a caller's frame (copied out once it completed) */
    struct epoll_event evs[WAIT_EVENTS];
} fp_ring;

static __thread fp_ring *g_ring;     /* this thread's ring, once set up */
static pthread_key_t g_ring_key;     /* closes a thread's ring when the thread ends */
static pthread_once_t g_ring_once = PTHREAD_ONCE_INIT;
static int g_ring_key_ok;
static unsigned g_forks = 1;        /* bumped in a forked child: its rings are its parent's */
static int g_uring_checked;          /* the process-wide probe ran: g_uring_why says */
static char g_uring_why[200];        /* why io_uring cannot serve the wait ("": it can) */
static __thread int g_uring_signal;  /* a signal came during a wait whose events are served first */

static inline int sys_uring_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static inline int sys_uring_enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg, size_t sz) {
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, sz);
}

static void ring_free(fp_ring *r) {
    if (!r) return;
    if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_len);
    if (r->sq_map && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_len);
    if (r->fd >= 0) close(r->fd);
    free(r);
}

static void ring_key_free(void *p) { ring_free((fp_ring *)p); }

static void ring_forked(void) { g_forks++; }

static void ring_key_make(void) {
    g_ring_key_ok = pthread_key_create(&g_ring_key, ring_key_free) == 0 && pthread_atfork(NULL, NULL, ring_forked) == 0;
}

/* A new ring, or NULL with WHY (WHYLEN bytes) saying what the kernel refused. */
static fp_ring *ring_new(char *why, size_t whylen) {
    fp_ring *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(why, whylen, "no memory for the ring");
        return NULL;
    }
    r->fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    r->fd = sys_uring_setup(URING_ENTRIES, &p);
    if (r->fd < 0 && errno == EINVAL) { /* a kernel before 6.1: no deferred task work */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_SUBMIT_ALL;
        r->fd = sys_uring_setup(URING_ENTRIES, &p);
    }
    if (r->fd < 0) {
        int err = errno;
        snprintf(why, whylen, "io_uring_setup failed: %s%s", strerror(err),
                 err == EPERM ? " (kernel.io_uring_disabled?)" : "");
        goto fail;
    }
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) {
        snprintf(why, whylen, "the kernel's io_uring has no timed wait (IORING_FEAT_EXT_ARG)");
        goto fail;
    }
    struct {
        struct io_uring_probe h;
        struct io_uring_probe_op ops[256];
    } probe;
    memset(&probe, 0, sizeof probe);
    if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_PROBE, &probe, 256) < 0) {
        snprintf(why, whylen, "io_uring probe failed: %s", strerror(errno));
        goto fail;
    }
    static const struct {
        int op;
        const char *name;
    } need[] = {{IORING_OP_SENDMSG, "SENDMSG"}, {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
                {FP_OP_EPOLL_WAIT, "EPOLL_WAIT (Linux 6.15)"}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        int op = need[i].op;
        if (op > probe.h.last_op || !(probe.ops[op].flags & IO_URING_OP_SUPPORTED)) {
            snprintf(why, whylen, "the kernel's io_uring lacks IORING_OP_%s", need[i].name);
            goto fail;
        }
    }
    r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_len > r->sq_len) r->sq_len = r->cq_len;
        r->cq_len = r->sq_len;
    }
    r->sq_map = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) goto fail_map;
    if (p.features & IORING_FEAT_SINGLE_MMAP) r->cq_map = r->sq_map;
    else {
        r->cq_map = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                         IORING_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) goto fail_map;
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) goto fail_map;
    uint8_t *sq = r->sq_map, *cq = r->cq_map;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sq_entries = p.sq_entries;
    r->forks = g_forks;
    return r;
fail_map:
    snprintf(why, whylen, "mapping the io_uring failed: %s", strerror(errno));
fail:
    ring_free(r);
    return NULL;
}

PyDoc_STRVAR(uring_probe_doc,
"uring_probe() -> str or None\n\n"
"None when io_uring can carry the wait's last sends and its epoll wait (io_uring_setup works,\n"
"the probe names SENDMSG, ASYNC_CANCEL and EPOLL_WAIT), else why not. Probed once per process.");

static PyObject *fp_uring_probe(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    if (!g_uring_checked) {
        fp_ring *r = ring_new(g_uring_why, sizeof g_uring_why);
        if (r) g_uring_why[0] = '\0';
        ring_free(r);
        g_uring_checked = 1;
    }
    if (!g_uring_why[0]) Py_RETURN_NONE;
    return PyUnicode_FromString(g_uring_why);
}

/* This thread's ring, set up on first use; NULL where there is none (then the wait uses
 * epoll_wait and sendmmsg). */
static fp_ring *ring_here(void) {
    fp_ring *r = g_ring;
    if (r && r->forks == g_forks) return r->broken ? NULL : r; /* no getpid(): a system call of its own */
    if (r) { /* a forked child's copy of its parent's ring: not its own */
        g_ring = NULL;
        if (g_ring_key_ok) pthread_setspecific(g_ring_key, NULL);
        ring_free(r);
    }
    if (!g_uring_checked) { /* the process-wide answer first (uring_probe) */
        PyObject *why = fp_uring_probe(NULL, NULL);
        if (!why) PyErr_Clear();
        Py_XDECREF(why);
    }
    static __thread unsigned tried; /* g_forks when this thread tried and failed */
    if (g_uring_why[0] || tried == g_forks) return NULL;
    pthread_once(&g_ring_once, ring_key_make);
    tried = g_forks;
    char why[200];
    r = ring_new(why, sizeof why);
    if (!r) return NULL;
    if (!g_ring_key_ok || pthread_setspecific(g_ring_key, r) != 0) {
        ring_free(r);
        return NULL;
    }
    g_ring = r;
    tried = 0;
    return r;
}

static inline struct io_uring_sqe *ring_sqe(fp_ring *r, unsigned *tail) {
    unsigned idx = *tail & *r->sq_mask;
    struct io_uring_sqe *e = &r->sqes[idx];
    memset(e, 0, sizeof *e);
    r->sq_array[idx] = idx;
    (*tail)++;
    return e;
}

/* The sends whose completion has not been seen yet. */
static int ring_sends_left(const fp_ring *r) {
    int left = 0;
    for (int m = 0; m < r->nm; m++) left += r->res[m] == URING_PENDING;
    return left;
}

/* Reap every completion there is (the waiting thread, once its call returned): a send's
 * result into res[m], the epoll entry's into epoll (got set). */
static void ring_reap(fp_ring *r) {
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    while (head != tail) {
        struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
        if (c->user_data == URING_TAG_EPOLL) r->epoll = c->res, r->got = 1;
        else if (c->user_data < URING_ENTRIES) r->res[c->user_data] = c->res;
        head++;
        r->inflight--;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    r->sends_left = ring_sends_left(r);
}

/* The sends' results among the completions there are, read without consuming them: another
 * thread (reading the counters) may not move the completion queue's head while the waiting
 * thread is inside io_uring_enter, whose wait counts completions from where the head was.
 * The waiting thread reaps the same ones later (the same results). */
static void ring_peek(fp_ring *r) {
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
        struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
        if (c->user_data < URING_ENTRIES) r->res[c->user_data] = c->res;
    }
    r->sends_left = ring_sends_left(r);
}

/* Count the ring's sends once all have completed, in their order, as flush_sends counts them.
 * The entries are linked (each goes after the one before, and one the kernel refused cancels
 * the rest), so what follows a failure was not sent: from a GSO message the kernel refused
 * (its forwards go again, without GSO or smaller), or after another failure (counted as
 * sendmmsg's), the rest goes through flush_sends, still in order. With !RESEND (a read of
 * the counters from another thread, which sends nothing) such a flush waits for the waiting
 * thread. Returns 1 once counted. */
static int ring_count(fp_ring *r, int resend) {
    FastPath *fp = r->fp;
    if (!fp || r->counted || r->sends_left) return r->counted;
    int from = -1;
    for (int m = 0; m < r->nm && from < 0; m++) {
        int res = r->res[m];
        if (res == -ECANCELED || res == URING_PENDING || (res < 0 && fp->gcount[m] > 1 && gso_refusal(-res))) from = m;
    }
    if (from >= 0 && !resend) return 0;
    for (int m = 0; m < r->nm; m++) {
        int res = r->res[m];
        if (m == from) {
            if (res != -ECANCELED && res != URING_PENDING) send_done(fp, m, -res); /* the GSO refusal, counted */
            break;
        }
        send_done(fp, m, res < 0 ? -res : 0);
    }
    if (from >= 0) {
        int again = 0;
        for (int j = fp->gfirst[from]; j < r->np; j++, again++) {
            fp->pend[again] = fp->pend[j];
            fp->siov[again] = fp->siov[j];
        }
        fp->npend = again;
        flush_sends(fp);
    }
    r->counted = 1;
    return 1;
}

/* For `take_counters` while FP's thread waits in the ring: its sends that completed (they do
 * at once, MSG_DONTWAIT) are counted now, not when the wait ends. Under the GIL, as the
 * waiting thread's own reaping is. */
static void ring_settle(FastPath *fp) {
    fp_ring *r = fp->ring_out;
    if (!r || r->fp != fp) return;
    ring_peek(r);
    ring_count(r, 0);
}

/* FP's queued forwards and an epoll_wait on EPFD (into EVS, MAXEV of them, MS milliseconds,
 * -1: no limit) in one io_uring_enter; LOCK (the wait's) and the GIL are dropped while it
 * blocks. Every send is counted (send_done) before this returns. Returns the epoll_wait's
 * answer (events, 0 at the timeout, -1 with errno EINTR for a signal or the epoll error), or
 * -2 when the ring cannot take them (nothing was submitted: the caller flushes and waits its
 * own way). */
static int uring_wait(FastPath *fp, int epfd, struct epoll_event *evs, int maxev, int ms, NodeLock *lock,
                      unsigned long me) {
    fp_ring *r = ring_here();
    if (!r || fp->npend + 2 > (int)r->sq_entries) return -2;
    int np = fp->npend;
    int nm = build_sends(fp, 0, np);
    unsigned tail = *r->sq_tail;
    for (int m = 0; m < nm; m++) {
        struct io_uring_sqe *e = ring_sqe(r, &tail);
        e->opcode = IORING_OP_SENDMSG;
        e->fd = fp->fd;
        e->addr = (uint64_t)(uintptr_t)&fp->smsg[m].msg_hdr;
        e->len = 1;
        e->msg_flags = MSG_DONTWAIT;
        if (m < nm - 1) e->flags = IOSQE_IO_LINK; /* in order: a failed one cancels the rest */
        e->user_data = (uint64_t)m;
        r->res[m] = URING_PENDING; /* until its completion says */
    }
    struct io_uring_sqe *e = ring_sqe(r, &tail);
    e->opcode = FP_OP_EPOLL_WAIT;
    e->fd = epfd;
    e->addr = (uint64_t)(uintptr_t)r->evs;
    e->len = (uint32_t)(maxev < WAIT_EVENTS ? maxev : WAIT_EVENTS);
    e->user_data = URING_TAG_EPOLL;
    __atomic_store_n(r->sq_tail, tail, __ATOMIC_RELEASE);
    unsigned submit = (unsigned)nm + 1;
    r->nm = nm, r->np = np, r->sends_left = nm, r->counted = 0, r->got = 0, r->epoll = 0;
    r->inflight = submit;
    r->fp = fp; /* a read of its counters meanwhile may count the sends (ring_settle) */
    fp->ring_out = r;
    fp->uring_sends += (unsigned long long)nm;
    fp->npend = 0;
    struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long long)(ms % 1000) * 1000000};
    struct io_uring_getevents_arg arg = {.sigmask = 0, .sigmask_sz = 0, .pad = 0, .ts = (uint64_t)(uintptr_t)&ts};
    int cancelled = 0, signalled = 0, first = 1, failures = 0;
    while (r->inflight) {
        int rc, err;
        unsigned flags = IORING_ENTER_GETEVENTS, want = r->inflight;
        void *argp = NULL;
        size_t argsz = 0;
        if (ms >= 0 && !cancelled) flags |= IORING_ENTER_EXT_ARG, argp = &arg, argsz = sizeof arg;
        if (cancelled) want = 1; /* what is left comes at once (the cancel's answer, or events) */
        fp->uring_enters++;
        Py_BEGIN_ALLOW_THREADS
        int dropped = nl_drop(lock);
        rc = sys_uring_enter(r->fd, submit, want, flags, argp, argsz);
        err = errno;
        nl_retake(lock, dropped, me);
        Py_END_ALLOW_THREADS
        /* what the kernel took of the entries (all, with SUBMIT_ALL, unless the call failed
         * before it looked at them); the rest goes with the next call */
        unsigned left = tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
        if (first) {
            first = 0;
            if (left == submit) { /* it took none: nothing is the kernel's, send the old way */
                __atomic_store_n(r->sq_tail, tail - submit, __ATOMIC_RELEASE);
                fp->uring_enters--;
                fp->uring_sends -= (unsigned long long)nm;
                fp->npend = np;
                r->inflight = 0;
                r->fp = NULL;
                fp->ring_out = NULL;
                return -2;
            }
        }
        submit = left;
        ring_reap(r);
        if (!r->inflight) break;
        if (rc < 0 && err == EINTR) signalled = 1;
        failures = rc < 0 && err != EINTR && err != ETIME ? failures + 1 : 0;
        if (failures >= URING_GIVE_UP) {
            /* the kernel refuses every call: this thread waits with epoll_wait from now on. The
             * ring is kept (never freed: the kernel may still hold entries, which write only
             * into its memory); sends not completed are counted lost, the wait ends empty */
            r->broken = 1;
            for (int m = 0; m < r->nm; m++)
                if (r->res[m] == URING_PENDING) r->res[m] = -err;
            r->sends_left = 0;
            r->got = 0;
            break;
        }
        if (!r->got && !cancelled && !left && (rc < 0 || ms >= 0)) {
            /* the timeout passed, or a signal came, with the epoll entry pending: cancel it
             * (it may still complete with events first: those are served) */
            unsigned t = *r->sq_tail;
            struct io_uring_sqe *c = ring_sqe(r, &t);
            c->opcode = IORING_OP_ASYNC_CANCEL;
            c->fd = -1;
            c->addr = URING_TAG_EPOLL;
            c->user_data = URING_TAG_CANCEL;
            __atomic_store_n(r->sq_tail, t, __ATOMIC_RELEASE);
            tail = t;
            submit = 1;
            r->inflight++;
            cancelled = 1;
        }
    }
    ring_count(r, 1);
    r->fp = NULL;
    fp->ring_out = NULL;
    int got = r->got, epoll = r->epoll;
    if (got && epoll < 0 && epoll != -ECANCELED) {
        errno = -epoll;
        return -1;
    }
    if (got && epoll > 0) { /* events it took are served, then the signal is looked at */
        memcpy(evs, r->evs, (size_t)epoll * sizeof *evs);
        g_uring_signal = signalled;
        return epoll;
    }
    if (signalled) {
        errno = EINTR;
        return -1;
    }
    return 0;
}
