/* pan_nodelock.h: the lock a node with several fast-path threads serialises its own work with.
 *
 * Host-internal (not part of the PNI), included by pan_runtime/net/_fastpath.c only. A node
 * with `limits.threads` above 1 reads its sockets on that many threads
 * (pan_runtime/net/lanes.py), but everything that is not a system call stays
 * one-at-a-time: Python code of the node (hand-overs, tables, statistics, the pool)
 * and every entry into a runtime (a wasm Store, a native image's support state, a JVM lane
 * and restricted_py's accounting are each made for one caller at a time). A thread holds
 * the lock for that work and drops it, together with the GIL, around the calls the kernel
 * does the work of: epoll_wait, recvmmsg, sendmmsg. Those are what the threads overlap.
 *
 * Reentrant for its owner (a callback of a run may wait again). It is dropped for a system
 * call only when held once: a nested wait keeps it, so no other thread enters node code
 * while an outer frame of this one is half-way through it. Blocking on the mutex always
 * happens with the GIL released, and the GIL is only waited for with the mutex either held
 * or not wanted, so the two never wait on each other.
 *
 * A thread that finds it held spins for up to NL_SPIN_NS before it sleeps on the mutex (when
 * the process may run on more than one CPU): a hold is the user-space part of a batch, a few
 * µs, while a sleep and the wake-up from another CPU cost tens of µs on a virtual machine,
 * which at capacity left each thread waiting for the other for a tenth of its time.
 */
#ifndef PAN_NODELOCK_H
#define PAN_NODELOCK_H

#include <pthread.h>
#include <sched.h>
#include <time.h>

/* how long a thread spins on a held lock before it sleeps on it (ns) */
#define NL_SPIN_NS 30000ull
#if defined(__x86_64__) || defined(__i386__)
#define NL_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define NL_RELAX() __asm__ __volatile__("yield")
#else
#define NL_RELAX() ((void)0)
#endif

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    unsigned long owner; /* PyThread_get_thread_ident() of the holder, 0: free (atomic) */
    long depth;          /* how many times the holder took it */
    unsigned long long contended; /* takes that had to wait for another thread */
    unsigned long long since;     /* when the holder took it (CLOCK_MONOTONIC ns) */
    unsigned long long held_ns;   /* ns it was held so far, by any thread: the serial part */
    unsigned long long spin_ns;   /* NL_SPIN_NS, or 0 when the process has one CPU to run on */
} NodeLock;

static inline unsigned long nl_owner(NodeLock *l) { return __atomic_load_n(&l->owner, __ATOMIC_ACQUIRE); }

static inline unsigned long long nl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* The holder gives it up entirely (depth back to 0). */
static inline void nl_free(NodeLock *l) {
    l->held_ns += nl_now() - l->since;
    l->depth = 0;
    __atomic_store_n(&l->owner, 0UL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&l->mu);
}

/* Wait for the mutex another thread holds (the GIL not held): spin while its holder may be
 * running on another CPU, then sleep. */
static void nl_wait(NodeLock *l) {
    if (l->spin_ns) {
        unsigned long long end = nl_now() + l->spin_ns;
        for (unsigned i = 1;; i++) {
            NL_RELAX();
            if ((i & 15) == 0) {
                if (__atomic_load_n(&l->owner, __ATOMIC_RELAXED) == 0 && pthread_mutex_trylock(&l->mu) == 0) return;
                if (nl_now() >= end) break;
            }
        }
    }
    pthread_mutex_lock(&l->mu);
}

/* Take L (the GIL held; released while waiting). */
static void nl_take(NodeLock *l) {
    unsigned long me = PyThread_get_thread_ident();
    if (nl_owner(l) == me) {
        l->depth++;
        return;
    }
    if (pthread_mutex_trylock(&l->mu) != 0) {
        Py_BEGIN_ALLOW_THREADS
        nl_wait(l);
        Py_END_ALLOW_THREADS
        l->contended++;
    }
    __atomic_store_n(&l->owner, me, __ATOMIC_RELEASE);
    l->depth = 1;
    l->since = nl_now();
}

/* Before a system call made with the GIL released: 1 when L (may be NULL) was held once by
 * this thread and is now free, else 0 (not held, or held by an outer frame too: kept). */
static inline int nl_drop(NodeLock *l) {
    if (!l || l->depth != 1 || nl_owner(l) != PyThread_get_thread_ident()) return 0;
    nl_free(l);
    return 1;
}

/* After that system call, still without the GIL: take L back if nl_drop freed it. */
static inline void nl_retake(NodeLock *l, int dropped, unsigned long me) {
    if (!dropped) return;
    if (pthread_mutex_trylock(&l->mu) != 0) {
        nl_wait(l);
        l->contended++;
    }
    __atomic_store_n(&l->owner, me, __ATOMIC_RELEASE);
    l->depth = 1;
    l->since = nl_now();
}

/* R = EXPR, a system call that does not block (MSG_DONTWAIT). With the node's lock LK (a
 * node with several fast-path threads) the call is made with the GIL and LK dropped, so the
 * other threads' node work goes on meanwhile; with one thread (LK NULL) there is nobody to
 * let in and it is made as is. errno is the call's. */
#define NL_SYSCALL(LK, R, EXPR)                          \
    do {                                                 \
        NodeLock *lk_ = (LK);                            \
        if (!lk_) {                                      \
            (R) = (EXPR);                                \
            break;                                       \
        }                                                \
        unsigned long me_ = PyThread_get_thread_ident(); \
        int err_;                                        \
        Py_BEGIN_ALLOW_THREADS                           \
        int dropped_ = nl_drop(lk_);                     \
        (R) = (EXPR);                                    \
        err_ = errno;                                    \
        nl_retake(lk_, dropped_, me_);                   \
        Py_END_ALLOW_THREADS                             \
        errno = err_;                                    \
    } while (0)

static PyTypeObject NodeLockType;

static int NodeLock_init(NodeLock *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kw)) return -1;
    if (self->owner) {
        PyErr_SetString(PyExc_RuntimeError, "NodeLock re-initialised while held");
        return -1;
    }
    return 0;
}

static PyObject *NodeLock_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    NodeLock *self = (NodeLock *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    if (pthread_mutex_init(&self->mu, NULL) != 0) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_OSError, "pthread_mutex_init failed");
        return NULL;
    }
    cpu_set_t cpus;
    self->spin_ns = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1 ? NL_SPIN_NS : 0;
    return (PyObject *)self;
}

static void NodeLock_dealloc(NodeLock *self) {
    if (!self->owner) pthread_mutex_destroy(&self->mu); /* a held one is dropped as it is: its holder is gone */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *NodeLock_acquire(NodeLock *self, PyObject *Py_UNUSED(ignored)) {
    nl_take(self);
    Py_RETURN_TRUE;
}

static PyObject *NodeLock_release(NodeLock *self, PyObject *Py_UNUSED(ignored)) {
    if (nl_owner(self) != PyThread_get_thread_ident() || self->depth <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "release of a NodeLock this thread does not hold");
        return NULL;
    }
    if (self->depth == 1) nl_free(self);
    else self->depth--;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(nl_suspend_doc,
"suspend() -> int\n\n"
"Free the lock however often this thread holds it (to wait for another thread that needs\n"
"it, e.g. to join it); returns the depth to give `resume`. 0 when this thread does not\n"
"hold it.");

static PyObject *NodeLock_suspend(NodeLock *self, PyObject *Py_UNUSED(ignored)) {
    if (nl_owner(self) != PyThread_get_thread_ident() || self->depth <= 0) return PyLong_FromLong(0);
    long depth = self->depth;
    nl_free(self);
    return PyLong_FromLong(depth);
}

static PyObject *NodeLock_resume(NodeLock *self, PyObject *arg) {
    long depth = PyLong_AsLong(arg);
    if (depth == -1 && PyErr_Occurred()) return NULL;
    if (depth < 0) {
        PyErr_SetString(PyExc_ValueError, "resume takes what suspend returned");
        return NULL;
    }
    if (depth == 0) Py_RETURN_NONE;
    nl_take(self);
    self->depth += depth - 1;
    Py_RETURN_NONE;
}

static PyObject *NodeLock_exit(NodeLock *self, PyObject *Py_UNUSED(args)) {
    PyObject *r = NodeLock_release(self, NULL);
    if (!r) return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *NodeLock_get_held(NodeLock *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(nl_owner(self) == PyThread_get_thread_ident() && self->depth > 0);
}

static PyObject *NodeLock_get_contended(NodeLock *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(self->contended);
}

static PyObject *NodeLock_get_held_ns(NodeLock *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(self->held_ns);
}

static PyMethodDef NodeLock_methods[] = {
    {"acquire", (PyCFunction)NodeLock_acquire, METH_NOARGS, "Take the lock (waits with the GIL released)."},
    {"release", (PyCFunction)NodeLock_release, METH_NOARGS, "Give back one take of the lock."},
    {"suspend", (PyCFunction)NodeLock_suspend, METH_NOARGS, nl_suspend_doc},
    {"resume", (PyCFunction)NodeLock_resume, METH_O, "Take the lock back as deep as `suspend` said."},
    {"__enter__", (PyCFunction)NodeLock_acquire, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)NodeLock_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef NodeLock_getset[] = {
    {"held", (getter)NodeLock_get_held, NULL, "True when this thread holds the lock", NULL},
    {"contended", (getter)NodeLock_get_contended, NULL, "takes that waited for another thread so far", NULL},
    {"held_ns", (getter)NodeLock_get_held_ns, NULL,
     "ns the lock was held so far (the holder's current hold not yet included): the node's serial work", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject NodeLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_runtime.net._fastpath.NodeLock",
    .tp_doc = PyDoc_STR("The lock of a node whose fast path runs on several threads (see include/pan_nodelock.h)."),
    .tp_basicsize = sizeof(NodeLock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = NodeLock_new,
    .tp_init = (initproc)NodeLock_init,
    .tp_dealloc = (destructor)NodeLock_dealloc,
    .tp_methods = NodeLock_methods,
    .tp_getset = NodeLock_getset,
};

#endif
