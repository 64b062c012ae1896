/* pan_runtime.net._fastpath: the compiled per-capsule path of a UDP netlink.
 *
 * One FastPath serves one UDP socket of a node. `burst` reads datagrams into the pool slots
 * Python lent it and, for the common case, finishes each one in C: neighbour check, header
 * check, code lookup by name, one call into the code object's C entry (see
 * include/pan_fast.h), route lookup, MTU check, hop limit, send. System calls come in
 * batches: one recvmmsg reads what the socket holds (up to rx_batch, MSG_DONTWAIT: it never
 * waits for a batch to fill, so a lone capsule goes on at once) and the forwards that batch
 * made leave in one sendmmsg at its end, or before any call into Python, so capsules leave
 * in the order they came. A datagram or verdict this file does not finish goes to Python,
 * which owns every rule of the node, in ONE call:
 *
 *   on_slow(slot, n, msg_flags, (host, port))          before a run: unknown peer, truncated
 *                                                      or malformed datagram, system or
 *                                                      unknown code, queue not empty, ...
 *   on_handover(code, link, slot, n, result, dt_ns)    after a run (any verdict but a plain
 *                                                      forward, a failed send, a fault: result
 *                                                      is the verdict or the exception), or
 *                                                      instead of one (result None: a runtime
 *                                                      with no C entry; Python runs it); slot
 *                                                      -1: the code reached the host during
 *                                                      the run and `inflight()` handed the
 *                                                      capsule over already
 *
 * Both take the datagram's slot and return (slot, held): a fresh slot lent in its place (-1:
 * none; the burst stops when none is left) and whether the node's queue holds capsules
 * (then every datagram goes to on_slow, so capsules keep their arrival order). No other Python object is touched per
 * capsule; `crossings` counts these calls (and `inflight()` claims) so tests can hold the
 * number down.
 *
 * The hop limit: the node takes one hop from every capsule it parses (Node.hand_over does
 * for what this file hands over, untouched); this file takes it only from the capsules it
 * sends itself, in the byte it sends. Either way exactly one per node.
 *
 * `wait` is the event loop's epoll_wait: readable fast sockets are read here and the wait
 * goes on while every capsule was finished in C, so a forwarding node runs no Python at all
 * between wake-ups; other ready descriptors, or any Python callback, end the wait.
 *
 * Fair share (pan_runtime/net/fairshare.py has the rule and its Python copy): a FastPath
 * reads its node socket and the sockets of its neighbours that have one of their own (each
 * link's `rfd`); every such source has a virtual time, the ns the node spent on its
 * datagrams (read, run, send, hand-over). A visit serves a readable source until it is
 * `quantum` ahead of the least-served busy source (or of itself), its socket is empty or
 * `limit` datagrams were read; a source that turns busy again starts at the clock. A
 * datagram of a throttled neighbour (the ledger's, copied in `configure`) is dropped here
 * and counted per link; a run longer than the time budget is handed to Python even when it
 * forwards, so the node's ledger charges it.
 * The tables (neighbours, routes, code entries) are copies the node's snapshot fills with
 * `configure`; configure refuses while a run is in flight, so the table pointers a run
 * holds stay valid across the Python it may call. Counters of capsules finished here are
 * kept in C until `take_counters` moves them to the node's statistics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "pan_fast.h"
#include "pan_wire.h"
#include "pan_nodelock.h"

#define HEADER_SIZE PAN_WIRE_HEADER_SIZE
#define NAME_SIZE PAN_WIRE_NAME_SIZE
#define ADDR_SIZE PAN_WIRE_ADDRESS_SIZE
#define RX_BATCH_MAX 1024 /* the most datagrams one recvmmsg reads (limits.rx_batch's ceiling) */
#define ALONE_QUANTA 20   /* how many quanta a visit may run while no other source waits */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103   /* linux/udp.h: the segment size of a UDP GSO send */
#endif
#define GSO_SEGMENTS 64   /* the most segments one GSO send carries (the kernel's UDP_MAX_SEGMENTS is 64 or more) */
#define GSO_BYTES 65000   /* the most bytes one carries (a UDP payload under 64 KiB with any IP header) */
#define GSO_REFUSALS 3    /* refusals (for a segment size) after which GSO is off for this socket */

typedef struct {
    uint8_t name[NAME_SIZE];
    pan_fast_run_fn run;
    pan_fast_batch_fn batch; /* the runtime's batch entry (same state), or NULL: run one by one */
    void *state;
    PyObject *lean; /* the runtime's fast_accept(body, prev_hop) when it has no C entry, or NULL */
    PyObject *admit; /* a code object in a worker process: the node's admit(n, total, meta, owner)
                      * for a batch C writes into its ring (_fastpath_worker.c), or NULL */
    unsigned long long in, forwarded, time_ns, max_ns;
    unsigned long long lost; /* forwards the kernel refused to send (dropped as link_lost) */
} fp_code;

/* A receive source's fair share: the service it had and whether it waits with datagrams. */
typedef struct {
    long long vtime; /* ns the node spent on its datagrams (from the clock when it turned busy) */
    int busy;        /* readable and left for later at the end of its last visit */
} fp_share;

typedef struct {
    struct sockaddr_storage sa;
    socklen_t salen;
    uint8_t address[ADDR_SIZE];
    PyObject *address_obj; /* the same 16 bytes, for fast_accept */
    Py_ssize_t mtu;
    int rfd;               /* the neighbour's own receive socket, or -1 (it uses the node's) */
    fp_share share;        /* of rfd */
    unsigned long long throttle_until; /* now_ns() before which its datagrams are dropped */
    unsigned long long received, received_bytes, sent, sent_bytes, largest_sent;
    unsigned long long throttled, runs, run_ns; /* dropped while throttled; runs finished here */
    unsigned long long send_errors; /* sends toward it the kernel refused */
} fp_link;

typedef struct {
    uint8_t dest[ADDR_SIZE];
    int link;
} fp_route;

/* A forward waiting for the burst's sendmmsg: what to count once it is sent, and what to
 * hand over when it is not. */
typedef struct {
    int slot, n, code, in, out;
    int32_t verdict;
    unsigned long long dt;
} fp_pending;

typedef struct {
    PyObject_HEAD
    int fd;
    uint8_t *base;          /* the pool's first byte */
    Py_ssize_t slot_size;
    Py_ssize_t slot_count;
    int held;               /* the node's queue holds capsules: leave every datagram to it */
    int pool_low;           /* the node's pool is below its reserve: no batch goes to a worker in C */
    PyObject *pool;         /* kept alive while the FastPath may write into it */
    PyObject *on_slow;
    PyObject *on_handover;
    PyObject *owner;        /* what `inflight()` returns during a run */
    pan_fast_ctx ctx;
    uint8_t self_addr[ADDR_SIZE];
    fp_code *codes;
    int ncodes;
    fp_link *links;
    int nlinks;
    fp_route *routes;
    int nroutes;
    int default_link;
    int copy_on_send;
    uint8_t *copybuf;
    /* receive and send batches (rx_batch entries each): the slots lent for reading, the
     * recvmmsg vector, and the forwards waiting for the burst's sendmmsg */
    int rx_batch;
    int *lent;
    int nlent;
    struct mmsghdr *rmsg;
    struct iovec *riov;
    struct sockaddr_storage *rsrc;
    int *rslot;
    struct mmsghdr *smsg;
    struct iovec *siov;
    fp_pending *pend;
    int npend;
    uint8_t **bbodies;      /* a batch run's bodies, lengths and verdicts */
    uintptr_t *blens;
    int32_t *bverd;
    pan_fast_batch *in_batch; /* the batch being run (the capsules of rslot[in_first ...]), or NULL */
    int in_first;
    int finishing;          /* results of a batch run are being finished: the tables stay */
    int in_batch_last;      /* the capsule being finished is the last its batch ran */
    int stale;              /* set by Python while finishing: the node's tables moved, refresh after */
    unsigned long long est_ns; /* the recent cost of one datagram: how many a visit reads at once */
    int peak;               /* the most datagrams one receive returned since the last reclaim */
    int starved;            /* a receive filled every slot lent (and more could be): lend more */
    int hold_sends;         /* forwards wait for the visit's next receive (sent at its end, or
                             * before any Python, or when the send batch is full) */
    /* system calls made and datagrams they moved (never zeroed): syscalls per capsule */
    unsigned long long rx_calls, rx_datagrams, tx_calls, tx_datagrams, peeks;
    unsigned long long batch_calls, batched; /* calls into a runtime's batch entry, capsules they ran */
    unsigned long long n_lost; /* read, then lost to a Python error mid-batch or a failed send after a reconfigure */
    /* UDP GSO (UDP_SEGMENT): forwards of a send batch toward one next hop with one size go
     * as one message the kernel cuts into datagrams (see build_sends) */
    int gso;                /* on (the node's limits.udp_gso, until the kernel refuses it for good) */
    int gso_max;            /* the largest segment size a GSO send may have (lowered by EINVAL) */
    int *gfirst, *gcount;   /* message m of a flush: pend[gfirst[m] ...], gcount[m] of them */
    uint8_t *gctl;          /* message m's control buffer (the UDP_SEGMENT cmsg) */
    unsigned long long gso_sends, gso_datagrams, gso_refused;
    /* io_uring (_fastpath_uring.c): a visit's last forwards and the wait's next epoll wait in
     * one io_uring_enter */
    int uring;              /* wanted (the node's limits.io_uring), where this thread has a ring */
    int defer_sends;        /* set by `wait` for a visit whose forwards may wait for that call */
    unsigned long long uring_enters, uring_sends; /* io_uring_enter calls, SENDMSG entries they carried */
    struct fp_ring *ring_out; /* the ring its sends are in flight in (while `wait` waits there), or NULL */
    fp_share shared;        /* of fd, the node's socket */
    long long clock;        /* the virtual clock: least service of a busy source at the last visit */
    long long quantum_ns;
    unsigned long long budget_ns; /* a run longer than this is handed over (the ledger charges it) */
    unsigned long long tables;    /* bumped by configure: pointers into the old tables are stale */
    unsigned long long received, sent;
    /* how capsules went: finished in C, run in Python, handed over after a C run, slow,
     * dropped here (a throttled neighbour's) */
    unsigned long long n_finished, n_python_runs, n_handed_over, n_slow, n_dropped;
    unsigned long long n_to_worker; /* written by C into a worker's ring (_fastpath_worker.c) */
    /* calls between C and Python made for capsules (callbacks, inflight claims) */
    unsigned long long crossings;
    /* the capsule being run: in_run while the code runs; in_slot -1 once Python claimed it */
    int in_run, in_slot, in_n, in_link, in_code;
    NodeLock *lock;         /* the node's lock when it has several fast-path threads, or NULL:
                             * dropped with the GIL around recvmmsg and sendmmsg (include/pan_nodelock.h) */
} FastPath;

static __thread FastPath *g_inflight; /* the FastPath running a capsule on this thread, if any */
static PyObject *str_release;
static PyObject *str_refresh;
static __thread unsigned long long g_waits; /* epoll_wait calls `wait` made on this thread */
/* the monotonic ns by which a worker's batch handed over during this `wait` needs the loop to
 * look at it (its budget, its demotion), 0: none; the wait goes on until then (admit) */
static __thread unsigned long long g_due_ns;

static inline unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* (host, port) -> sockaddr; the family follows the host text. */
static int to_sockaddr(PyObject *ep, struct sockaddr_storage *sa, socklen_t *len) {
    const char *host;
    int port;
    if (!PyArg_ParseTuple(ep, "si", &host, &port)) return -1;
    memset(sa, 0, sizeof *sa);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) goto bad;
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) goto bad;
        *len = sizeof *s4;
    }
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "not a numeric IP address: %s", host);
    return -1;
}

static PyObject *from_sockaddr(const struct sockaddr_storage *sa) {
    char text[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof text);
        return Py_BuildValue("(siII)", text, ntohs(s6->sin6_port), ntohl(s6->sin6_flowinfo), s6->sin6_scope_id);
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, text, sizeof text);
    return Py_BuildValue("(si)", text, ntohs(s4->sin_port));
}

static int same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static int find_link(FastPath *self, const struct sockaddr_storage *src) {
    for (int i = 0; i < self->nlinks; i++) {
        if (same_peer(&self->links[i].sa, src)) return i;
    }
    return -1;
}

static int find_code(FastPath *self, const uint8_t *name) {
    for (int i = 0; i < self->ncodes; i++) {
        if (memcmp(self->codes[i].name, name, NAME_SIZE) == 0) return i;
    }
    return -1;
}

static int find_route(FastPath *self, const uint8_t *dest) {
    for (int i = 0; i < self->nroutes; i++) {
        if (memcmp(self->routes[i].dest, dest, ADDR_SIZE) == 0) return self->routes[i].link;
    }
    return self->default_link;
}

static void free_tables(fp_link *l, int nl, fp_code *c, int nc) {
    for (int i = 0; l && i < nl; i++) Py_XDECREF(l[i].address_obj);
    for (int i = 0; c && i < nc; i++) { Py_XDECREF(c[i].lean); Py_XDECREF(c[i].admit); }
    PyMem_Free(l);
    PyMem_Free(c);
}

/* ---------------------------------------------------------------- the type */

/* The batch arrays, rx_batch entries each (all NULL, or all set). */
static void free_batches(FastPath *self) {
    PyMem_Free(self->lent), self->lent = NULL;
    PyMem_Free(self->rmsg), self->rmsg = NULL;
    PyMem_Free(self->riov), self->riov = NULL;
    PyMem_Free(self->rsrc), self->rsrc = NULL;
    PyMem_Free(self->rslot), self->rslot = NULL;
    PyMem_Free(self->smsg), self->smsg = NULL;
    PyMem_Free(self->siov), self->siov = NULL;
    PyMem_Free(self->pend), self->pend = NULL;
    PyMem_Free(self->bbodies), self->bbodies = NULL;
    PyMem_Free(self->blens), self->blens = NULL;
    PyMem_Free(self->bverd), self->bverd = NULL;
    PyMem_Free(self->copybuf), self->copybuf = NULL;
    PyMem_Free(self->gfirst), self->gfirst = NULL;
    PyMem_Free(self->gcount), self->gcount = NULL;
    PyMem_Free(self->gctl), self->gctl = NULL;
    self->rx_batch = 0;
}

static int alloc_batches(FastPath *self, int b) {
    size_t n = (size_t)b;
    self->lent = PyMem_Calloc(n, sizeof *self->lent);
    self->rmsg = PyMem_Calloc(n, sizeof *self->rmsg);
    self->riov = PyMem_Calloc(n, sizeof *self->riov);
    self->rsrc = PyMem_Calloc(n, sizeof *self->rsrc);
    self->rslot = PyMem_Calloc(n, sizeof *self->rslot);
    self->smsg = PyMem_Calloc(n, sizeof *self->smsg);
    self->siov = PyMem_Calloc(n, sizeof *self->siov);
    self->pend = PyMem_Calloc(n, sizeof *self->pend);
    self->bbodies = PyMem_Calloc(n, sizeof *self->bbodies);
    self->blens = PyMem_Calloc(n, sizeof *self->blens);
    self->bverd = PyMem_Calloc(n, sizeof *self->bverd);
    if (self->copy_on_send) self->copybuf = PyMem_Malloc((size_t)self->slot_size * n);
    self->gfirst = PyMem_Calloc(n, sizeof *self->gfirst);
    self->gcount = PyMem_Calloc(n, sizeof *self->gcount);
    self->gctl = PyMem_Calloc(n, CMSG_SPACE(sizeof(uint16_t)));
    if (!self->gfirst || !self->gcount || !self->gctl ||
        !self->lent || !self->rmsg || !self->riov || !self->rsrc || !self->rslot || !self->smsg || !self->siov ||
        !self->pend || !self->bbodies || !self->blens || !self->bverd || (self->copy_on_send && !self->copybuf)) {
        free_batches(self);
        PyErr_NoMemory();
        return -1;
    }
    self->rx_batch = b;
    return 0;
}

static int FastPath_init(FastPath *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"fd", "pool", "base", "slot_size", "slot_count", "on_slow", "on_handover", "owner",
                         "quantum_ns", "budget_ns", "rx_batch", "gso", "uring", NULL};
    int fd, rx_batch = 64, gso = 1, uring = 0;
    unsigned long long base, budget_ns = ULLONG_MAX;
    long long quantum_ns = 100000;
    Py_ssize_t slot_size, slot_count;
    PyObject *pool, *on_slow, *on_handover, *owner;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOKnnOOO|LKipp", kw, &fd, &pool, &base, &slot_size, &slot_count,
                                     &on_slow, &on_handover, &owner, &quantum_ns, &budget_ns, &rx_batch, &gso,
                                     &uring))
        return -1;
    if (slot_size <= 0 || slot_count <= 0 || slot_count > INT_MAX || base == 0) {
        PyErr_SetString(PyExc_ValueError, "FastPath needs a pool with a base address and positive slot sizes");
        return -1;
    }
    if (quantum_ns <= 0 || quantum_ns > 1000000000000LL) {
        PyErr_SetString(PyExc_ValueError, "the fair-share quantum must be positive (and under 1000 s)");
        return -1;
    }
    if (rx_batch < 1 || rx_batch > RX_BATCH_MAX) {
        PyErr_Format(PyExc_ValueError, "rx_batch must be 1..%d", RX_BATCH_MAX);
        return -1;
    }
    if (!PyCallable_Check(on_slow) || !PyCallable_Check(on_handover)) {
        PyErr_SetString(PyExc_TypeError, "on_slow and on_handover must be callable");
        return -1;
    }
    if (self->in_run || self->nlent || self->npend) {
        PyErr_SetString(PyExc_RuntimeError, "FastPath re-initialised during a run or with slots lent");
        return -1;
    }
    if (rx_batch != self->rx_batch) {
        free_batches(self);
        if (alloc_batches(self, rx_batch) < 0) return -1;
    }
    self->fd = fd;
    self->gso = gso;
    self->uring = uring;
    self->gso_max = GSO_BYTES;
    self->quantum_ns = quantum_ns;
    self->budget_ns = budget_ns;
    self->base = (uint8_t *)(uintptr_t)base;
    self->slot_size = slot_size;
    self->slot_count = slot_count;
    self->default_link = -1;
    self->in_slot = -1;
    Py_XSETREF(self->pool, Py_NewRef(pool));
    Py_XSETREF(self->on_slow, Py_NewRef(on_slow));
    Py_XSETREF(self->on_handover, Py_NewRef(on_handover));
    Py_XSETREF(self->owner, Py_NewRef(owner));
    return 0;
}

static int FastPath_traverse(FastPath *self, visitproc visit, void *arg) {
    Py_VISIT(self->pool);
    Py_VISIT(self->on_slow);
    Py_VISIT(self->on_handover);
    for (int i = 0; i < self->ncodes; i++) { Py_VISIT(self->codes[i].lean); Py_VISIT(self->codes[i].admit); }
    for (int i = 0; i < self->nlinks; i++) Py_VISIT(self->links[i].address_obj);
    Py_VISIT(self->owner);
    Py_VISIT(self->lock);
    return 0;
}

static int FastPath_clear(FastPath *self) {
    Py_CLEAR(self->pool);
    Py_CLEAR(self->on_slow);
    Py_CLEAR(self->on_handover);
    for (int i = 0; i < self->ncodes; i++) { Py_CLEAR(self->codes[i].lean); Py_CLEAR(self->codes[i].admit); }
    for (int i = 0; i < self->nlinks; i++) Py_CLEAR(self->links[i].address_obj);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->lock);
    return 0;
}

static void FastPath_dealloc(FastPath *self) {
    PyObject_GC_UnTrack(self);
    if (g_inflight == self) g_inflight = NULL;
    FastPath_clear(self);
    free_tables(self->links, self->nlinks, self->codes, self->ncodes);
    PyMem_Free(self->routes);
    free_batches(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(configure_doc,
"configure(address, links, routes, default_link, codes, copy_on_send)\n\n"
"Replace the tables: links are (endpoint, address, mtu, receive fd or -1, ns its throttle\n"
"has left or 0), routes (dest, link index), codes (name, C entry address or 0 to run in\n"
"Python, state, fast_accept or None, C batch entry address or 0[, admit or None: a code object in\n"
"a worker process, see _fastpath_worker.c]). Counters restart at zero\n"
"(take them first); a link keeps its fair share.");

static PyObject *FastPath_configure(FastPath *self, PyObject *args) {
    Py_buffer addr;
    PyObject *links, *routes, *codes;
    int default_link, copy_on_send;
    if (!PyArg_ParseTuple(args, "y*O!O!iO!p", &addr, &PyList_Type, &links, &PyList_Type, &routes, &default_link,
                          &PyList_Type, &codes, &copy_on_send))
        return NULL;
    fp_link *nl = NULL;
    fp_route *nr = NULL;
    fp_code *nc = NULL;
    Py_ssize_t L = PyList_GET_SIZE(links), R = PyList_GET_SIZE(routes), C = PyList_GET_SIZE(codes);
    if (self->in_run || self->finishing) { /* a run holds pointers into the tables: they change between runs only */
        PyErr_SetString(PyExc_RuntimeError, "configure during a run");
        goto fail;
    }
    if (L > INT_MAX || R > INT_MAX || C > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "tables too large");
        goto fail;
    }
    if (addr.len != ADDR_SIZE) {
        PyErr_SetString(PyExc_ValueError, "a node address is 16 bytes");
        goto fail;
    }
    nl = PyMem_Calloc(L ? L : 1, sizeof *nl);
    nr = PyMem_Calloc(R ? R : 1, sizeof *nr);
    nc = PyMem_Calloc(C ? C : 1, sizeof *nc);
    if (!nl || !nr || !nc) {
        PyErr_NoMemory();
        goto fail;
    }
    unsigned long long t_now = now_ns();
    for (Py_ssize_t i = 0; i < L; i++) {
        PyObject *ep;
        Py_buffer a;
        Py_ssize_t mtu;
        int rfd;
        unsigned long long throttle_left;
        nl[i].rfd = -1;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(links, i), "Oy*niK", &ep, &a, &mtu, &rfd, &throttle_left)) goto fail;
        int ok = a.len == ADDR_SIZE;
        if (ok) {
            memcpy(nl[i].address, a.buf, ADDR_SIZE);
            nl[i].address_obj = PyBytes_FromStringAndSize(a.buf, ADDR_SIZE);
        }
        PyBuffer_Release(&a);
        if (ok && !nl[i].address_obj) goto fail;
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "a link address is 16 bytes");
            goto fail;
        }
        if (to_sockaddr(ep, &nl[i].sa, &nl[i].salen) < 0) goto fail;
        nl[i].mtu = mtu;
        nl[i].rfd = rfd < 0 ? -1 : rfd;
        nl[i].throttle_until = throttle_left ? t_now + throttle_left : 0;
        nl[i].share.vtime = self->clock;
        for (int j = 0; j < self->nlinks; j++) { /* the same neighbour keeps its share */
            if (memcmp(self->links[j].address, nl[i].address, ADDR_SIZE) == 0) {
                nl[i].share = self->links[j].share;
                break;
            }
        }
    }
    for (Py_ssize_t i = 0; i < R; i++) {
        Py_buffer d;
        int link;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(routes, i), "y*i", &d, &link)) goto fail;
        int ok = d.len == ADDR_SIZE && link >= -1 && link < L;
        if (ok) memcpy(nr[i].dest, d.buf, ADDR_SIZE);
        PyBuffer_Release(&d);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "a route is (16-byte address, link index)");
            goto fail;
        }
        nr[i].link = link;
    }
    for (Py_ssize_t i = 0; i < C; i++) {
        Py_buffer n;
        unsigned long long entry, state, batch;
        PyObject *lean, *admit = Py_None;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(codes, i), "y*KKOK|O", &n, &entry, &state, &lean, &batch, &admit))
            goto fail;
        int ok = n.len == NAME_SIZE;
        if (ok) memcpy(nc[i].name, n.buf, NAME_SIZE);
        PyBuffer_Release(&n);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError,
                            "a code entry is (32-byte name, C entry address or 0, state, fast_accept or None, "
                            "C batch entry address or 0)");
            goto fail;
        }
        nc[i].run = (pan_fast_run_fn)(uintptr_t)entry;
        nc[i].batch = entry ? (pan_fast_batch_fn)(uintptr_t)batch : NULL;
        nc[i].state = (void *)(uintptr_t)state;
        nc[i].lean = lean == Py_None ? NULL : Py_NewRef(lean);
        nc[i].admit = admit == Py_None || entry ? NULL : Py_NewRef(admit);
    }
    if (default_link < -1 || default_link >= L) {
        PyErr_SetString(PyExc_ValueError, "default link index out of range");
        goto fail;
    }
    if (!self->rx_batch) {
        PyErr_SetString(PyExc_RuntimeError, "FastPath not initialised");
        goto fail;
    }
    if (copy_on_send && !self->copybuf) { /* one copy per forward of a send batch */
        self->copybuf = PyMem_Malloc((size_t)self->slot_size * (size_t)self->rx_batch);
        if (!self->copybuf) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    free_tables(self->links, self->nlinks, self->codes, self->ncodes);
    PyMem_Free(self->routes);
    self->links = nl, self->nlinks = (int)L;
    self->routes = nr, self->nroutes = (int)R;
    self->codes = nc, self->ncodes = (int)C;
    self->default_link = default_link;
    self->copy_on_send = copy_on_send;
    memcpy(self->self_addr, addr.buf, ADDR_SIZE);
    memcpy(self->ctx.node_address, addr.buf, ADDR_SIZE);
    self->received = self->sent = 0;
    self->tables++;
    PyBuffer_Release(&addr);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&addr);
    free_tables(nl, (int)L, nc, (int)C);
    PyMem_Free(nr);
    return NULL;
}

/* Give slot SLOT (read into and done with, or fresh from Python) back to the lent ones. */
static inline void give_back(FastPath *self, int slot) {
    if (slot >= 0 && self->nlent < self->rx_batch) self->lent[self->nlent++] = slot;
}

/* Take a callback's answer (slot, held): a fresh slot to lend for reading (-1: none) and
 * whether the node's queue holds capsules. Consumes R; 0, or -1 with an error set. */
static int take_answer(FastPath *self, PyObject *r) {
    int slot, held;
    int ok = PyArg_ParseTuple(r, "ip", &slot, &held);
    Py_DECREF(r);
    if (!ok) return -1;
    if (slot < -1 || slot >= self->slot_count) {
        PyErr_Format(PyExc_ValueError, "slot %d outside the pool's %zd slots", slot, self->slot_count);
        return -1;
    }
    if (slot >= 0 && self->nlent >= self->rx_batch) {
        PyErr_SetString(PyExc_ValueError, "a slot answered while every lent place is taken");
        return -1;
    }
    give_back(self, slot);
    self->held = held;
    return 0;
}

/* Hand the capsule of the current run over to Python (RESULT: the verdict or exception, or
 * None: run it there; stolen). Its slot is Python's from here, whatever happens. Returns
 * 0, or -1 on a Python error. */
static int hand_over(FastPath *self, int ci, int li, int n, PyObject *result, unsigned long long dt) {
    int slot = self->in_slot; /* -1: inflight() already handed it over */
    self->in_slot = -1;
    self->crossings++;
    /* the runtime is asked for the run's fault unless a later capsule of its batch ran after
     * it (a forward verdict: it did not fault, and the runtime's record is the later run's) */
    int ask = !self->finishing || self->in_batch_last;
    PyObject *r = PyObject_CallFunction(self->on_handover, "iiiiNKi", ci, li, slot, n, result, dt, ask);
    return r ? take_answer(self, r) : -1;
}

static void end_run(FastPath *self) {
    g_inflight = NULL;
    self->in_run = 0;
}

/* A plain forward this file can send: the index of the link toward its destination, else
 * -1 (Python must finish it). */
static int forward_link(FastPath *self, const uint8_t *buf, int n, int32_t verdict) {
    if (verdict < 0 || (verdict & PAN_WIRE_VERDICT_KIND_MASK) != PAN_WIRE_VERDICT_FORWARD) return -1;
    uint32_t off = (uint32_t)verdict >> 8;
    uint32_t body_len = (uint32_t)(n - HEADER_SIZE);
    if ((uint64_t)off + ADDR_SIZE > body_len) return -1;
    const uint8_t *dest = buf + HEADER_SIZE + off;
    if (memcmp(dest, self->self_addr, ADDR_SIZE) == 0) return -1;
    int out = find_route(self, dest);
    if (out < 0 || n > self->links[out].mtu) return -1;
    return out;
}

/* Queue the forward in SLOT toward link OUT for the burst's sendmmsg, taking this node's
 * hop (checked non-zero before the run) in the byte sent. The slot stays this file's until
 * the send. */
static void queue_forward(FastPath *self, int slot, int n, int ci, int li, int out, int32_t verdict,
                          unsigned long long dt) {
    uint8_t *buf = self->base + (Py_ssize_t)slot * self->slot_size;
    int k = self->npend++;
    buf[PAN_WIRE_HOP_LIMIT_OFFSET]--;
    uint8_t *data = buf;
    if (self->copy_on_send) {
        data = self->copybuf + (Py_ssize_t)k * self->slot_size;
        memcpy(data, buf, (size_t)n);
    }
    fp_pending *p = &self->pend[k];
    p->slot = slot, p->n = n, p->code = ci, p->in = li, p->out = out, p->verdict = verdict, p->dt = dt;
    self->siov[k].iov_base = data;
    self->siov[k].iov_len = (size_t)n;
    struct msghdr *h = &self->smsg[k].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_name = &self->links[out].sa;
    h->msg_namelen = self->links[out].salen;
    h->msg_iov = &self->siov[k];
    h->msg_iovlen = 1;
}

/* Count a forward the kernel took. */
static void count_sent(FastPath *self, const fp_pending *p) {
    fp_code *code = &self->codes[p->code];
    fp_link *in = &self->links[p->in], *ol = &self->links[p->out];
    unsigned long long n = (unsigned long long)p->n;
    code->in++;
    code->forwarded++;
    code->time_ns += p->dt;
    if (p->dt > code->max_ns) code->max_ns = p->dt;
    in->received++;
    in->received_bytes += n;
    in->runs++;
    in->run_ns += p->dt;
    ol->sent++;
    ol->sent_bytes += n;
    if (n > ol->largest_sent) ol->largest_sent = n;
    self->received++;
    self->sent++;
    self->n_finished++;
}

/* The messages of a flush over pend[FROM, NP): one per forward, or, with GSO on, one per
 * run of consecutive forwards toward one next hop with one size (the last may be shorter),
 * sent as one UDP_SEGMENT message the kernel cuts into those datagrams (no copy: the
 * message's iovec is the forwards' own, consecutive in siov). Returns how many. */
static int build_sends(FastPath *self, int from, int np) {
    int m = 0;
    for (int k = from; k < np; m++) {
        fp_pending *p = &self->pend[k];
        int n = 1;
        size_t bytes = (size_t)p->n;
        if (self->gso && p->n <= self->gso_max) {
            while (k + n < np && n < GSO_SEGMENTS) {
                fp_pending *q = &self->pend[k + n];
                if (q->out != p->out || q->n > p->n || bytes + (size_t)q->n > GSO_BYTES) break;
                bytes += (size_t)q->n;
                n++;
                if (q->n < p->n) break; /* a shorter one ends the message */
            }
        }
        struct msghdr *h = &self->smsg[m].msg_hdr;
        memset(h, 0, sizeof *h);
        h->msg_name = &self->links[p->out].sa;
        h->msg_namelen = self->links[p->out].salen;
        h->msg_iov = &self->siov[k];
        h->msg_iovlen = (size_t)n;
        if (n > 1) {
            uint8_t *ctl = self->gctl + (size_t)m * CMSG_SPACE(sizeof(uint16_t));
            memset(ctl, 0, CMSG_SPACE(sizeof(uint16_t)));
            h->msg_control = ctl;
            h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = (uint16_t)p->n;
            memcpy(CMSG_DATA(c), &size, sizeof size);
        }
        self->gfirst[m] = k;
        self->gcount[m] = n;
        k += n;
    }
    return m;
}

/* A GSO message the kernel refused with ERR: 1 when that is a refusal of GSO itself (the
 * device cannot checksum or segment it, the size does not fit the path: EIO, EINVAL,
 * EOPNOTSUPP, ...), counted, and GSO is limited (EINVAL: below this segment size) or off
 * (anything else, or after GSO_REFUSALS); the caller then sends the same forwards again
 * without it. 0 when the error is the send's own (a full buffer, ...). */
static inline int gso_refusal(int err) {
    return err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT || err == EPERM;
}

static int refuse_gso(FastPath *self, int err, int size) {
    if (!gso_refusal(err)) return 0;
    self->gso_refused++;
    if (err == EINVAL && self->gso_refused < GSO_REFUSALS && size > 1) self->gso_max = size - 1;
    else self->gso = 0;
    return 1;
}

/* The forward P was not sent: dropped against its code as link_lost, its slot back. */
static void count_lost(FastPath *self, const fp_pending *p) {
    fp_code *code = &self->codes[p->code];
    fp_link *in = &self->links[p->in];
    self->base[(Py_ssize_t)p->slot * self->slot_size + PAN_WIRE_HOP_LIMIT_OFFSET]++;
    code->in++;
    code->lost++;
    code->time_ns += p->dt;
    if (p->dt > code->max_ns) code->max_ns = p->dt;
    in->received++;
    in->received_bytes += (unsigned long long)p->n;
    in->runs++;
    in->run_ns += p->dt;
    self->links[p->out].send_errors++;
    self->received++;
    self->n_dropped++;
    give_back(self, p->slot);
}

/* Message M of a flush went (ERR 0) or the kernel refused it with ERR: its forwards counted
 * as sent (their slots back) or, for a refusal of the send itself, dropped as link_lost.
 * Returns 1, counting nothing but the refusal, when ERR refuses GSO itself (refuse_gso): the
 * caller sends M's forwards again without. Both ways of sending (flush_sends, and the
 * wait's io_uring in _fastpath_uring.c) count through here. */
static int send_done(FastPath *self, int m, int err) {
    int c = self->gcount[m], k = self->gfirst[m];
    if (err == 0) {
        self->tx_datagrams += (unsigned long long)c;
        if (c > 1) self->gso_sends++, self->gso_datagrams += (unsigned long long)c;
        for (int j = k; j < k + c; j++) {
            count_sent(self, &self->pend[j]);
            give_back(self, self->pend[j].slot);
        }
        return 0;
    }
    if (c > 1 && refuse_gso(self, err, self->pend[k].n)) return 1;
    for (int j = k; j < k + c; j++) count_lost(self, &self->pend[j]);
    return 0;
}

/* Send the queued forwards: one sendmmsg for all of them (more only when the kernel takes
 * part), forwards toward one next hop with one size as UDP GSO messages where the kernel
 * takes them (build_sends; a refusal sends them again without, see refuse_gso). A forward
 * the kernel refused (a full send buffer, ...) is counted here as the node counts a send
 * that fails on its own path: dropped against its code as link_lost (Python would only try
 * the same send again). No Python runs here: the table indices the queue holds stay valid. */
static void flush_sends(FastPath *self) {
    int np = self->npend, done = 0;
    self->npend = 0;
    while (done < np) {
        int nm = build_sends(self, done, np), m = 0, again = 0;
        while (m < nm && !again) {
            int r;
            NL_SYSCALL(self->lock, r, sendmmsg(self->fd, &self->smsg[m], (unsigned int)(nm - m), MSG_DONTWAIT));
            self->tx_calls++;
            if (r < 0) {
                int err = errno;
                if (err == EINTR) continue;
                if (send_done(self, m, err)) {
                    again = 1; /* the rest again, as the kernel takes them */
                    break;
                }
                done += self->gcount[m];
                m++;
                continue;
            }
            for (int i = m; i < m + r; i++) {
                send_done(self, i, 0);
                done += self->gcount[i];
            }
            m += r;
        }
    }
}

/* The raised exception, normalized and without its traceback (a new reference; NULL when
 * none is set). Python 3.11 has no PyErr_GetRaisedException. */
static PyObject *fetch_exception(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    if (value && PyExceptionInstance_Check(value)) PyException_SetTraceback(value, Py_None);
    return value;
}

/* fast_accept(body, prev_hop) of code that runs in Python without an environment: the
 * verdict as a new int, or the exception it raised (a new reference either way); NULL with
 * an error set only when the call could not be made. */
static PyObject *run_lean(fp_code *code, fp_link *in, uint8_t *buf, int n) {
    PyObject *body = PyMemoryView_FromMemory((char *)buf + HEADER_SIZE, n - HEADER_SIZE, PyBUF_WRITE);
    if (!body) return NULL;
    PyObject *r = PyObject_CallFunctionObjArgs(code->lean, body, in->address_obj, NULL);
    PyObject *exc = NULL;
    if (!r) {
        exc = fetch_exception(); /* without the frames of the run, which hold the body */
        if (!exc) {
            exc = PyObject_CallFunction(PyExc_SystemError, "s", "fast_accept failed without an exception");
        }
    } else if (!PyLong_Check(r)) {
        Py_DECREF(r);
        r = NULL;
        exc = PyObject_CallFunction(PyExc_TypeError, "s", "fast_accept returned a non-integer verdict");
    }
    PyObject *gone = PyObject_CallMethodNoArgs(body, str_release);
    if (gone) Py_DECREF(gone);
    else PyErr_Clear(); /* a view of it is still held: it stays valid, as the pool does */
    Py_DECREF(body);
    return r ? r : exc;
}

/* A run that failed for want of memory: its datagram is lost (its slot back with the lent
 * ones, unless the code reached the host and Python has it). */
static int run_failed(FastPath *self) {
    end_run(self);
    give_back(self, self->in_slot);
    self->in_slot = -1;
    return -1;
}

/* After the run of the capsule in SLOT (RESULT: NULL, or the exception or out-of-range
 * verdict, stolen): queue a plain forward for the burst's send, else hand it over (the
 * queued forwards are sent first). A run past the time budget goes to Python even when it
 * forwards: the ledger charges it. 1 when queued, 0 when Python has it, -1 on an error. */
static int finish_run(FastPath *self, int slot, int n, int li, int ci, int32_t verdict, PyObject *result,
                      unsigned long long dt) {
    int claimed = self->in_slot < 0; /* the code reached the host: Python has the capsule */
    if (!claimed && !result && dt <= self->budget_ns) {
        int out = forward_link(self, self->base + (Py_ssize_t)slot * self->slot_size, n, verdict);
        if (out >= 0) {
            self->in_slot = -1;
            queue_forward(self, slot, n, ci, li, out, verdict, dt);
            return 1;
        }
    }
    flush_sends(self);
    self->n_handed_over++;
    if (!result) {
        result = PyLong_FromLong(verdict);
        if (!result) {
            give_back(self, self->in_slot);
            self->in_slot = -1;
            return -1;
        }
    }
    return hand_over(self, ci, li, n, result, dt) < 0 ? -1 : 0;
}

/* Run the code on the datagram in SLOT (its C entry, else its fast_accept, else Python
 * runs it); returns 1 when finished here (a forward queued for the burst's send), 0 when
 * the capsule went to Python (with its slot), -1 on a Python error (the slot is lost to
 * this burst, or Python's when the code reached the host). The tables cannot change during
 * the run (configure refuses), so `code` and `in` stay valid across the Python calls the
 * run may make; the queued forwards are sent before any callback, so capsules leave in
 * the order they came. */
static int run_one(FastPath *self, int slot, int n, int li, int ci) {
    fp_code *code = &self->codes[ci];
    fp_link *in = &self->links[li];
    uint8_t *buf = self->base + (Py_ssize_t)slot * self->slot_size;
    if (!code->run && !code->lean) { /* no entry without an environment: Python runs it */
        flush_sends(self);
        self->in_slot = slot;
        self->n_python_runs++;
        Py_INCREF(Py_None);
        return hand_over(self, ci, li, n, Py_None, 0) < 0 ? -1 : 0;
    }
    self->ctx.origin_kind = 0;
    self->ctx.has_prev_hop = 1;
    memcpy(self->ctx.prev_hop, in->address, ADDR_SIZE);
    self->in_slot = slot, self->in_n = n, self->in_link = li, self->in_code = ci;
    self->in_run = 1;
    g_inflight = self;
    unsigned long long t0 = now_ns();
    PyObject *result = NULL; /* set when the run's outcome is not a plain verdict */
    int32_t verdict = 0;
    if (code->run) {
        verdict = code->run(code->state, buf + HEADER_SIZE, (uintptr_t)(n - HEADER_SIZE), &self->ctx);
    } else {
        PyObject *r = run_lean(code, in, buf, n);
        if (!r) return run_failed(self); /* no memory for the call: the datagram is lost */
        if (PyLong_Check(r)) {
            long v = PyLong_AsLong(r);
            Py_DECREF(r);
            if (v == -1 && PyErr_Occurred()) {
                result = fetch_exception(); /* out of range: a fault of the code */
                if (!result) return run_failed(self);
            } else if (v < INT32_MIN || v > INT32_MAX) {
                result = PyObject_CallFunction(PyExc_OverflowError, "s", "verdict outside 32 bits");
                if (!result) return run_failed(self);
            } else {
                verdict = (int32_t)v;
            }
        } else {
            result = r; /* the exception the code raised */
        }
    }
    unsigned long long dt = now_ns() - t0;
    end_run(self);
    return finish_run(self, slot, n, li, ci, verdict, result, dt);
}

/* The fair share of the source read through FD: the node socket's or a link's; NULL when
 * FD is neither. Pointers into the links go stale when configure runs (`tables` moves). */
static fp_share *share_of(FastPath *self, int fd) {
    if (fd == self->fd) return &self->shared;
    for (int i = 0; i < self->nlinks; i++) {
        if (self->links[i].rfd == fd) return &self->links[i].share;
    }
    return NULL;
}

/* Whether a datagram waits in FD's socket (a peek; an error the socket reports is not one).
 * A source is marked busy only on this evidence: a busy mark on an empty socket would hold
 * every other source back with nothing left to serve. */
static int has_datagram(FastPath *self, int fd) {
    uint8_t b;
    ssize_t r;
    self->peeks++;
    NL_SYSCALL(self->lock, r, recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT));
    return r >= 0;
}

/* Start a visit of SH, read through FD (readable): the virtual time up to which it may be
 * served now, or -1 when it is more than a quantum ahead of the least-served busy source. */
static long long share_visit(FastPath *self, fp_share *sh, int fd) {
    if (!sh->busy && sh->vtime < self->clock) sh->vtime = self->clock; /* idleness earns nothing */
    long long low = sh->vtime;
    if (self->shared.busy && &self->shared != sh && self->shared.vtime < low) low = self->shared.vtime;
    for (int i = 0; i < self->nlinks; i++) {
        fp_share *o = &self->links[i].share;
        if (o->busy && o != sh && o->vtime < low) low = o->vtime;
    }
    if (low > self->clock) self->clock = low;
    if (sh->vtime > low + self->quantum_ns) {
        sh->busy = has_datagram(self, fd); /* left for the others' turn */
        return -1;
    }
    sh->busy = 0; /* set again when the visit ends with datagrams left */
    /* nobody else waits: the visit may run ALONE_QUANTA quanta, so a lone flood of cheap
     * capsules is read in whole batches (a visit's calls are spread over rx_batch capsules,
     * not over the few one quantum holds); its service still counts, so a source that turns
     * busy later is served first until it caught up, and long code still ends a visit early */
    int alone = 1;
    if (self->shared.busy && &self->shared != sh) alone = 0;
    for (int i = 0; i < self->nlinks && alone; i++) {
        fp_share *o = &self->links[i].share;
        if (o->busy && o != sh) alone = 0;
    }
    return low + (alone ? ALONE_QUANTA : 1) * self->quantum_ns;
}

/* Which neighbour and code object datagram I of the receive batch is for: *LI and *CI
 * (-1 when none, or when the node must see it first: the datagram is Python's). */
static void classify(FastPath *self, int i, int *li, int *ci) {
    const uint8_t *buf = self->base + (Py_ssize_t)self->rslot[i] * self->slot_size;
    int n = (int)self->rmsg[i].msg_len;
    *li = find_link(self, &self->rsrc[i]);
    *ci = -1;
    if (*li >= 0 && !self->held && !(self->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC) && n >= HEADER_SIZE &&
        buf[PAN_WIRE_VERSION_OFFSET] == PAN_WIRE_VERSION && buf[PAN_WIRE_FLAGS_OFFSET] == 0 &&
        buf[PAN_WIRE_RESERVED_OFFSET] == 0 && buf[PAN_WIRE_HOP_LIMIT_OFFSET] != 0) {
        *ci = find_code(self, buf + PAN_WIRE_NAME_OFFSET);
    }
}

/* Run the COUNT capsules at rslot[FIRST ...] (one neighbour LI, one code object CI with a
 * batch entry) in one call into the runtime, then finish each that ran as run_one would.
 * Returns how many were handled (the rest, not run, are handled as new), or -1 on a Python
 * error; *called is set when Python code ran. */
static int run_group(FastPath *self, int first, int count, int li, int ci, int *called) {
    fp_code *code = &self->codes[ci];
    fp_link *in = &self->links[li];
    for (int k = 0; k < count; k++) {
        int at = first + k;
        self->bbodies[k] = self->base + (Py_ssize_t)self->rslot[at] * self->slot_size + HEADER_SIZE;
        self->blens[k] = (uintptr_t)self->rmsg[at].msg_len - HEADER_SIZE;
    }
    pan_fast_batch b = {(uint32_t)count, 0, 0, 0, self->bbodies, self->blens, self->bverd, NULL};
    self->ctx.origin_kind = 0;
    self->ctx.has_prev_hop = 1;
    memcpy(self->ctx.prev_hop, in->address, ADDR_SIZE);
    self->in_batch = &b, self->in_first = first, self->in_link = li, self->in_code = ci;
    self->in_slot = -1;
    self->in_run = 1;
    g_inflight = self;
    unsigned long long t0 = now_ns();
    uint32_t ran = code->batch(code->state, &b, &self->ctx);
    unsigned long long dt = now_ns() - t0;
    end_run(self);
    self->in_batch = NULL;
    if (ran < 1 || ran > (uint32_t)count) ran = ran < 1 ? 1 : (uint32_t)count; /* a runtime past its contract */
    self->batch_calls++;
    self->batched += ran;
    unsigned long long each = dt / ran; /* the budget and the ledger see the batch's mean */
    /* the runs are done: finish them in order, the tables kept until the last is finished
     * (a hand-over's answer refreshes nothing meanwhile) */
    int rc = 0;
    self->finishing = 1;
    self->stale = 0;
    for (uint32_t k = 0; k < ran; k++) {
        int at = first + (int)k;
        int slot = self->rslot[at]; /* -1: claimed during the run, Python has it */
        int n = (int)self->rmsg[at].msg_len;
        self->rslot[at] = -1;
        if (rc < 0) { /* a Python error finishing an earlier one: the rest are lost */
            self->n_lost++;
            give_back(self, slot);
            continue;
        }
        self->in_slot = slot;
        self->in_batch_last = k + 1 == ran;
        int done = finish_run(self, slot < 0 ? 0 : slot, n, li, ci, self->bverd[k], NULL, each);
        if (done == 0) *called = 1;
        if (done < 0) rc = -1;
    }
    self->finishing = 0;
    self->in_batch_last = 0;
    if (rc < 0) return -1;
    if (self->stale) { /* what the hand-overs changed (a code reset, a route) reaches the tables now */
        flush_sends(self); /* the queued forwards name entries of the tables being replaced */
        self->stale = 0;
        self->crossings++;
        PyObject *r = PyObject_CallMethodNoArgs(self->owner, str_refresh);
        if (!r || take_answer(self, r) < 0) return -1;
    }
    return (int)ran;
}

/* Handle datagram I of the receive batch (classified as LI, CI): drop it (a throttled
 * neighbour's), run it here, or give it to Python. 0, or -1 on a Python error; *called is
 * set when Python code ran. */
static int handle_one(FastPath *self, int i, int li, int ci, int *called) {
    int slot = self->rslot[i];
    self->rslot[i] = -1; /* handled: not this burst's any more */
    int n = (int)self->rmsg[i].msg_len;
    if (ci >= 0) {
        int done = run_one(self, slot, n, li, ci);
        if (done == 0) *called = 1;
        return done < 0 ? -1 : 0;
    }
    *called = 1;
    flush_sends(self);
    self->n_slow++;
    PyObject *addr = from_sockaddr(&self->rsrc[i]);
    if (!addr) {
        give_back(self, slot);
        return -1;
    }
    self->crossings++;
    PyObject *r = PyObject_CallFunction(self->on_slow, "iiiN", slot, n, self->rmsg[i].msg_hdr.msg_flags,
                                        addr); /* the slot is Python's */
    return r ? take_answer(self, r) : -1;
}

#include "_fastpath_worker.c" /* batches written into workers' rings, their verdicts carried out */

/* Handle the GOT datagrams one receive returned, then send the forwards they made: a run of
 * consecutive capsules of one neighbour and one code object with a batch entry crosses into
 * the runtime once. A Python error leaves the rest of the batch unread by the node: counted lost. */
static int handle_batch(FastPath *self, int got, unsigned long long t0, int *called) {
    int i = 0;
    /* the last group found: its end, neighbour and code object, valid while no callback
     * changed the tables or the queue's state (its rest needs no second look) */
    int gend = 0, gli = -1, gci = -1, gheld = 0;
    unsigned long long gtables = 0;
    while (i < got) {
        int li, ci;
        if (i < gend && gtables == self->tables && gheld == self->held) {
            li = gli, ci = gci;
        } else {
            gend = 0;
            classify(self, i, &li, &ci);
        }
        if (li >= 0 && self->links[li].throttle_until && t0 < self->links[li].throttle_until) {
            self->links[li].throttled++; /* the ledger throttles it: dropped, the slot kept */
            self->n_dropped++;
            give_back(self, self->rslot[i]);
            self->rslot[i] = -1;
            i++;
            continue;
        }
        int r;
        if (ci >= 0 && self->codes[ci].admit) { /* a code object in a worker: its run goes down at once */
            int end = gend;
            if (!end) {
                for (end = i + 1; end < got; end++) {
                    int l2, c2;
                    classify(self, end, &l2, &c2);
                    if (l2 != li || c2 != ci) break;
                }
                gend = end, gli = li, gci = ci, gheld = self->held, gtables = self->tables;
            }
            r = to_worker(self, i, end - i, li, ci, called);
        } else if (ci >= 0 && self->codes[ci].batch && i + 1 < got) {
            int end = gend;
            if (!end) {
                for (end = i + 1; end < got; end++) { /* the same neighbour, code object and checks */
                    int l2, c2;
                    classify(self, end, &l2, &c2);
                    if (l2 != li || c2 != ci) break;
                }
                gend = end, gli = li, gci = ci, gheld = self->held, gtables = self->tables;
            }
            r = end - i > 1 ? run_group(self, i, end - i, li, ci, called) : (handle_one(self, i, li, ci, called) < 0 ? -1 : 1);
        } else {
            r = handle_one(self, i, li, ci, called) < 0 ? -1 : 1;
        }
        if (r < 0) {
            for (int k = i; k < got; k++) { /* the rest, read and not seen by the node */
                if (self->rslot[k] < 0) continue;
                self->n_lost++;
                give_back(self, self->rslot[k]);
                self->rslot[k] = -1;
            }
            flush_sends(self);
            return -1;
        }
        i += r;
    }
    if (!self->hold_sends) flush_sends(self);
    return 0;
}

/* Read and handle datagrams from FD (the node socket or a neighbour's), as far as its fair
 * share allows and up to LIMIT, in batches of up to rx_batch: one recvmmsg reads what the
 * socket holds without waiting for more, and one sendmmsg sends the forwards of the batch.
 * How many a call asks for follows the recent cost of a datagram, so a visit ends near the
 * end of its share. Returns how many were read, -1 on a Python error, -2 when no slot is
 * lent, -3 when FD is not one of this FastPath's; *called is set when Python code ran. */
static long do_burst(FastPath *self, int fd, long limit, int *called) {
    fp_share *sh = share_of(self, fd);
    if (!sh) return -3;
    if (self->nlent <= 0) {
        sh->busy = 0; /* Python reads it its own way: no busy mark it cannot keep true */
        return -2;
    }
    if (self->in_run) { /* a wait inside a run (code that reached the host ran an event loop) */
        PyErr_SetString(PyExc_RuntimeError, "a fast path burst inside a fast path run");
        return -1;
    }
    long long until = share_visit(self, sh, fd);
    if (until < 0) return 0;
    unsigned long long tables = self->tables;
    long count = 0;
    int rc = 0, more = 0; /* more: the last receive filled what it asked for */
    self->hold_sends = 1;
    while (self->nlent > 0) {
        if (tables != self->tables) { /* a callback reconfigured: find the source again */
            tables = self->tables;
            sh = share_of(self, fd);
            if (!sh) break;
        }
        if (count >= limit || sh->vtime > until) {
            more = 1; /* the peek below */
            break;
        }
        if (self->npend >= self->rx_batch) flush_sends(self); /* the send batch is full */
        long want = self->nlent;
        int by_lending = 1; /* what was lent is all that limits this receive */
        if (want > limit - count) want = limit - count, by_lending = 0;
        if (want > self->rx_batch - self->npend) want = self->rx_batch - self->npend, by_lending = 0;
        if (self->est_ns) {
            long long fit = (until - sh->vtime) / (long long)self->est_ns + 1;
            if (want > fit) want = (long)fit, by_lending = 0;
        }
        for (long i = 0; i < want; i++) {
            int slot = self->lent[--self->nlent];
            self->rslot[i] = slot;
            self->riov[i].iov_base = self->base + (Py_ssize_t)slot * self->slot_size;
            self->riov[i].iov_len = (size_t)self->slot_size;
            struct msghdr *h = &self->rmsg[i].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_name = &self->rsrc[i];
            h->msg_namelen = sizeof self->rsrc[i];
            h->msg_iov = &self->riov[i];
            h->msg_iovlen = 1;
        }
        unsigned long long t0 = now_ns();
        int got;
        NL_SYSCALL(self->lock, got, recvmmsg(fd, self->rmsg, (unsigned int)want, MSG_DONTWAIT, NULL));
        self->rx_calls++;
        int empty = got < want;
        if (got < 0) {
            got = 0;
            if (errno == EINTR) empty = 0;
            else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                count++; /* an error the socket reported (ICMP refused on a connected one): it is read */
                empty = 0;
            }
        }
        for (long i = want - 1; i >= got; i--) give_back(self, self->rslot[i]); /* unused, in order */
        more = !empty;
        if (got == 0) {
            if (empty) break; /* not busy any more */
            continue;
        }
        self->rx_datagrams += (unsigned long long)got;
        if (got > self->peak) self->peak = got;
        if (got == want && by_lending && want < self->rx_batch) {
            self->starved = 1; /* Python lends more once this wait returns to it */
            *called = 1;
        }
        count += got;
        /* the last receive of the visit sends what it made at once (a lone capsule is not
         * held), or leaves it to the wait's next call (defer_sends: io_uring sends it there, in
         * the call that then waits); an earlier one leaves its forwards for the next one's
         * sendmmsg */
        self->hold_sends = !empty || self->defer_sends; /* deferred: the wait's io_uring sends them */
        rc = handle_batch(self, got, t0, called);
        self->hold_sends = 1;
        unsigned long long spent = now_ns() - t0;
        self->est_ns = (self->est_ns * 3 + spent / (unsigned long long)got) / 4 + 1;
        if (tables != self->tables) {
            tables = self->tables;
            sh = share_of(self, fd);
        }
        if (sh) sh->vtime += (long long)spent;
        if (rc < 0 || !sh) break;
        if (empty) break; /* the socket gave what it had: not busy any more */
    }
    self->hold_sends = 0;
    /* whatever way the visit ended, its forwards leave with it (on its account), unless the
     * wait sends them in its next io_uring_enter (defer_sends: nothing runs before that) */
    if (self->npend && !self->defer_sends) {
        unsigned long long t1 = now_ns();
        flush_sends(self);
        if (tables != self->tables) sh = NULL;
        if (sh) sh->vtime += (long long)(now_ns() - t1);
    }
    /* a visit that ended with datagrams maybe left (its share or slots ran out) says whether
     * the source waits; a peek is the evidence (see has_datagram) */
    if (rc >= 0 && sh && more) sh->busy = has_datagram(self, fd);
    return rc < 0 ? -1 : count;
}

PyDoc_STRVAR(burst_doc,
"burst(limit[, fd]) -> int\n\n"
"Read up to `limit` datagrams from `fd` (default: the node socket) without blocking, as far\n"
"as its fair share allows; returns how many were read, or -1 when no slot is lent to read\n"
"into (the caller reads them its own way). ValueError when `fd` is not one of its sockets.");

static PyObject *FastPath_burst(FastPath *self, PyObject *args) {
    long limit;
    int fd = self->fd;
    if (!PyArg_ParseTuple(args, "l|i", &limit, &fd)) return NULL;
    int called = 0;
    long r = do_burst(self, fd, limit, &called);
    if (r == -1) return NULL;
    if (r == -3) {
        PyErr_Format(PyExc_ValueError, "descriptor %d is not a socket this fast path reads", fd);
        return NULL;
    }
    return PyLong_FromLong(r == -2 ? -1 : r);
}

PyDoc_STRVAR(take_counters_doc,
"take_counters() -> (received, sent, codes, links, paths, lost)\n\n"
"Counters of capsules finished in C since the last call, then zeroed: codes as\n"
"(in, forwarded, time_ns, max_ns, send_lost) and links as (received, received_bytes, sent,\n"
"sent_bytes, largest_sent, throttled, runs, run_ns, send_errors), in configure's order;\n"
"paths as (finished in C, run in Python, handed over after a C run, slow, dropped in C, written\n"
"into a worker's ring);\n"
"lost: datagrams read in a batch that a Python error stopped.");

static void ring_settle(FastPath *self);

static PyObject *FastPath_take_counters(FastPath *self, PyObject *Py_UNUSED(ignored)) {
    ring_settle(self); /* sends its thread's wait carried, done by now: counted, not left for later */
    PyObject *codes = PyList_New(self->ncodes), *links = PyList_New(self->nlinks);
    if (!codes || !links) goto fail;
    for (int i = 0; i < self->ncodes; i++) {
        fp_code *c = &self->codes[i];
        PyObject *t = Py_BuildValue("(KKKKK)", c->in, c->forwarded, c->time_ns, c->max_ns, c->lost);
        if (!t) goto fail;
        PyList_SET_ITEM(codes, i, t);
        c->in = c->forwarded = c->time_ns = c->max_ns = c->lost = 0;
    }
    for (int i = 0; i < self->nlinks; i++) {
        fp_link *l = &self->links[i];
        PyObject *t = Py_BuildValue("(KKKKKKKKK)", l->received, l->received_bytes, l->sent, l->sent_bytes,
                                    l->largest_sent, l->throttled, l->runs, l->run_ns, l->send_errors);
        if (!t) goto fail;
        PyList_SET_ITEM(links, i, t);
        l->received = l->received_bytes = l->sent = l->sent_bytes = l->largest_sent = 0;
        l->throttled = l->runs = l->run_ns = l->send_errors = 0;
    }
    PyObject *out = Py_BuildValue("(KKNN(KKKKKK)K)", self->received, self->sent, codes, links, self->n_finished,
                                  self->n_python_runs, self->n_handed_over, self->n_slow, self->n_dropped,
                                  self->n_to_worker, self->n_lost);
    if (!out) return NULL; /* codes and links went with the failed build */
    self->received = self->sent = 0;
    self->n_finished = self->n_python_runs = self->n_handed_over = self->n_slow = self->n_dropped = 0;
    self->n_to_worker = 0;
    self->n_lost = 0;
    return out;
fail:
    Py_XDECREF(codes);
    Py_XDECREF(links);
    return NULL;
}

PyDoc_STRVAR(lend_doc,
"lend(slots) -> int\n\n"
"Lend pool slots (a list of indices) to read into, up to rx_batch held at once; returns how\n"
"many were taken (the caller keeps the rest).");

static PyObject *FastPath_lend(FastPath *self, PyObject *slots) {
    if (!PyList_Check(slots)) {
        PyErr_SetString(PyExc_TypeError, "lend takes a list of slot indices");
        return NULL;
    }
    if (self->in_run) {
        PyErr_SetString(PyExc_RuntimeError, "slots are lent between runs only");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(slots), taken = 0;
    for (; taken < n && self->nlent < self->rx_batch; taken++) {
        long s = PyLong_AsLong(PyList_GET_ITEM(slots, taken));
        if (s == -1 && PyErr_Occurred()) return NULL;
        if (s < 0 || s >= self->slot_count) {
            PyErr_Format(PyExc_ValueError, "slot %ld outside the pool's %zd slots", s, self->slot_count);
            return NULL;
        }
        self->lent[self->nlent++] = (int)s;
    }
    return PyLong_FromSsize_t(taken);
}

PyDoc_STRVAR(let_go_doc,
"let_go(fd)\n\n"
"This fast path no longer reads source FD (its socket went to another thread): forget that\n"
"it waits with datagrams. A busy mark it could no longer clear would be the least-served busy\n"
"source for ever, and every source it does read would be held back a quantum past it.");

static PyObject *FastPath_let_go(FastPath *self, PyObject *arg) {
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    fp_share *sh = fd >= 0 && fd <= INT_MAX ? share_of(self, (int)fd) : NULL;
    if (sh) sh->busy = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(reclaim_doc,
"reclaim() -> (slots, peak, starved)\n\n"
"Every slot lent and not used, back to the caller (between bursts the pool is whole), with\n"
"the most datagrams one receive returned since the last reclaim and whether a receive\n"
"filled every slot lent while rx_batch allowed more.");

static PyObject *FastPath_reclaim(FastPath *self, PyObject *Py_UNUSED(ignored)) {
    if (self->in_run || self->npend) {
        PyErr_SetString(PyExc_RuntimeError, "slots come back between runs only");
        return NULL;
    }
    PyObject *out = PyList_New(self->nlent);
    if (!out) return NULL;
    for (int i = 0; i < self->nlent; i++) {
        PyObject *v = PyLong_FromLong(self->lent[i]);
        if (!v) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
    }
    PyObject *r = Py_BuildValue("(NiO)", out, self->peak, self->starved ? Py_True : Py_False);
    if (!r) return NULL; /* the slots stay lent: nothing is lost */
    self->nlent = 0;
    self->peak = self->starved = 0;
    return r;
}

static PyObject *FastPath_get_batches(FastPath *self, void *Py_UNUSED(c)) {
    return Py_BuildValue("(KK)", self->batch_calls, self->batched);
}

static PyObject *FastPath_get_finishing(FastPath *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->finishing);
}

static PyObject *FastPath_get_stale(FastPath *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->stale); }

static int FastPath_set_stale(FastPath *self, PyObject *value, void *Py_UNUSED(c)) {
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete stale");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) return -1;
    self->stale = v;
    return 0;
}

static PyObject *FastPath_get_lent(FastPath *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->nlent); }

static PyObject *FastPath_get_peak(FastPath *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->peak); }

static PyObject *FastPath_get_starved(FastPath *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->starved); }

static PyObject *FastPath_get_rx_batch(FastPath *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->rx_batch); }

static PyObject *FastPath_get_syscalls(FastPath *self, void *Py_UNUSED(c)) {
    ring_settle(self);
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsK}", "recv_calls", self->rx_calls, "recv_datagrams",
                         self->rx_datagrams, "send_calls", self->tx_calls, "send_datagrams", self->tx_datagrams,
                         "peeks", self->peeks, "gso_sends", self->gso_sends, "gso_datagrams", self->gso_datagrams,
                         "gso_refused", self->gso_refused, "uring_enters", self->uring_enters, "uring_sends",
                         self->uring_sends);
}

static PyObject *FastPath_get_held(FastPath *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->held); }

static int FastPath_set_held(FastPath *self, PyObject *value, void *Py_UNUSED(c)) {
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete held");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) return -1;
    self->held = v;
    return 0;
}

static PyObject *FastPath_get_lock(FastPath *self, void *Py_UNUSED(c)) {
    return Py_NewRef(self->lock ? (PyObject *)self->lock : Py_None);
}

static int FastPath_set_lock(FastPath *self, PyObject *value, void *Py_UNUSED(c)) {
    if (!value || (value != Py_None && !Py_IS_TYPE(value, &NodeLockType))) {
        PyErr_SetString(PyExc_TypeError, "lock is a NodeLock or None");
        return -1;
    }
    if (self->in_run || self->npend) {
        PyErr_SetString(PyExc_RuntimeError, "the lock changes between runs only");
        return -1;
    }
    Py_XSETREF(self->lock, value == Py_None ? NULL : (NodeLock *)Py_NewRef(value));
    return 0;
}

static PyObject *FastPath_get_pool_low(FastPath *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->pool_low);
}

static int FastPath_set_pool_low(FastPath *self, PyObject *value, void *Py_UNUSED(c)) {
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete pool_low");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) return -1;
    self->pool_low = v;
    return 0;
}

static PyObject *FastPath_get_crossings(FastPath *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(self->crossings);
}

static PyMethodDef FastPath_methods[] = {
    {"configure", (PyCFunction)FastPath_configure, METH_VARARGS, configure_doc},
    {"burst", (PyCFunction)FastPath_burst, METH_VARARGS, burst_doc},
    {"take_counters", (PyCFunction)FastPath_take_counters, METH_NOARGS, take_counters_doc},
    {"worker_verdicts", (PyCFunction)FastPath_worker_verdicts, METH_VARARGS, worker_verdicts_doc},
    {"lend", (PyCFunction)FastPath_lend, METH_O, lend_doc},
    {"reclaim", (PyCFunction)FastPath_reclaim, METH_NOARGS, reclaim_doc},
    {"let_go", (PyCFunction)FastPath_let_go, METH_O, let_go_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FastPath_getset[] = {
    {"lent", (getter)FastPath_get_lent, NULL, "how many pool slots are lent for reading", NULL},
    {"peak", (getter)FastPath_get_peak, NULL, "the most datagrams one receive returned since the last reclaim", NULL},
    {"starved", (getter)FastPath_get_starved, NULL,
     "a receive since the last reclaim filled every slot lent, and rx_batch would allow more", NULL},
    {"batches", (getter)FastPath_get_batches, NULL,
     "(calls into runtimes' batch entries, capsules they ran) so far", NULL},
    {"finishing", (getter)FastPath_get_finishing, NULL,
     "True while the results of a batch run are finished: the tables cannot change yet", NULL},
    {"stale", (getter)FastPath_get_stale, (setter)FastPath_set_stale,
     "set while finishing when the node's tables moved: the owner's refresh() is called after", NULL},
    {"rx_batch", (getter)FastPath_get_rx_batch, NULL, "the most datagrams one receive call reads", NULL},
    {"syscalls", (getter)FastPath_get_syscalls, NULL,
     "system calls made so far and the datagrams they moved: recv_calls (recvmmsg), recv_datagrams,\n"
     "send_calls (sendmmsg), send_datagrams, peeks (a 1-byte MSG_PEEK at the end of a visit), gso_sends\n"
     "(UDP GSO messages among the sends), gso_datagrams (the datagrams they carried), gso_refused (GSO\n"
     "messages the kernel refused, sent again without), uring_enters (io_uring_enter calls of `wait`, each\n"
     "carrying a visit's last sends and the next wait; see _fastpath_uring.c), uring_sends (the messages\n"
     "they carried, counted in send_datagrams and gso_* as sendmmsg's are)", NULL},
    {"held", (getter)FastPath_get_held, (setter)FastPath_set_held,
     "True while the node's queue holds capsules: every datagram goes to on_slow", NULL},
    {"pool_low", (getter)FastPath_get_pool_low, (setter)FastPath_set_pool_low,
     "True while the node's pool is below its reserve: a worker lane admits nothing in C", NULL},
    {"lock", (getter)FastPath_get_lock, (setter)FastPath_set_lock,
     "the node's NodeLock, dropped with the GIL around system calls (None: one thread)", NULL},
    {"crossings", (getter)FastPath_get_crossings, NULL,
     "calls between C and Python made for capsules so far (callbacks and inflight claims)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_runtime.net._fastpath.FastPath",
    .tp_doc = PyDoc_STR("The compiled per-capsule path of one UDP socket (see the module docstring)."),
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_traverse = (traverseproc)FastPath_traverse,
    .tp_clear = (inquiry)FastPath_clear,
    .tp_methods = FastPath_methods,
    .tp_getset = FastPath_getset,
};

#define WAIT_EVENTS 64

#include "_fastpath_uring.c" /* a visit's last sends and the next wait in one io_uring_enter */
#define EVENT_READ 1
#define EVENT_WRITE 2

PyDoc_STRVAR(wait_doc,
"wait(epfd, fast, timeout, limit[, lock]) -> [(fd, events)]\n\n"
"epoll_wait on `epfd` for up to `timeout` seconds (None: no limit). Readable sockets in\n"
"`fast` (fd -> the FastPath reading it) are read here, each as far as its fair share\n"
"allows and at most `limit` datagrams a visit, and waiting goes on as\n"
"long as each capsule was finished in C; returns the other ready descriptors (selectors'\n"
"event masks) as soon as there are any, as soon as Python code ran, or at the timeout.\n"
"A batch handed to a worker (`admit`, the one Python call) does not end the wait: it\n"
"goes on until the worker writes, or until the time admit named for the loop's look.\n"
"A callable in `fast` is a worker's wake-up (its eventfd): called here when readable, it\n"
"returns when the loop must turn (monotonic ns; 0: no need, 1: at once).\n"
"`lock` (a NodeLock) is dropped with the GIL while epoll_wait blocks.");

static PyObject *fp_wait_in(PyObject *args);

/* A worker wrote (EventLoop.add_ready: WOKEN; or the wait's spin found its verdicts): FP's callback
 * collects the verdicts and names when the loop must turn (0: no need, 1: at once: *CALLED
 * is set; else the time joins g_due_ns); a worker lane collects in C first and calls Python
 * only for what it leaves. 0, or -1 with an error set. */
static int worker_wrote(PyObject *fp, int *called, int woken) {
    Py_INCREF(fp);
    PyObject *cb = fp;
    if (Py_IS_TYPE(fp, &WorkerLaneType)) {
        WorkerLane *lane = (WorkerLane *)fp;
        unsigned long long done = lane->c_done, due = 0;
        int lr = lane_collect(lane, &due, woken);
        if (lr < 0) {
            Py_DECREF(fp);
            return -1;
        }
        if (due == 1) *called = 1; /* its finish left the loop something to do */
        else if (due && (!g_due_ns || due < g_due_ns)) g_due_ns = due;
        if (lr == 0) {
            if (lane->c_done != done) lane->c_collects++; /* a wake-up with nothing new is no collect */
            lane_watch(lane);
            Py_DECREF(fp);
            return 0;
        }
        cb = lane->ready;
    }
    PyObject *r = PyObject_CallNoArgs(cb);
    Py_DECREF(fp);
    if (!r) return -1;
    unsigned long long due = turn_due(r);
    if (due == 1) *called = 1;
    else if (due && (!g_due_ns || due < g_due_ns)) g_due_ns = due;
    return 0;
}

static PyObject *fp_wait(PyObject *Py_UNUSED(m), PyObject *args) {
    lanes_clear();
    PyObject *out = fp_wait_in(args);
    lanes_clear();
    return out;
}

static PyObject *fp_wait_in(PyObject *args) {
    int epfd;
    PyObject *fast, *timeout, *lock_obj = Py_None;
    long limit;
    if (!PyArg_ParseTuple(args, "iO!Ol|O", &epfd, &PyDict_Type, &fast, &timeout, &limit, &lock_obj)) return NULL;
    if (lock_obj != Py_None && !Py_IS_TYPE(lock_obj, &NodeLockType)) {
        PyErr_SetString(PyExc_TypeError, "wait's lock is a NodeLock or None");
        return NULL;
    }
    NodeLock *lock = lock_obj == Py_None ? NULL : (NodeLock *)lock_obj;
    unsigned long me = PyThread_get_thread_ident();
    double deadline = -1.0;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        deadline = (double)now_ns() / 1e9 + (t > 0 ? t : 0);
    }
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    struct epoll_event evs[WAIT_EVENTS];
    /* a FastPath whose visit, the wake-up's last, left its forwards for the next wait's
     * io_uring_enter (a reference; sent the old way before anything returns to Python) */
    FastPath *deferred = NULL;
    g_due_ns = 0;
    for (;;) {
        if (g_due_ns) { /* a batch handed over in C needs the loop by then */
            double due = (double)g_due_ns / 1e9;
            if (deadline < 0 || due < deadline) deadline = due;
            g_due_ns = 0;
        }
        double until = deadline; /* and by the first due of a lane's batches still out */
        unsigned long long ldue = lanes_due();
        if (ldue && (until < 0 || (double)ldue / 1e9 < until)) until = (double)ldue / 1e9;
        int ms = -1;
        if (until >= 0) {
            double left = until - (double)now_ns() / 1e9;
            ms = left <= 0 ? 0 : (int)(left * 1000.0 + 0.999); /* round up, as selectors does */
        }
        int n = -2, err = 0;
        if (deferred) {
            FastPath *d = deferred;
            deferred = NULL;
            if (ms != 0) n = uring_wait(d, epfd, evs, WAIT_EVENTS, ms, lock, me);
            err = errno;
            if (n == -2) flush_sends(d); /* no ring here, or it took nothing: the old way */
            Py_DECREF(d);
        }
        if (n == -2 && !lock && ms != 0) {
            /* a batch out to a worker polling on CPUs of its own: its verdicts may be back
             * sooner than a wake-up would come */
            PyObject *answered = lanes_spin();
            if (answered) {
                int called = 0;
                int wr = worker_wrote(answered, &called, 0);
                Py_DECREF(answered);
                if (wr < 0) goto fail;
                if (called) return out; /* nothing is deferred here (n == -2) */
                continue;
            }
        }
        if (n == -2) {
            g_waits++;
            Py_BEGIN_ALLOW_THREADS
            int dropped = nl_drop(lock);
            n = epoll_wait(epfd, evs, WAIT_EVENTS, ms);
            err = errno;
            nl_retake(lock, dropped, me);
            Py_END_ALLOW_THREADS
        }
        errno = err;
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) goto fail;
                return out; /* a signal: let the loop look at its state */
            }
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        int called = 0;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint32_t e = evs[i].events;
            PyObject *key = PyLong_FromLong(fd);
            if (!key) goto fail;
            PyObject *fp = PyDict_GetItemWithError(fast, key); /* borrowed */
            Py_DECREF(key);
            if (!fp && PyErr_Occurred()) goto fail;
            if (fp && Py_IS_TYPE(fp, &FastPathType) && !(e & ~(uint32_t)(EPOLLIN | EPOLLERR))) {
                FastPath *f = (FastPath *)fp;
                Py_INCREF(fp); /* the burst runs Python, which may drop it from `fast` */
                /* the wake-up's last visit, nothing for Python so far: its forwards may go with
                 * the next wait (io_uring), unless the visit ends up calling Python */
                f->defer_sends = f->uring && i == n - 1 && !called && PyList_GET_SIZE(out) == 0;
                long r = do_burst(f, fd, limit, &called);
                f->defer_sends = 0;
                if (f->npend && (r == -1 || called)) flush_sends(f);
                if (f->npend) deferred = f; /* keeps the reference */
                else Py_DECREF(fp);
                if (r == -1) goto fail;
                if (r >= 0) continue; /* -2: no slot lent, -3: not its socket; the loop's reader */
            } else if (fp && !Py_IS_TYPE(fp, &FastPathType) && PyCallable_Check(fp) && (e & EPOLLIN)) {
                if (worker_wrote(fp, &called, 1) < 0) goto fail;
                continue;
            }
            int mask = 0;
            if (e & ~(uint32_t)EPOLLIN) mask |= EVENT_WRITE;
            if (e & ~(uint32_t)EPOLLOUT) mask |= EVENT_READ;
            PyObject *t = Py_BuildValue("(ii)", fd, mask);
            if (!t) goto fail;
            int r = PyList_Append(out, t);
            Py_DECREF(t);
            if (r < 0) goto fail;
        }
        int signalled = g_uring_signal;
        g_uring_signal = 0;
        if (PyList_GET_SIZE(out) > 0 || called || n == 0 || signalled ||
            (until >= 0 && (double)now_ns() / 1e9 >= until)) {
            if (deferred) { /* the loop turns: the visit's forwards leave now */
                flush_sends(deferred);
                Py_CLEAR(deferred);
            }
            if (signalled && PyErr_CheckSignals() < 0) goto fail;
            return out;
        }
    }
fail:
    if (deferred) {
        flush_sends(deferred);
        Py_DECREF(deferred);
    }
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(inflight_doc,
"inflight() -> (owner, slot, n, link, code) or None\n\n"
"The capsule a FastPath is running right now, claimed for Python: a host call needs its\n"
"environment, so the node takes it over (`owner.materialize(...)`) and the FastPath hands\n"
"its result over after the run. None when no capsule is running or it was claimed.");

static PyObject *fp_inflight(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    FastPath *f = g_inflight;
    if (!f || !f->in_run) Py_RETURN_NONE;
    if (f->in_batch) { /* the capsule of the batch the runtime is running (index or index_at) */
        uint32_t k = pan_fast_batch_running(f->in_batch);
        if (k >= f->in_batch->count) Py_RETURN_NONE;
        int at = f->in_first + (int)k;
        if (f->rslot[at] < 0) Py_RETURN_NONE; /* claimed already */
        PyObject *out = Py_BuildValue("(Oiiii)", f->owner, f->rslot[at], (int)f->rmsg[at].msg_len, f->in_link,
                                      f->in_code);
        if (!out) return NULL;
        f->crossings++;
        f->rslot[at] = -1; /* the slot is Python's now */
        f->in_batch->stop = 1; /* the runtime runs no capsule after this one */
        return out;
    }
    if (f->in_slot < 0) Py_RETURN_NONE;
    PyObject *out = Py_BuildValue("(Oiiii)", f->owner, f->in_slot, f->in_n, f->in_link, f->in_code);
    if (!out) return NULL;
    f->crossings++;
    f->in_slot = -1; /* the slot is Python's now */
    return out;
}

PyDoc_STRVAR(waits_doc, "waits() -> int\n\nepoll_wait calls `wait` made so far on this thread.");

static PyObject *fp_waits(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromUnsignedLongLong(g_waits);
}

static PyMethodDef module_methods[] = {
    {"wait", fp_wait, METH_VARARGS, wait_doc},
    {"waits", fp_waits, METH_NOARGS, waits_doc},
    {"uring_probe", fp_uring_probe, METH_NOARGS, uring_probe_doc},
    {"inflight", fp_inflight, METH_NOARGS, inflight_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_runtime.net._fastpath",
    .m_doc = PyDoc_STR("The compiled per-capsule path of a UDP netlink; see pan_runtime/net/udp_fast.py."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FastPathType) < 0) return NULL;
    if (PyType_Ready(&NodeLockType) < 0) return NULL;
    if (PyType_Ready(&WorkerLaneType) < 0) return NULL;
    str_release = PyUnicode_InternFromString("release");
    if (!str_release) return NULL;
    str_refresh = PyUnicode_InternFromString("refresh");
    if (!str_refresh) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0 ||
        PyModule_AddObjectRef(m, "NodeLock", (PyObject *)&NodeLockType) < 0 ||
        PyModule_AddObjectRef(m, "WorkerLane", (PyObject *)&WorkerLaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
