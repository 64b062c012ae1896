/* pan_runtime.net._fastpath: the compiled per-capsule path of a UDP netlink.
 *
 * One FastPath serves one UDP socket of a node. `burst` reads datagrams straight into a
 * slot of the node's segment pool and, for the common case, finishes each one in C:
 * neighbour check, header check, hop limit, code lookup by name, one call into the code
 * object's C entry (see include/pan_fast.h), route lookup, MTU check, send. A datagram or
 * verdict this file does not finish goes to Python, which owns every rule of the node:
 *
 *   on_slow(n, msg_flags, (host, port))   before a run: unknown peer, truncated or
 *                                         malformed datagram, system or unknown code, ...
 *   on_after(verdict, code, link, n, dt)  after a run: any verdict but a plain forward,
 *                                         a send that failed, or a run during which the
 *                                         code reached the Python host
 *   on_run(code, link, n)                 a code object whose runtime has no C entry:
 *                                         Python runs it and returns the verdict (then
 *                                         as after a C run), or finishes it and
 *                                         returns None
 *
 * `wait` is the event loop's epoll_wait: readable fast sockets are read here and the wait
 * goes on while every capsule was finished in C, so a forwarding node runs no Python at all
 * between wake-ups; other ready descriptors, or any Python callback, end the wait.
 * Python callbacks may rebuild the tables (`configure`); nothing here keeps a pointer into
 * them across a callback.
 *
 * In both cases the receive slot moves to Python, which gives the FastPath a fresh one.
 * Counters of capsules finished here are kept in C until `take_counters` moves them to
 * the node's statistics. The tables (neighbours, routes, code entries) are copies the
 * node rebuilds with `configure` whenever its own tables change.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "pan_fast.h"

#define HEADER_SIZE 52
#define HOP_OFFSET 2
#define NAME_OFFSET 4
#define NAME_SIZE 32
#define ADDR_SIZE 16
#define WIRE_VERSION 1
#define KIND_MASK 0xFF
#define KIND_FORWARD 2

typedef struct {
    uint8_t name[NAME_SIZE];
    pan_fast_run_fn run;
    void *state;
    PyObject *lean; /* the runtime's fast_accept(body, prev_hop) when it has no C entry, or NULL */
    unsigned long long in, forwarded, time_ns, max_ns;
} fp_code;

typedef struct {
    struct sockaddr_storage sa;
    socklen_t salen;
    uint8_t address[ADDR_SIZE];
    PyObject *address_obj; /* the same 16 bytes, for fast_accept */
    Py_ssize_t mtu;
    unsigned long long received, received_bytes, sent, sent_bytes, largest_sent;
} fp_link;

typedef struct {
    uint8_t dest[ADDR_SIZE];
    int link;
} fp_route;

typedef struct {
    PyObject_HEAD
    int fd;
    uint8_t *base;          /* the pool's first byte */
    Py_ssize_t slot_size;
    Py_ssize_t slot_count;
    int slot;               /* the slot the next datagram is read into; -1: none */
    PyObject *pool;         /* kept alive while the FastPath may write into it */
    PyObject *free;         /* the pool's list of free slot indexes */
    PyObject *host;         /* the node's PNI host: `current` is None during a C run */
    PyObject *queue;        /* the node's queue: capsules go to Python while it holds any */
    PyObject *on_slow;
    PyObject *on_after;
    PyObject *on_run;
    PyObject *on_fault;
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
    unsigned long long received, sent;
    /* how capsules went: finished in C, run in Python, handed over after a C run, slow */
    unsigned long long n_finished, n_python_runs, n_handed_over, n_slow;
    /* the capsule being run */
    int in_slot, in_n, in_link, in_code;
} FastPath;

static __thread FastPath *g_inflight; /* the FastPath running a capsule on this thread, if any */
static PyObject *str_current;
static PyObject *str_release;

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
    for (int i = 0; c && i < nc; i++) Py_XDECREF(c[i].lean);
    PyMem_Free(l);
    PyMem_Free(c);
}

/* ---------------------------------------------------------------- the type */

static int FastPath_init(FastPath *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"fd", "pool", "free", "base", "slot_size", "slot_count", "host", "queue",
                         "on_slow", "on_after", "on_run", "on_fault", "owner", NULL};
    int fd;
    unsigned long long base;
    Py_ssize_t slot_size, slot_count;
    PyObject *pool, *free, *host, *queue, *on_slow, *on_after, *on_run, *on_fault, *owner;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOO!KnnOOOOOOO", kw, &fd, &pool, &PyList_Type, &free, &base,
                                     &slot_size, &slot_count, &host, &queue, &on_slow, &on_after, &on_run, &on_fault,
                                     &owner))
        return -1;
    if (slot_size <= 0 || slot_count <= 0 || base == 0) {
        PyErr_SetString(PyExc_ValueError, "FastPath needs a pool with a base address and positive slot sizes");
        return -1;
    }
    self->fd = fd;
    self->base = (uint8_t *)(uintptr_t)base;
    self->slot_size = slot_size;
    self->slot_count = slot_count;
    self->slot = -1;
    self->default_link = -1;
    self->in_slot = -1;
    Py_XSETREF(self->pool, Py_NewRef(pool));
    Py_XSETREF(self->free, Py_NewRef(free));
    Py_XSETREF(self->host, Py_NewRef(host));
    Py_XSETREF(self->queue, Py_NewRef(queue));
    Py_XSETREF(self->on_slow, Py_NewRef(on_slow));
    Py_XSETREF(self->on_after, Py_NewRef(on_after));
    Py_XSETREF(self->on_run, Py_NewRef(on_run));
    Py_XSETREF(self->on_fault, Py_NewRef(on_fault));
    Py_XSETREF(self->owner, Py_NewRef(owner));
    return 0;
}

static int FastPath_traverse(FastPath *self, visitproc visit, void *arg) {
    Py_VISIT(self->pool);
    Py_VISIT(self->free);
    Py_VISIT(self->host);
    Py_VISIT(self->queue);
    Py_VISIT(self->on_slow);
    Py_VISIT(self->on_after);
    Py_VISIT(self->on_run);
    Py_VISIT(self->on_fault);
    for (int i = 0; i < self->ncodes; i++) Py_VISIT(self->codes[i].lean);
    for (int i = 0; i < self->nlinks; i++) Py_VISIT(self->links[i].address_obj);
    Py_VISIT(self->owner);
    return 0;
}

static int FastPath_clear(FastPath *self) {
    Py_CLEAR(self->pool);
    Py_CLEAR(self->free);
    Py_CLEAR(self->host);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->on_slow);
    Py_CLEAR(self->on_after);
    Py_CLEAR(self->on_run);
    Py_CLEAR(self->on_fault);
    for (int i = 0; i < self->ncodes; i++) Py_CLEAR(self->codes[i].lean);
    for (int i = 0; i < self->nlinks; i++) Py_CLEAR(self->links[i].address_obj);
    Py_CLEAR(self->owner);
    return 0;
}

static void FastPath_dealloc(FastPath *self) {
    PyObject_GC_UnTrack(self);
    if (g_inflight == self) g_inflight = NULL;
    FastPath_clear(self);
    free_tables(self->links, self->nlinks, self->codes, self->ncodes);
    PyMem_Free(self->routes);
    PyMem_Free(self->copybuf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(configure_doc,
"configure(address, links, routes, default_link, codes, copy_on_send)\n\n"
"Replace the tables: links are (endpoint, address, mtu), routes (dest, link index),\n"
"codes (name, C entry address or 0 to run in Python, state). Counters restart at zero\n"
"(take them first).");

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
    for (Py_ssize_t i = 0; i < L; i++) {
        PyObject *ep;
        Py_buffer a;
        Py_ssize_t mtu;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(links, i), "Oy*n", &ep, &a, &mtu)) goto fail;
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
        unsigned long long entry, state;
        PyObject *lean;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(codes, i), "y*KKO", &n, &entry, &state, &lean)) goto fail;
        int ok = n.len == NAME_SIZE;
        if (ok) memcpy(nc[i].name, n.buf, NAME_SIZE);
        PyBuffer_Release(&n);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "a code entry is (32-byte name, C entry address or 0, state, fast_accept or None)");
            goto fail;
        }
        nc[i].run = (pan_fast_run_fn)(uintptr_t)entry;
        nc[i].state = (void *)(uintptr_t)state;
        nc[i].lean = lean == Py_None ? NULL : Py_NewRef(lean);
    }
    if (default_link < -1 || default_link >= L) {
        PyErr_SetString(PyExc_ValueError, "default link index out of range");
        goto fail;
    }
    if (copy_on_send && !self->copybuf) {
        self->copybuf = PyMem_Malloc((size_t)self->slot_size);
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
    PyBuffer_Release(&addr);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&addr);
    free_tables(nl, (int)L, nc, (int)C);
    PyMem_Free(nr);
    return NULL;
}

/* Run the code on the datagram in `buf` (its C entry, else `on_run` in Python); returns 1 when
 * finished here, 0 when the capsule went to Python (already handed over), -1 on a Python error. */
static int run_one(FastPath *self, uint8_t *buf, int n, int li, int ci) {
    fp_code *code = &self->codes[ci];
    fp_link *in = &self->links[li];
    PyObject *old = PyObject_GetAttr(self->host, str_current);
    if (!old) return -1;
    if (PyObject_SetAttr(self->host, str_current, Py_None) < 0) {
        Py_DECREF(old);
        return -1;
    }
    self->ctx.origin_kind = 0;
    self->ctx.has_prev_hop = 1;
    memcpy(self->ctx.prev_hop, in->address, ADDR_SIZE);
    self->in_slot = self->slot, self->in_n = n, self->in_link = li, self->in_code = ci;
    g_inflight = self;
    unsigned long long t0 = now_ns();
    int32_t verdict;
    if (code->run) {
        verdict = code->run(code->state, buf + HEADER_SIZE, (uintptr_t)(n - HEADER_SIZE), &self->ctx);
    } else if (code->lean) {
        /* code that runs in Python, without an environment: fast_accept(body, prev_hop) */
        PyObject *body = PyMemoryView_FromMemory((char *)buf + HEADER_SIZE, n - HEADER_SIZE, PyBUF_WRITE);
        if (!body) {
            g_inflight = NULL;
            self->in_slot = -1;
            Py_DECREF(old);
            return -1;
        }
        PyObject *r = PyObject_CallFunctionObjArgs(code->lean, body, in->address_obj, NULL);
        PyObject *type = NULL, *exc = NULL, *tb = NULL;
        if (!r) {
            PyErr_Fetch(&type, &exc, &tb);
            PyErr_NormalizeException(&type, &exc, &tb);
        }
        PyObject *gone = PyObject_CallMethodNoArgs(body, str_release);
        if (gone) Py_DECREF(gone);
        else PyErr_Clear(); /* a view of it is still held: it stays valid, as the pool does */
        Py_DECREF(body);
        if (!r) { /* the code faulted: Python records it and gives a verdict to hand over */
            Py_XDECREF(type);
            Py_XDECREF(tb); /* the traceback holds the run's frames: not kept */
            if (exc) {
                r = PyObject_CallFunction(self->on_fault, "iiiN", ci, li, n, exc);
            } else {
                PyErr_SetString(PyExc_SystemError, "fast_accept failed without an exception");
            }
        }
        verdict = r ? (int32_t)PyLong_AsLong(r) : -1;
        Py_XDECREF(r);
        if (!r || (verdict == -1 && PyErr_Occurred())) {
            g_inflight = NULL;
            self->in_slot = -1;
            Py_DECREF(old);
            return -1;
        }
    } else {
        /* a runtime without a C entry: Python runs the code and returns the verdict, or
         * finishes the capsule itself and returns None */
        PyObject *r = PyObject_CallFunction(self->on_run, "iii", ci, li, n);
        if (!r || r == Py_None) {
            g_inflight = NULL;
            self->in_slot = -1;
            Py_DECREF(old);
            if (!r) return -1;
            Py_DECREF(r);
            self->n_python_runs++;
            return 0;
        }
        verdict = (int32_t)PyLong_AsLong(r);
        Py_DECREF(r);
        if (verdict == -1 && PyErr_Occurred()) {
            g_inflight = NULL;
            self->in_slot = -1;
            Py_DECREF(old);
            return -1;
        }
    }
    unsigned long long dt = now_ns() - t0;
    g_inflight = NULL;
    self->in_slot = -1;
    PyObject *cur = PyObject_GetAttr(self->host, str_current);
    if (!cur) {
        Py_DECREF(old);
        return -1;
    }
    int reached_python = cur != Py_None;
    Py_DECREF(cur);
    if (!reached_python && PyObject_SetAttr(self->host, str_current, old) < 0) {
        Py_DECREF(old);
        return -1;
    }
    Py_DECREF(old);
    if (!reached_python && verdict >= 0 && (verdict & KIND_MASK) == KIND_FORWARD) {
        uint32_t off = (uint32_t)verdict >> 8;
        uint32_t body_len = (uint32_t)(n - HEADER_SIZE);
        if ((uint64_t)off + ADDR_SIZE <= body_len) {
            const uint8_t *dest = buf + HEADER_SIZE + off;
            int out = memcmp(dest, self->self_addr, ADDR_SIZE) == 0 ? -1 : find_route(self, dest);
            if (out >= 0 && n <= self->links[out].mtu) {
                fp_link *ol = &self->links[out];
                const uint8_t *data = buf;
                if (self->copy_on_send) {
                    memcpy(self->copybuf, buf, (size_t)n);
                    data = self->copybuf;
                }
                ssize_t sent = sendto(self->fd, data, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&ol->sa, ol->salen);
                if (sent == n) {
                    code->in++;
                    code->forwarded++;
                    code->time_ns += dt;
                    if (dt > code->max_ns) code->max_ns = dt;
                    in->received++;
                    in->received_bytes += (unsigned long long)n;
                    ol->sent++;
                    ol->sent_bytes += (unsigned long long)n;
                    if ((unsigned long long)n > ol->largest_sent) ol->largest_sent = (unsigned long long)n;
                    self->received++;
                    self->sent++;
                    self->n_finished++;
                    return 1;
                }
            }
        }
    }
    self->n_handed_over++;
    PyObject *r = PyObject_CallFunction(self->on_after, "iiiiK", (int)verdict, ci, li, n, dt);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* Take a slot from the pool's free list; 0, or -1 when the pool has none (no error set). */
static int take_slot(FastPath *self) {
    Py_ssize_t k = PyList_GET_SIZE(self->free);
    if (k == 0) return -1;
    PyObject *last = PyList_GET_ITEM(self->free, k - 1);
    long s = PyLong_AsLong(last);
    if (s < 0 || s >= self->slot_count) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a free slot index outside the pool");
        return -2;
    }
    if (PyList_SetSlice(self->free, k - 1, k, NULL) < 0) return -2;
    self->slot = (int)s;
    return 0;
}

/* Give the receive slot back to the pool, so the pool is whole between bursts. */
static int give_slot(FastPath *self) {
    if (self->slot < 0) return 0;
    PyObject *i = PyLong_FromLong(self->slot);
    if (!i) return -1;
    int r = PyList_Append(self->free, i);
    Py_DECREF(i);
    self->slot = -1;
    return r;
}

/* Read and handle up to LIMIT datagrams. Returns how many were read, -1 on a Python error,
 * -2 when the pool has no free slot; *called is set when Python code ran. */
static long do_burst(FastPath *self, long limit, int *called) {
    int t = take_slot(self);
    if (t == -1) return -2;
    if (t < -1) return -1;
    long count = 0;
    while (count < limit && self->slot >= 0) {
        uint8_t *buf = self->base + (Py_ssize_t)self->slot * self->slot_size;
        struct sockaddr_storage src;
        struct iovec iov = {buf, (size_t)self->slot_size};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &src;
        msg.msg_namelen = sizeof src;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        ssize_t got = recvmsg(self->fd, &msg, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR) continue;
            break; /* EAGAIN: the socket is empty; any other error: the next turn sees it */
        }
        count++;
        int n = (int)got;
        int li = find_link(self, &src);
        int ci = -1;
        if (li >= 0 && !(msg.msg_flags & MSG_TRUNC) && n >= HEADER_SIZE && buf[0] == WIRE_VERSION && buf[1] == 0 &&
            buf[3] == 0 && buf[HOP_OFFSET] != 0 && PyObject_Length(self->queue) == 0) {
            ci = find_code(self, buf + NAME_OFFSET);
        }
        if (ci < 0) {
            *called = 1;
            self->n_slow++;
            PyObject *addr = from_sockaddr(&src);
            if (!addr) goto error;
            PyObject *r = PyObject_CallFunction(self->on_slow, "iiN", n, (int)msg.msg_flags, addr);
            if (!r) goto error;
            Py_DECREF(r);
            continue;
        }
        buf[HOP_OFFSET]--;
        int done = run_one(self, buf, n, li, ci);
        if (done < 0) goto error;
        if (done == 0) *called = 1;
    }
    if (give_slot(self) < 0) return -1;
    return count;
error: {
    /* a Python error: the buffer still goes back to the pool, the error goes on up */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (give_slot(self) < 0) PyErr_Clear();
    PyErr_Restore(type, value, tb);
    return -1;
}
}

PyDoc_STRVAR(burst_doc,
"burst(limit) -> int\n\n"
"Read up to `limit` datagrams without blocking; returns how many were read, or -1 when\n"
"the pool has no free slot to read into (the caller reads them its own way).");

static PyObject *FastPath_burst(FastPath *self, PyObject *arg) {
    long limit = PyLong_AsLong(arg);
    if (limit < 0 && PyErr_Occurred()) return NULL;
    int called = 0;
    long r = do_burst(self, limit, &called);
    if (r == -1) return NULL;
    return PyLong_FromLong(r == -2 ? -1 : r);
}

PyDoc_STRVAR(take_counters_doc,
"take_counters() -> (received, sent, codes, links, paths)\n\n"
"Counters of capsules finished in C since the last call, then zeroed: codes as\n"
"(in, forwarded, time_ns, max_ns) and links as (received, received_bytes, sent,\n"
"sent_bytes, largest_sent), in configure's order; paths as (finished in C, run in\n"
"Python, handed over after a C run, slow).");

static PyObject *FastPath_take_counters(FastPath *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *codes = PyList_New(self->ncodes), *links = PyList_New(self->nlinks);
    if (!codes || !links) goto fail;
    for (int i = 0; i < self->ncodes; i++) {
        fp_code *c = &self->codes[i];
        PyObject *t = Py_BuildValue("(KKKK)", c->in, c->forwarded, c->time_ns, c->max_ns);
        if (!t) goto fail;
        PyList_SET_ITEM(codes, i, t);
        c->in = c->forwarded = c->time_ns = c->max_ns = 0;
    }
    for (int i = 0; i < self->nlinks; i++) {
        fp_link *l = &self->links[i];
        PyObject *t = Py_BuildValue("(KKKKK)", l->received, l->received_bytes, l->sent, l->sent_bytes, l->largest_sent);
        if (!t) goto fail;
        PyList_SET_ITEM(links, i, t);
        l->received = l->received_bytes = l->sent = l->sent_bytes = l->largest_sent = 0;
    }
    PyObject *out = Py_BuildValue("(KKNN(KKKK))", self->received, self->sent, codes, links, self->n_finished,
                                  self->n_python_runs, self->n_handed_over, self->n_slow);
    self->received = self->sent = 0;
    self->n_finished = self->n_python_runs = self->n_handed_over = self->n_slow = 0;
    return out;
fail:
    Py_XDECREF(codes);
    Py_XDECREF(links);
    return NULL;
}

static PyObject *FastPath_get_slot(FastPath *self, void *Py_UNUSED(c)) { return PyLong_FromLong(self->slot); }

static int FastPath_set_slot(FastPath *self, PyObject *value, void *Py_UNUSED(c)) {
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete slot");
        return -1;
    }
    long s = PyLong_AsLong(value);
    if (s == -1 && PyErr_Occurred()) return -1;
    if (s < -1 || s >= self->slot_count) {
        PyErr_Format(PyExc_ValueError, "slot %ld outside the pool's %zd slots", s, self->slot_count);
        return -1;
    }
    self->slot = (int)s;
    return 0;
}

static PyMethodDef FastPath_methods[] = {
    {"configure", (PyCFunction)FastPath_configure, METH_VARARGS, configure_doc},
    {"burst", (PyCFunction)FastPath_burst, METH_O, burst_doc},
    {"take_counters", (PyCFunction)FastPath_take_counters, METH_NOARGS, take_counters_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FastPath_getset[] = {
    {"slot", (getter)FastPath_get_slot, (setter)FastPath_set_slot, "the pool slot the next datagram is read into (-1: none)", NULL},
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
#define EVENT_READ 1
#define EVENT_WRITE 2

PyDoc_STRVAR(wait_doc,
"wait(epfd, fast, timeout, limit) -> [(fd, events)]\n\n"
"epoll_wait on `epfd` for up to `timeout` seconds (None: no limit). Readable sockets in\n"
"`fast` (fd -> FastPath) are read here, `limit` datagrams a burst, and waiting goes on as\n"
"long as each capsule was finished in C; returns the other ready descriptors (selectors'\n"
"event masks) as soon as there are any, as soon as Python code ran, or at the timeout.");

static PyObject *fp_wait(PyObject *Py_UNUSED(m), PyObject *args) {
    int epfd;
    PyObject *fast, *timeout;
    long limit;
    if (!PyArg_ParseTuple(args, "iO!Ol", &epfd, &PyDict_Type, &fast, &timeout, &limit)) return NULL;
    double deadline = -1.0;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        deadline = (double)now_ns() / 1e9 + (t > 0 ? t : 0);
    }
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    struct epoll_event evs[WAIT_EVENTS];
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            double left = deadline - (double)now_ns() / 1e9;
            ms = left <= 0 ? 0 : (int)(left * 1000.0 + 0.999); /* round up, as selectors does */
        }
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, evs, WAIT_EVENTS, ms);
        Py_END_ALLOW_THREADS
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
            if (fp && Py_IS_TYPE(fp, &FastPathType) && e == EPOLLIN && ((FastPath *)fp)->fd == fd) {
                long r = do_burst((FastPath *)fp, limit, &called);
                if (r == -1) goto fail;
                if (r != -2) continue; /* -2: no free slot; the loop's own reader deals with it */
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
        if (PyList_GET_SIZE(out) > 0 || called || n == 0) return out;
        if (deadline >= 0 && (double)now_ns() / 1e9 >= deadline) return out;
    }
fail:
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(inflight_doc,
"inflight() -> (owner, slot, n, link, code) or None\n\n"
"The capsule a FastPath is running right now, for a host call that needs its environment.");

static PyObject *fp_inflight(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    FastPath *f = g_inflight;
    if (!f || f->in_slot < 0) Py_RETURN_NONE;
    return Py_BuildValue("(Oiiii)", f->owner, f->in_slot, f->in_n, f->in_link, f->in_code);
}

PyDoc_STRVAR(release_doc,
"release_inflight()\n\n"
"The running capsule's slot now belongs to Python (its environment was built).");

static PyObject *fp_release_inflight(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    if (g_inflight) g_inflight->in_slot = -1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"wait", fp_wait, METH_VARARGS, wait_doc},
    {"inflight", fp_inflight, METH_NOARGS, inflight_doc},
    {"release_inflight", fp_release_inflight, METH_NOARGS, release_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_runtime.net._fastpath",
    .m_doc = PyDoc_STR("The compiled per-capsule path of a UDP netlink; see pan_runtime/net/fastpath.py."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FastPathType) < 0) return NULL;
    str_current = PyUnicode_InternFromString("current");
    str_release = PyUnicode_InternFromString("release");
    if (!str_current || !str_release) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
