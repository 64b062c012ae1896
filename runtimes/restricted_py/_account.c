/* pan_restricted_py._account: the memory and time a restricted_py call may spend.
 *
 * Memory. `install()` wraps CPython's MEM and OBJ allocator domains (PyMem_SetAllocator,
 * as tracemalloc does): every Python object and every buffer behind one (list items, dict
 * tables, str/bytes data, big ints) is allocated there. Both domains are only ever called
 * with the GIL held, so the bookkeeping below needs no lock of its own. While a call of
 * restricted code is running (between `Account.enter()` and `Account.leave()`, on the
 * thread that entered), each block it allocates is charged to the code object's account
 * and recorded in a side table (address -> size, account); a block's charge is returned
 * when it is freed, whenever and by whomever. So `held` is the exact number of bytes the
 * code object's live blocks hold, across calls. An allocation that would take `held`
 * past the call's ceiling (`held` at entry + the call's limit) fails: the allocator
 * returns NULL, CPython raises MemoryError, and the call is marked spent (`leave()`
 * reports it, whatever the code did with the MemoryError). After that, only small blocks
 * (exception objects, tracebacks) are still granted, from a small grace allowance.
 *
 * Time. The budget is CPU time of the thread running the call, so time the node spends
 * descheduled is never charged to the code. A ticker thread samples that thread's CPU clock
 * every tick while a call with a time budget runs (the outermost call's budget covers the
 * calls nested in it) and adds up what the call has used; calls shorter than a tick are
 * never charged at all. When the sum passes the budget the call is late: the allocator
 * refuses its allocations from then on (one big operation cannot run on by allocating),
 * and the ticker takes the GIL (the running thread gives it up at its next bytecode
 * boundary, within the switch interval), marks the frames and sets `_left_` of their code's
 * globals to -1, so the code's next step tick calls the meter, which halts it. If the
 * running thread's current Python frame is the late code's own (straight-line code that
 * never ticks), the ticker also raises the runtime's `late` exception there
 * (PyThreadState_SetAsyncExc); it never does so while node or runtime code is on top, and
 * retries each tick until it can. (Not a pending call: in 3.11 one added from a thread
 * other than the main thread does not wake the interpreter.) The ticker parks on a
 * condition variable when no call has run for a while.
 *
 * Each block is charged its size plus OVERHEAD bytes for its side table entry. Blocks the
 * interpreter keeps on free lists (floats, tuples, dicts) stay charged until really freed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_account_api.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OVERHEAD 32              /* side table bytes per block (16-byte entries, the table 3/8 to 3/4 full) */
#define MAX_BLOCK ((size_t)UINT32_MAX - OVERHEAD) /* larger blocks are never charged: refused in a call */
#define GRACE_BLOCK 1024         /* a spent call still gets blocks this small ... */
#define GRACE_TOTAL (256 << 10)  /* ... up to this many bytes in all */
#define MAX_FRAMES 64            /* nested calls (dependencies) on the stack at once */
#define MIN_CAP 1024             /* side table slots, at least */
#define KEEP_CAP 65536           /* the table shrinks back no further than this (1 MiB) once grown */
#define IDLE_TICKS 50            /* ticks without a call before the ticker parks */

#define F_MEMORY 1  /* an allocation was refused: over the call's memory ceiling */
#define F_TIME 2    /* the call used up its time budget */
#define F_HELD 4    /* at leave: the account holds more than its held limit */

typedef struct acct {
    size_t held;     /* bytes (with OVERHEAD) of live blocks charged here */
    size_t blocks;   /* live blocks charged here */
    size_t ceiling;  /* while active: held may not grow past this */
    int active;      /* frames of this account on the stack */
    int orphan;      /* its Account object is gone: freed once blocks reaches 0 */
    uint32_t id;     /* its index in accts, which side table entries name */
} acct_t;

typedef struct {
    PyObject_HEAD
    acct_t *a;
    size_t call_limit;  /* bytes a call may add to held */
    size_t held_limit;  /* leave() reports F_HELD above this */
    int64_t time_ns;    /* a call's time budget; 0: none */
    PyObject *globals;  /* the code's module dict, whose _left_ the ticker sets */
    PyObject *filename; /* co_filename of the code's functions: where a late exception may be raised */
} AccountObject;

typedef struct {
    acct_t *acct;
    AccountObject *owner;  /* strong reference while the frame is on the stack */
    size_t grace;          /* bytes granted since the call was refused */
    int flags;
    uint64_t gen;
    PyThreadState *tstate;  /* the thread running the call */
    unsigned long ident;
} frame_t;

typedef struct {
    uintptr_t key;  /* block address; 0: empty slot */
    uint32_t size;
    uint32_t acct;  /* index in accts */
} entry_t;

typedef struct {
    PyMemAllocatorEx orig;
} hook_t;

/* all of these are read and written with the GIL held */
static frame_t frames[MAX_FRAMES];
static int depth;
static pthread_t owner_thread;
static entry_t *tab;
static acct_t **accts;  /* live accounts by id; NULL: a free id */
static uint32_t n_accts, cap_accts;
static size_t cap, count;
static unsigned bits;
static int installed;
static hook_t h_mem, h_obj;
static PyObject *str_left, *minus_one;
static PyObject *late_exc; /* raised in late straight-line code (set_late) */

/* shared with the ticker thread */
static _Atomic int64_t watch_budget;   /* the running outermost call's CPU budget (ns); 0: none */
static _Atomic uint64_t watch_gen;     /* which outermost call that is */
static _Atomic unsigned long watch_owner; /* its thread (pthread_t) */
static _Atomic uint64_t late_gen;      /* the call the ticker found over its budget */
static _Atomic uint64_t settled_gen;   /* ... and raised in, or gone */
static _Atomic int tk_parked;
static _Atomic int tk_stop;
static _Atomic int64_t tick_ns = 2000000;
static int tk_started;
static pthread_t tk_thread;
static pthread_mutex_t tk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tk_cond = PTHREAD_COND_INITIALIZER;

static int64_t cpu_ns(clockid_t clock) {
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the side table: open addressing, linear probing, backward-shift deletion ---------- */

/* Blocks of one 4 KiB page go to a run of neighbouring slots (the page number hashed picks
 * the run): objects allocated one after another, as pymalloc hands them out, then share
 * cache lines of the table instead of missing the cache once each. */
static inline size_t slot_of(uintptr_t key) {
    size_t run = (size_t)(((uint64_t)(key >> 12) * 0x9E3779B97F4A7C15ull) >> (64 - bits));
    return (run + ((key >> 4) & 0xFF)) & (cap - 1);
}

static ssize_t find(uintptr_t key) {
    size_t mask = cap - 1;
    for (size_t i = slot_of(key);; i = (i + 1) & mask) {
        if (tab[i].key == key)
            return (ssize_t)i;
        if (tab[i].key == 0)
            return -1;
    }
}

/* Rehash into NEWCAP slots (a power of two); 0 on success, -1 (table unchanged) without memory. */
static int rehash(size_t newcap) {
    entry_t *old = tab;
    size_t oldcap = cap;
    entry_t *fresh = calloc(newcap, sizeof(entry_t));
    if (fresh == NULL)
        return -1;
    unsigned b = 0;
    while (((size_t)1 << b) < newcap)
        b++;
    tab = fresh;
    cap = newcap;
    bits = b;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key == 0)
            continue;
        size_t j = slot_of(old[i].key);
        while (tab[j].key != 0)
            j = (j + 1) & (cap - 1);
        tab[j] = old[i];
    }
    free(old);
    return 0;
}

/* A new account with an id of its own, or NULL without memory. */
static acct_t *acct_alloc(void) {
    uint32_t id = 0;
    while (id < n_accts && accts[id] != NULL)
        id++;
    if (id == n_accts) {
        if (n_accts == cap_accts) {
            uint32_t ncap = cap_accts ? cap_accts * 2 : 64;
            acct_t **grown = realloc(accts, ncap * sizeof(acct_t *));
            if (grown == NULL)
                return NULL;
            accts = grown;
            cap_accts = ncap;
        }
        n_accts++;
    }
    acct_t *a = calloc(1, sizeof(acct_t));
    if (a == NULL)
        return NULL;
    a->id = id;
    accts[id] = a;
    return a;
}

static void acct_free(acct_t *a) {
    accts[a->id] = NULL;
    free(a);
}

static void uncharge(acct_t *a, size_t size) {
    a->held -= size + OVERHEAD;
    a->blocks -= 1;
    if (a->orphan && a->blocks == 0)
        acct_free(a);
}

static void remove_at(size_t i) {
    size_t mask = cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (tab[j].key == 0)
            break;
        size_t h = slot_of(tab[j].key);
        /* move tab[j] into the hole at i unless its home lies cyclically in (i, j] */
        int stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            tab[i] = tab[j];
            i = j;
        }
    }
    tab[i].key = 0;
    count--;
    if (cap > KEEP_CAP && count * 32 < cap) /* lazily: calls that allocate and free a lot do not regrow it each time */
        (void)rehash(cap / 2); /* without memory the table just stays larger */
}

/* Record KEY as a block of SIZE bytes charged to A; -1 if the table cannot grow. */
static int track(uintptr_t key, size_t size, acct_t *a) {
    if (size > MAX_BLOCK)
        return -1;
    if ((count + 1) * 4 > cap * 3 && rehash(cap ? cap * 2 : MIN_CAP) < 0)
        return -1;
    size_t mask = cap - 1;
    size_t i = slot_of(key);
    while (tab[i].key != 0 && tab[i].key != key)
        i = (i + 1) & mask;
    if (tab[i].key == key) /* a block freed behind our back: its address came back */
        uncharge(accts[tab[i].acct], tab[i].size);
    else
        count++;
    tab[i].key = key;
    tab[i].size = (uint32_t)size;
    tab[i].acct = a->id;
    a->held += size + OVERHEAD;
    a->blocks += 1;
    return 0;
}

/* Forget KEY if it is a tracked block, returning its charge. */
static inline void untrack(uintptr_t key) {
    if (count == 0 || key == 0)
        return;
    ssize_t i = find(key);
    if (i >= 0) {
        acct_t *a = accts[tab[i].acct];
        size_t size = tab[i].size;
        remove_at((size_t)i);
        uncharge(a, size);
    }
}

/* ---- the allocator hooks ---------------------------------------------------------------- */

static inline frame_t *charged_frame(void) {
    if (depth == 0 || !pthread_equal(pthread_self(), owner_thread))
        return NULL;
    return &frames[depth - 1];
}

/* May frame F's call take N more bytes, RELEASE bytes of its own being given back at once? */
static int admit(frame_t *f, size_t n, size_t release) {
    if (n > MAX_BLOCK) {
        f->flags |= F_MEMORY;
        return 0;
    }
    size_t cost = n + OVERHEAD;
    acct_t *a = f->acct;
    if (f->flags) {
        if (cost > GRACE_BLOCK || f->grace + cost > GRACE_TOTAL)
            return 0;
        f->grace += cost;
        return 1;
    }
    size_t after = a->held - release;
    if (after + cost > a->ceiling || after + cost < after) {
        f->flags |= F_MEMORY;
        return 0;
    }
    if (atomic_load_explicit(&late_gen, memory_order_relaxed) == f->gen) {
        f->flags |= F_TIME;
        return 0;
    }
    return 1;
}

static void *h_malloc(void *ctx, size_t n) {
    hook_t *h = ctx;
    frame_t *f = charged_frame();
    if (f == NULL)
        return h->orig.malloc(h->orig.ctx, n);
    if (!admit(f, n, 0))
        return NULL;
    void *p = h->orig.malloc(h->orig.ctx, n);
    if (p != NULL && track((uintptr_t)p, n, f->acct) < 0) {
        h->orig.free(h->orig.ctx, p);
        f->flags |= F_MEMORY;
        return NULL;
    }
    return p;
}

static void *h_calloc(void *ctx, size_t nelem, size_t elsize) {
    hook_t *h = ctx;
    frame_t *f = charged_frame();
    if (f == NULL)
        return h->orig.calloc(h->orig.ctx, nelem, elsize);
    if (elsize != 0 && nelem > SIZE_MAX / elsize)
        return NULL;
    size_t n = nelem * elsize;
    if (!admit(f, n, 0))
        return NULL;
    void *p = h->orig.calloc(h->orig.ctx, nelem, elsize);
    if (p != NULL && track((uintptr_t)p, n, f->acct) < 0) {
        h->orig.free(h->orig.ctx, p);
        f->flags |= F_MEMORY;
        return NULL;
    }
    return p;
}

static void *h_realloc(void *ctx, void *p, size_t n) {
    hook_t *h = ctx;
    frame_t *f = charged_frame();
    ssize_t i = (p != NULL && count) ? find((uintptr_t)p) : -1;
    if (f == NULL) {
        /* outside a call: a tracked block keeps its account at its new size */
        void *q = h->orig.realloc(h->orig.ctx, p, n);
        if (q != NULL && i >= 0) {
            acct_t *a = accts[tab[i].acct];
            size_t old = tab[i].size;
            remove_at((size_t)i);
            a->held -= old + OVERHEAD; /* uncharge() without freeing an orphan: it is charged again below */
            a->blocks -= 1;
            if (track((uintptr_t)q, n, a) < 0 && a->orphan && a->blocks == 0)
                acct_free(a);
        }
        return q;
    }
    size_t release = (i >= 0 && tab[i].acct == f->acct->id) ? tab[i].size + OVERHEAD : 0;
    if (!admit(f, n, release))
        return NULL; /* the old block is untouched and stays charged */
    void *q = h->orig.realloc(h->orig.ctx, p, n);
    if (q == NULL)
        return NULL;
    if (i >= 0) {
        acct_t *a = accts[tab[i].acct];
        size_t old = tab[i].size;
        remove_at((size_t)i);
        uncharge(a, old);
    }
    if (track((uintptr_t)q, n, f->acct) < 0)
        f->flags |= F_MEMORY; /* q is the caller's now; it goes untracked and the call faults */
    return q;
}

static void h_free(void *ctx, void *p) {
    hook_t *h = ctx;
    untrack((uintptr_t)p);
    h->orig.free(h->orig.ctx, p);
}

/* ---- the ticker ------------------------------------------------------------------------- */

/* Is FRAME's thread running a Python frame of OWNER's code right now? */
static int in_own_code(frame_t *f) {
    PyObject *filename = f->owner->filename;
    if (filename == NULL)
        return 0;
    PyFrameObject *pf = PyThreadState_GetFrame(f->tstate);
    if (pf == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyCodeObject *code = PyFrame_GetCode(pf);
    int same = PyUnicode_Check(code->co_filename) && PyUnicode_Compare(code->co_filename, filename) == 0;
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_DECREF(code);
    Py_DECREF(pf);
    return same;
}

/* Runs on the ticker thread with the GIL: every frame of the late call GEN has its code
 * call its meter at its next step; late straight-line code gets the late exception. */
static void poke(uint64_t gen) {
    if (depth == 0 || frames[0].gen != gen) {
        atomic_store(&settled_gen, gen);
        return;
    }
    for (int i = 0; i < depth; i++) {
        frame_t *f = &frames[i];
        f->flags |= F_TIME;
        PyObject *g = f->owner->globals;
        if (g != NULL && PyDict_SetItem(g, str_left, minus_one) < 0)
            PyErr_Clear();
    }
    if (late_exc != NULL && in_own_code(&frames[depth - 1])) {
        PyThreadState_SetAsyncExc(frames[depth - 1].ident, late_exc);
        atomic_store(&settled_gen, gen);
    }
}

static void *ticker(void *unused) {
    (void)unused;
    int idle = 0;
    uint64_t seen_gen = 0;
    unsigned long seen_owner = 0;
    clockid_t clock = CLOCK_THREAD_CPUTIME_ID;
    int64_t used = 0, last = 0;
    while (!atomic_load(&tk_stop)) {
        int64_t t = atomic_load(&tick_ns);
        struct timespec ts = {(time_t)(t / 1000000000), (long)(t % 1000000000)};
        nanosleep(&ts, NULL);
        int64_t budget = atomic_load(&watch_budget);
        if (budget == 0) {
            if (++idle < IDLE_TICKS)
                continue;
            idle = 0;
            pthread_mutex_lock(&tk_lock);
            atomic_store(&tk_parked, 1);
            while (atomic_load(&tk_parked) && atomic_load(&watch_budget) == 0 && !atomic_load(&tk_stop))
                pthread_cond_wait(&tk_cond, &tk_lock);
            atomic_store(&tk_parked, 0);
            pthread_mutex_unlock(&tk_lock);
            continue;
        }
        idle = 0;
        uint64_t g = atomic_load(&watch_gen);
        unsigned long owner = atomic_load(&watch_owner);
        if (owner != seen_owner) {
            if (pthread_getcpuclockid((pthread_t)owner, &clock) != 0)
                continue;
            seen_owner = owner;
            seen_gen = 0;
        }
        int64_t now = cpu_ns(clock);
        if (now < 0)
            continue;
        if (g != seen_gen) { /* a new call: its CPU time counts from this sample on */
            seen_gen = g;
            used = 0;
            last = now;
            continue;
        }
        used += now - last;
        last = now;
        if (used <= budget || atomic_load(&settled_gen) == g)
            continue;
        atomic_store(&late_gen, g);
        if (atomic_load(&tk_stop) || !Py_IsInitialized() || _Py_IsFinalizing())
            continue;
        PyGILState_STATE st = PyGILState_Ensure();
        if (atomic_load(&watch_gen) == g)
            poke(g);
        PyGILState_Release(st);
    }
    return NULL;
}

static void wake_ticker(void) {
    if (!atomic_load(&tk_parked))
        return;
    pthread_mutex_lock(&tk_lock);
    atomic_store(&tk_parked, 0);
    pthread_cond_signal(&tk_cond);
    pthread_mutex_unlock(&tk_lock);
}

static int start_ticker(void) {
    if (tk_started)
        return 0;
    atomic_store(&tk_stop, 0);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    pthread_attr_setstacksize(&attr, 64 << 10);
    int rc = pthread_create(&tk_thread, &attr, ticker, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -1;
    tk_started = 1;
    return 0;
}

static void after_fork_child(void) {
    /* the ticker did not come along; the next install() starts one */
    tk_started = 0;
    atomic_store(&tk_parked, 0);
    atomic_store(&watch_budget, 0);
}

/* ---- Account ---------------------------------------------------------------------------- */

static int parse_limits(PyObject *args, size_t *call_limit, size_t *held_limit, int64_t *time_ns) {
    unsigned long long cl, hl;
    long long t;
    if (!PyArg_ParseTuple(args, "KKL", &cl, &hl, &t))
        return -1;
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "time_ns must not be negative");
        return -1;
    }
    *call_limit = (size_t)cl;
    *held_limit = (size_t)hl;
    *time_ns = (int64_t)t;
    return 0;
}

static PyObject *acct_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    size_t cl, hl;
    int64_t t;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Account(call_limit, held_limit, time_ns) takes no keywords");
        return NULL;
    }
    if (parse_limits(args, &cl, &hl, &t) < 0)
        return NULL;
    AccountObject *self = (AccountObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->a = acct_alloc();
    if (self->a == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->call_limit = cl;
    self->held_limit = hl;
    self->time_ns = t;
    return (PyObject *)self;
}

static int acct_traverse(AccountObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->globals);
    Py_VISIT(self->filename);
    return 0;
}

static int acct_clear(AccountObject *self) {
    Py_CLEAR(self->globals);
    Py_CLEAR(self->filename);
    return 0;
}

static void acct_dealloc(AccountObject *self) {
    PyObject_GC_UnTrack(self);
    acct_clear(self);
    if (self->a != NULL) {
        if (self->a->blocks == 0)
            acct_free(self->a);
        else
            self->a->orphan = 1; /* blocks still charged here free it when the last goes */
        self->a = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *acct_configure(AccountObject *self, PyObject *args) {
    size_t cl, hl;
    int64_t t;
    if (parse_limits(args, &cl, &hl, &t) < 0)
        return NULL;
    self->call_limit = cl;
    self->held_limit = hl;
    self->time_ns = t;
    Py_RETURN_NONE;
}

static PyObject *acct_bind(AccountObject *self, PyObject *args) {
    PyObject *g, *filename;
    if (!PyArg_ParseTuple(args, "OO", &g, &filename))
        return NULL;
    if ((g != Py_None && !PyDict_Check(g)) || (filename != Py_None && !PyUnicode_Check(filename))) {
        PyErr_SetString(PyExc_TypeError, "bind(globals, filename) takes a dict and a str, or None twice");
        return NULL;
    }
    PyObject *old_g = self->globals, *old_f = self->filename;
    self->globals = g == Py_None ? NULL : Py_NewRef(g);
    self->filename = filename == Py_None ? NULL : Py_NewRef(filename);
    Py_XDECREF(old_g);
    Py_XDECREF(old_f);
    Py_RETURN_NONE;
}

/* Account.enter(): 0, or -1 with an error set. */
static int enter_c(AccountObject *self) {
    if (!installed) {
        PyErr_SetString(PyExc_RuntimeError, "the allocator hooks are not installed");
        return -1;
    }
    pthread_t me = pthread_self();
    if (depth > 0 && !pthread_equal(me, owner_thread)) {
        PyErr_SetString(PyExc_RuntimeError, "restricted_py code is already running on another thread");
        return -1;
    }
    if (depth >= MAX_FRAMES) {
        PyErr_SetString(PyExc_RuntimeError, "restricted_py calls nested too deeply");
        return -1;
    }
    if (!tk_started && start_ticker() < 0) { /* a forked child has no ticker until here */
        PyErr_SetString(PyExc_OSError, "cannot start the restricted_py time ticker thread");
        return -1;
    }
    acct_t *a = self->a;
    frame_t *f = &frames[depth];
    f->acct = a;
    f->owner = (AccountObject *)Py_NewRef(self);
    f->grace = 0;
    f->flags = 0;
    f->tstate = PyThreadState_Get();
    f->ident = PyThread_get_thread_ident();
    if (a->active == 0)
        a->ceiling = a->held > SIZE_MAX - self->call_limit ? SIZE_MAX : a->held + self->call_limit;
    a->active++;
    if (depth == 0) {
        owner_thread = me;
        f->gen = atomic_load_explicit(&watch_gen, memory_order_relaxed) + 1;
        atomic_store(&watch_owner, (unsigned long)me);
        atomic_store(&watch_gen, f->gen);
        if (self->time_ns) {
            atomic_store(&watch_budget, self->time_ns);
            wake_ticker();
        }
    } else {
        f->gen = frames[0].gen;
    }
    depth++;
    return 0;
}

static PyObject *acct_enter(AccountObject *self, PyObject *unused) {
    if (enter_c(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static frame_t *own_top(AccountObject *self) {
    if (depth == 0 || frames[depth - 1].owner != self || !pthread_equal(pthread_self(), owner_thread)) {
        PyErr_SetString(PyExc_RuntimeError, "this account is not the running call's");
        return NULL;
    }
    return &frames[depth - 1];
}

/* Account.leave(): the call's flags, or -1 with an error set. */
static int leave_c(AccountObject *self) {
    frame_t *f = own_top(self);
    if (f == NULL)
        return -1;
    int flags = f->flags;
    if (atomic_load_explicit(&late_gen, memory_order_relaxed) == f->gen)
        flags |= F_TIME;
    acct_t *a = f->acct;
    a->active--;
    if (a->active == 0 && a->held > self->held_limit)
        flags |= F_HELD;
    if (depth == 1)
        atomic_store(&watch_budget, 0);
    AccountObject *owner = f->owner;
    f->owner = NULL;
    f->acct = NULL;
    depth--;
    Py_DECREF(owner);
    return flags;
}

static PyObject *acct_leave(AccountObject *self, PyObject *unused) {
    int flags = leave_c(self);
    return flags < 0 ? NULL : PyLong_FromLong(flags);
}

/* ---- the C API (_account_api.h) ---------------------------------------------------------- */

static int api_enter(PyObject *acct) {
    return enter_c((AccountObject *)acct);
}

static int api_leave(PyObject *acct) {
    return leave_c((AccountObject *)acct);
}

static pan_account_api c_api;

static PyObject *acct_check(AccountObject *self, PyObject *unused) {
    frame_t *f = own_top(self);
    if (f == NULL)
        return NULL;
    if (atomic_load_explicit(&late_gen, memory_order_relaxed) == f->gen)
        f->flags |= F_TIME;
    return PyLong_FromLong(f->flags);
}

static PyObject *acct_get_held(AccountObject *self, void *closure) {
    return PyLong_FromSize_t(self->a->held);
}

static PyObject *acct_get_blocks(AccountObject *self, void *closure) {
    return PyLong_FromSize_t(self->a->blocks);
}

static PyObject *acct_get_limits(AccountObject *self, void *closure) {
    return Py_BuildValue("(KKL)", (unsigned long long)self->call_limit, (unsigned long long)self->held_limit,
                         (long long)self->time_ns);
}

static PyMethodDef acct_methods[] = {
    {"configure", (PyCFunction)acct_configure, METH_VARARGS,
     "configure(call_limit, held_limit, time_ns): bytes a call may add, bytes held between calls, a call's time"},
    {"bind", (PyCFunction)acct_bind, METH_VARARGS,
     "bind(globals, filename): the module dict whose _left_ the ticker sets in a late call, and the code's filename"},
    {"enter", (PyCFunction)acct_enter, METH_NOARGS, "Start charging a call to this account"},
    {"leave", (PyCFunction)acct_leave, METH_NOARGS,
     "Stop charging the call; its flags: 1 memory refused, 2 time used up, 4 held over the limit"},
    {"check", (PyCFunction)acct_check, METH_NOARGS, "The running call's flags so far"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef acct_getset[] = {
    {"held", (getter)acct_get_held, NULL, "bytes the account's live blocks hold (with bookkeeping)", NULL},
    {"blocks", (getter)acct_get_blocks, NULL, "live blocks charged to the account", NULL},
    {"limits", (getter)acct_get_limits, NULL, "(call_limit, held_limit, time_ns)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject AccountType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_restricted_py._account.Account",
    .tp_basicsize = sizeof(AccountObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Account(call_limit, held_limit, time_ns): what one code object's calls are charged",
    .tp_new = acct_new,
    .tp_dealloc = (destructor)acct_dealloc,
    .tp_traverse = (traverseproc)acct_traverse,
    .tp_clear = (inquiry)acct_clear,
    .tp_methods = acct_methods,
    .tp_getset = acct_getset,
};

/* ---- module ----------------------------------------------------------------------------- */

static PyObject *mod_install(PyObject *mod, PyObject *unused) {
    if (installed)
        Py_RETURN_NONE;
    if (start_ticker() < 0) {
        PyErr_SetString(PyExc_OSError, "cannot start the restricted_py time ticker thread");
        return NULL;
    }
    PyMemAllocatorEx hook;
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &h_mem.orig);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &h_obj.orig);
    hook.malloc = h_malloc;
    hook.calloc = h_calloc;
    hook.realloc = h_realloc;
    hook.free = h_free;
    hook.ctx = &h_mem;
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &hook);
    hook.ctx = &h_obj;
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    installed = 1;
    Py_RETURN_NONE;
}

static PyObject *mod_ensure_ticker(PyObject *mod, PyObject *unused) {
    if (installed && start_ticker() < 0) {
        PyErr_SetString(PyExc_OSError, "cannot start the restricted_py time ticker thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *mod_set_tick(PyObject *mod, PyObject *arg) {
    long long t = PyLong_AsLongLong(arg);
    if (t == -1 && PyErr_Occurred())
        return NULL;
    if (t < 100000 || t > 1000000000) {
        PyErr_SetString(PyExc_ValueError, "the tick must be between 0.1 ms and 1 s (in ns)");
        return NULL;
    }
    atomic_store(&tick_ns, (int64_t)t);
    Py_RETURN_NONE;
}

static PyObject *mod_set_late(PyObject *mod, PyObject *exc) {
    if (!PyExceptionClass_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "set_late() takes an exception class");
        return NULL;
    }
    Py_XSETREF(late_exc, Py_NewRef(exc));
    Py_RETURN_NONE;
}

static PyObject *mod_shutdown(PyObject *mod, PyObject *unused) {
    /* at interpreter exit: stop the ticker before the interpreter goes */
    if (!tk_started)
        Py_RETURN_NONE;
    atomic_store(&tk_stop, 1);
    pthread_mutex_lock(&tk_lock);
    atomic_store(&tk_parked, 0);
    pthread_cond_signal(&tk_cond);
    pthread_mutex_unlock(&tk_lock);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(tk_thread, NULL);
    Py_END_ALLOW_THREADS
    tk_started = 0;
    Py_RETURN_NONE;
}

static PyObject *mod_stats(PyObject *mod, PyObject *unused) {
    return Py_BuildValue("{s:n,s:n,s:i,s:i,s:i}", "table_slots", (Py_ssize_t)cap, "tracked_blocks",
                         (Py_ssize_t)count, "depth", depth, "installed", installed, "ticker", tk_started);
}

static PyMethodDef mod_methods[] = {
    {"install", mod_install, METH_NOARGS, "Wrap the MEM and OBJ allocator domains and start the ticker (once)"},
    {"ensure_ticker", mod_ensure_ticker, METH_NOARGS, "Start the ticker again if it is not running"},
    {"set_tick", mod_set_tick, METH_O, "set_tick(ns): how often the ticker samples a running call's CPU time"},
    {"set_late", mod_set_late, METH_O, "set_late(cls): the exception raised in late straight-line code"},
    {"shutdown", mod_shutdown, METH_NOARGS, "Stop the ticker thread"},
    {"stats", mod_stats, METH_NOARGS, "The side table's size and the call stack's depth"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_restricted_py._account",
    .m_doc = "Memory and time accounting of restricted_py calls (see the source's header).",
    .m_size = -1,
    .m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__account(void) {
    if (PyType_Ready(&AccountType) < 0)
        return NULL;
    str_left = PyUnicode_InternFromString("_left_");
    if (str_left == NULL)
        return NULL;
    minus_one = PyLong_FromLong(-1);
    if (minus_one == NULL)
        return NULL;
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    c_api = (pan_account_api){&AccountType, api_enter, api_leave, (void *)acct_enter, (void *)acct_leave};
    PyObject *api = PyCapsule_New(&c_api, PAN_ACCOUNT_API_CAPSULE, NULL);
    if (api == NULL || PyModule_AddObject(m, "_C_API", api) < 0) { /* steals API when it succeeds */
        Py_XDECREF(api);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Account", (PyObject *)&AccountType) < 0 ||
        PyModule_AddIntConstant(m, "MEMORY", F_MEMORY) < 0 || PyModule_AddIntConstant(m, "TIME", F_TIME) < 0 ||
        PyModule_AddIntConstant(m, "HELD", F_HELD) < 0 || PyModule_AddIntConstant(m, "OVERHEAD", OVERHEAD) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
