/* pan_runtime.isolation._batchloop: a worker's loop over the capsules of a BATCH record, in C.
 *
 * The worker (pan_runtime/net/worker.py) hands each BATCH of a code object that offers a C
 * batch entry (include/pan_fast.h) to a BatchLoop: `start` checks the record's capsule
 * fields against the record (the bodies stay in place in the down ring), `run` calls the
 * runtime's batch entry over runs of capsules with the same origin and previous hop (one
 * call per run; a run is cut after a capsule whose verdict is not a forward, as the entry
 * contract says), and `write` writes the VERDICTS record (pan_runtime/isolation/verdicts.py)
 * into the space the worker reserved in the up ring. No per-capsule Python on the way.
 *
 * What the entry cannot do comes back to Python, capsule by capsule, with the rest of the
 * batch then run here again: a capsule from an application of the node, when the entry
 * assumes the network origin (FastEntry.fast_any_origin), runs on the worker's Python path;
 * a capsule whose code reached the worker's Python host (a PNI
 * call that is not a hot one) is claimed during its run (`claim`, the worker's materialize
 * hook: it builds the capsule's environment, the entry runs no capsule after it) and `run`
 * returns it with its verdict; the worker asks the runtime for the run's fault and sets the
 * result (`set_result`). After a verdict that is not a forward, the runtime's after_fast_run
 * is called here; when it raises, `run` returns the exception and the worker turns it into
 * the capsule's fault text. The usage the runtime's fast runs report (take_fast_usage) after
 * each call is shared among the capsules of that call.
 *
 * Counters (calls into the entry, capsules they ran) are kept here; the worker reports them
 * to the node with its own (Ring.put_counters).
 *
 * `serve` (_batchloop_serve.c) does the worker's whole cycle for such batches: it reads the
 * down ring's records, runs each BATCH as above, writes its verdicts and the counters into the
 * up ring, wakes the node and sleeps; it returns to Python only for what needs Python (a
 * record of another kind, a capsule run gave back, a full up ring).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "pan_fast.h"
#include "pni.h"

#define ADDR_SIZE 16
#define CAP_SIZE 76          /* protocol.CAPSULE: <BBxxI16s32s16sI */
#define CAP_ORIGIN 0
#define CAP_LENGTH 4
#define CAP_PREV 56
#define HEAD_SIZE 16         /* verdicts.HEAD */
#define ENTRY_SIZE 24        /* verdicts.ENTRY */
#define MAX_FAULT_TEXT 2048  /* verdicts.MAX_FAULT_TEXT */
#define NEEDS_RESET 1u

static const uint8_t NO_HOP[ADDR_SIZE];

typedef struct {
    PyObject_HEAD
    Py_buffer view;          /* the channel's shared memory (both rings) */
    int has_view;
    pan_fast_batch_fn batch; /* the code object's batch entry */
    void *state;
    PyObject *after_run;     /* loaded.after_fast_run */
    PyObject *take_usage;    /* loaded.take_fast_usage, or NULL: the runtime reports none */
    int any_origin;          /* the entry reads the origin from the context: any capsule runs */
    pan_fast_ctx ctx;
    /* the batch being run */
    uint8_t *payload;
    Py_ssize_t rec_at, rec_len; /* the record's payload in the view */
    uint32_t n, cap, next;   /* capsules, room in the arrays, the first not handled yet */
    uint8_t **bodies;
    uintptr_t *lengths;
    Py_ssize_t *offsets;     /* each body's offset in the view */
    int32_t *verdicts;
    uint32_t *flen;          /* fault text length (0: the verdict holds) */
    uint64_t *steps, *fuel;
    char *text;              /* fault texts in entry order */
    Py_ssize_t text_len, text_cap;
    int64_t text_last;       /* the last capsule with a fault text (-1: none yet) */
    /* the call into the entry in progress */
    pan_fast_batch *in_batch;
    uint32_t in_first;
    int32_t claimed;         /* the capsule claimed in this call, or -1 */
    /* counters */
    unsigned long long fast_calls, fast_capsules;
    /* serve's ring positions while it runs a batch (Python code the run calls may use the rings) */
    int serving;
    uint64_t serve_read, serve_head;
} BatchLoop;

static void free_arrays(BatchLoop *self) {
    PyMem_Free(self->bodies), self->bodies = NULL;
    PyMem_Free(self->lengths), self->lengths = NULL;
    PyMem_Free(self->offsets), self->offsets = NULL;
    PyMem_Free(self->verdicts), self->verdicts = NULL;
    PyMem_Free(self->flen), self->flen = NULL;
    PyMem_Free(self->steps), self->steps = NULL;
    PyMem_Free(self->fuel), self->fuel = NULL;
    self->cap = 0;
}

/* Room for N capsules in the per-capsule arrays; -1 with MemoryError set. */
static int grow(BatchLoop *self, uint32_t n) {
    if (n <= self->cap) return 0;
    size_t cap = self->cap ? self->cap : 64;
    while (cap < n) cap *= 2;
    free_arrays(self);
    self->bodies = PyMem_New(uint8_t *, cap);
    self->lengths = PyMem_New(uintptr_t, cap);
    self->offsets = PyMem_New(Py_ssize_t, cap);
    self->verdicts = PyMem_New(int32_t, cap);
    self->flen = PyMem_New(uint32_t, cap);
    self->steps = PyMem_New(uint64_t, cap);
    self->fuel = PyMem_New(uint64_t, cap);
    if (!self->bodies || !self->lengths || !self->offsets || !self->verdicts || !self->flen || !self->steps ||
        !self->fuel) {
        free_arrays(self);
        PyErr_NoMemory();
        return -1;
    }
    self->cap = (uint32_t)cap;
    return 0;
}

static int BatchLoop_init(BatchLoop *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"view", "batch", "state", "address", "after_run", "take_usage", "any_origin", NULL};
    Py_buffer view;
    unsigned long long batch, state;
    const char *addr;
    Py_ssize_t addr_len;
    PyObject *after_run, *take_usage;
    int any_origin = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "w*KKy#OO|p", kw, &view, &batch, &state, &addr, &addr_len, &after_run,
                                     &take_usage, &any_origin))
        return -1;
    if (!batch || addr_len != ADDR_SIZE || !PyCallable_Check(after_run) ||
        (take_usage != Py_None && !PyCallable_Check(take_usage))) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "BatchLoop: a batch entry, a 16-byte address and callables are needed");
        return -1;
    }
    if (self->has_view) PyBuffer_Release(&self->view);
    self->view = view;
    self->has_view = 1;
    self->batch = (pan_fast_batch_fn)(uintptr_t)batch;
    self->state = (void *)(uintptr_t)state;
    Py_XSETREF(self->after_run, Py_NewRef(after_run));
    Py_CLEAR(self->take_usage);
    if (take_usage != Py_None) self->take_usage = Py_NewRef(take_usage);
    memset(&self->ctx, 0, sizeof self->ctx);
    memcpy(self->ctx.node_address, addr, ADDR_SIZE);
    self->any_origin = any_origin;
    self->claimed = -1;
    return 0;
}

static int BatchLoop_traverse(BatchLoop *self, visitproc visit, void *arg) {
    Py_VISIT(self->after_run);
    Py_VISIT(self->take_usage);
    return 0;
}

static int BatchLoop_clear(BatchLoop *self) {
    Py_CLEAR(self->after_run);
    Py_CLEAR(self->take_usage);
    return 0;
}

static void BatchLoop_dealloc(BatchLoop *self) {
    PyObject_GC_UnTrack(self);
    BatchLoop_clear(self);
    free_arrays(self);
    PyMem_Free(self->text);
    if (self->has_view) PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int worker_error(const char *what, unsigned long long a, unsigned long long b) {
    PyObject *mod = PyImport_ImportModule("pan_runtime.errors");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "WorkerError") : NULL;
    Py_XDECREF(mod);
    if (!cls) return -1;
    PyObject *msg = PyUnicode_FromFormat(what, a, b);
    if (msg) {
        PyErr_SetObject(cls, msg);
        Py_DECREF(msg);
    }
    Py_DECREF(cls);
    return -1;
}

PyDoc_STRVAR(start_doc,
"start(at, length) -> int\n\n"
"Take the BATCH record whose payload is LENGTH bytes at offset AT of the view: check every\n"
"capsule's fields and body against it (WorkerError when they do not fit) and return the\n"
"number of capsules. Nothing runs yet.");

/* Take the BATCH record of LENGTH bytes at AT (see start_doc): 0, or -1 with an error set. */
static int start_batch(BatchLoop *self, Py_ssize_t at, Py_ssize_t length) {
    if (self->in_batch) {
        PyErr_SetString(PyExc_RuntimeError, "BatchLoop.start during a run");
        return -1;
    }
    if (at < 0 || length < 8 || at > self->view.len - length) {
        worker_error("a batch record of %llu bytes at %llu is outside the channel", (unsigned long long)length,
                     (unsigned long long)at);
        return -1;
    }
    self->n = self->next = 0; /* nothing to run until this record checks out */
    uint8_t *p = (uint8_t *)self->view.buf + at;
    uint32_t n;
    memcpy(&n, p, 4);
    unsigned long long body_at = 8 + (((unsigned long long)n * CAP_SIZE + 7) & ~7ull);
    if (body_at > (unsigned long long)length) {
        worker_error("a batch of %llu capsules does not fit its %llu-byte record", n, (unsigned long long)length);
        return -1;
    }
    if (grow(self, n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *f = p + 8 + (size_t)i * CAP_SIZE;
        uint32_t len;
        memcpy(&len, f + CAP_LENGTH, 4);
        if ((unsigned long long)len > (unsigned long long)length - body_at) {
            worker_error("capsule %llu's body runs past its batch record (%llu bytes)", i, (unsigned long long)length);
            return -1;
        }
        self->bodies[i] = p + body_at;
        self->lengths[i] = len;
        self->offsets[i] = at + (Py_ssize_t)body_at;
        self->verdicts[i] = 0;
        self->flen[i] = 0;
        self->steps[i] = self->fuel[i] = 0;
        body_at += ((unsigned long long)len + 7) & ~7ull;
    }
    self->payload = p;
    self->n = n;
    self->next = 0;
    self->text_len = 0;
    self->text_last = -1;
    self->claimed = -1;
    self->rec_at = at;
    self->rec_len = length;
    return 0;
}

static PyObject *BatchLoop_start(BatchLoop *self, PyObject *args) {
    Py_ssize_t at, length;
    if (!PyArg_ParseTuple(args, "nn", &at, &length)) return NULL;
    if (start_batch(self, at, length) < 0) return NULL;
    return PyLong_FromUnsignedLong(self->n);
}

/* The raised exception, normalized and without its traceback (a new reference). */
static PyObject *take_exception(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return PyObject_CallFunction(PyExc_SystemError, "s", "a fast run failed without an exception");
    PyErr_NormalizeException(&type, &value, &tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    if (value && PyExceptionInstance_Check(value)) PyException_SetTraceback(value, Py_None);
    if (!value) {
        PyErr_Clear();
        value = Py_NewRef(PyExc_MemoryError);
    }
    return value;
}

/* Share what the runtime's fast runs used since the last call among capsules FIRST..FIRST+RAN
 * (the last takes the remainder). 0, or -1 with an error set. */
static int share_usage(BatchLoop *self, uint32_t first, uint32_t ran) {
    if (!self->take_usage) return 0;
    PyObject *r = PyObject_CallNoArgs(self->take_usage);
    if (!r) return -1;
    unsigned long long steps, fuel;
    int ok = PyArg_ParseTuple(r, "KK", &steps, &fuel);
    Py_DECREF(r);
    if (!ok) return -1;
    if (!steps && !fuel) return 0;
    for (uint32_t k = 0; k < ran; k++) {
        int last = k + 1 == ran;
        self->steps[first + k] += last ? steps - (steps / ran) * (ran - 1) : steps / ran;
        self->fuel[first + k] += last ? fuel - (fuel / ran) * (ran - 1) : fuel / ran;
    }
    return 0;
}

/* One call into the entry over the capsules from NEXT that share its context: the same
 * origin and previous hop. */
static uint32_t call_entry(BatchLoop *self) {
    uint32_t first = self->next;
    const uint8_t *f0 = self->payload + 8 + (size_t)first * CAP_SIZE;
    uint32_t end = first + 1;
    while (end < self->n) {
        const uint8_t *f = self->payload + 8 + (size_t)end * CAP_SIZE;
        if (f[CAP_ORIGIN] != f0[CAP_ORIGIN] || memcmp(f + CAP_PREV, f0 + CAP_PREV, ADDR_SIZE) != 0) break;
        end++;
    }
    self->ctx.origin_kind = f0[CAP_ORIGIN];
    self->ctx.has_prev_hop = memcmp(f0 + CAP_PREV, NO_HOP, ADDR_SIZE) != 0;
    memcpy(self->ctx.prev_hop, f0 + CAP_PREV, ADDR_SIZE);
    pan_fast_batch b = {end - first, 0, 0, 0, self->bodies + first, self->lengths + first, self->verdicts + first};
    self->in_batch = &b;
    self->in_first = first;
    self->claimed = -1;
    uint32_t ran = self->batch(self->state, &b, &self->ctx);
    self->in_batch = NULL;
    if (ran < 1 || ran > b.count) ran = ran < 1 ? 1 : b.count; /* a runtime past its contract */
    self->fast_calls++;
    self->fast_capsules += ran;
    return ran;
}

PyDoc_STRVAR(run_doc,
"run() -> None or (index, how, value)\n\n"
"Run the capsules not handled yet through the batch entry. None: every capsule has its\n"
"result. Else capsule INDEX needs Python: its run faulted (HOW 0), VALUE the exception\n"
"after_fast_run raised; it was claimed during its run (1), VALUE its verdict; or it did not\n"
"run (2: it came from an application and the entry runs network capsules only), VALUE how\n"
"many capsules from there on did not. The worker sets their results (set_result) and calls\n"
"run() again for the rest.");

/* run() without its argument parsing: None, (index, how, value), or NULL with an error set. */
static PyObject *run_batch(BatchLoop *self) {
    if (self->in_batch) {
        PyErr_SetString(PyExc_RuntimeError, "BatchLoop.run during a run");
        return NULL;
    }
    while (self->next < self->n) {
        uint32_t first = self->next;
        if (!self->any_origin && self->payload[8 + (size_t)first * CAP_SIZE + CAP_ORIGIN] != 0) {
            /* from an application of this node, and the entry assumes the network origin the
             * node's fast path gives it */
            uint32_t end = first + 1;
            while (end < self->n && self->payload[8 + (size_t)end * CAP_SIZE + CAP_ORIGIN] != 0) end++;
            self->next = end;
            return Py_BuildValue("(IiI)", first, 2, end - first);
        }
        uint32_t ran = call_entry(self);
        int32_t claimed = self->claimed;
        self->claimed = -1;
        self->next = first + ran;
        if (PyErr_Occurred()) { /* left by a host call during the run: the last capsule's fault */
            PyObject *exc = take_exception();
            if (share_usage(self, first, ran) < 0) {
                Py_DECREF(exc);
                return NULL;
            }
            return Py_BuildValue("(IiN)", first + ran - 1, 0, exc);
        }
        if (share_usage(self, first, ran) < 0) return NULL;
        uint32_t last = first + ran - 1;
        if (claimed >= 0) {
            if ((uint32_t)claimed != last) { /* the entry ran past a claimed capsule */
                worker_error("the runtime ran capsule %llu after claimed capsule %llu", last, (unsigned long long)claimed);
                return NULL;
            }
            return Py_BuildValue("(Iii)", last, 1, self->verdicts[last]);
        }
        int32_t v = self->verdicts[last];
        if (v < 0 || PNI_VERDICT_KIND(v) != PNI_KIND_FORWARD) { /* maybe a fault: the runtime knows */
            PyObject *r = PyObject_CallNoArgs(self->after_run);
            if (!r) {
                if (PyErr_ExceptionMatches(PyExc_Exception)) return Py_BuildValue("(IiN)", last, 0, take_exception());
                return NULL; /* not the code's (KeyboardInterrupt, SystemExit) */
            }
            Py_DECREF(r);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *BatchLoop_run(BatchLoop *self, PyObject *Py_UNUSED(ignored)) { return run_batch(self); }

PyDoc_STRVAR(claim_doc,
"claim() -> (index, body offset) or None\n\n"
"The capsule the entry is running, claimed for Python (its code reached the host): the\n"
"entry runs no capsule after it. None outside a run or when it is claimed already.");

static PyObject *BatchLoop_claim(BatchLoop *self, PyObject *Py_UNUSED(ignored)) {
    pan_fast_batch *b = self->in_batch;
    if (!b || self->claimed >= 0) Py_RETURN_NONE;
    uint32_t k = pan_fast_batch_running(b);
    if (k >= b->count) Py_RETURN_NONE;
    uint32_t i = self->in_first + k;
    self->claimed = (int32_t)i;
    b->stop = 1;
    return Py_BuildValue("(In)", i, self->offsets[i]);
}

PyDoc_STRVAR(set_result_doc,
"set_result(index, verdict, text=None)\n\n"
"Capsule INDEX's result decided in Python: its verdict, or its fault as TEXT\n"
"(reason:message, cut to 2048 bytes; the verdict is then ignored).");

static PyObject *BatchLoop_set_result(BatchLoop *self, PyObject *args) {
    unsigned int i;
    int verdict;
    const char *text = NULL;
    Py_ssize_t len = 0;
    if (!PyArg_ParseTuple(args, "Ii|z#", &i, &verdict, &text, &len)) return NULL;
    if (i >= self->n) {
        PyErr_Format(PyExc_IndexError, "no capsule %u in a batch of %u", i, self->n);
        return NULL;
    }
    if (text && (int64_t)i <= self->text_last) { /* the text area is in entry order */
        PyErr_Format(PyExc_ValueError, "capsule %u's fault comes after capsule %lld's", i, (long long)self->text_last);
        return NULL;
    }
    self->verdicts[i] = verdict;
    if (text) {
        if (len > MAX_FAULT_TEXT) len = MAX_FAULT_TEXT;
        if (len == 0) text = "?", len = 1;
        if (self->text_len + len > self->text_cap) {
            Py_ssize_t cap = self->text_cap ? self->text_cap : 4096;
            while (cap < self->text_len + len) cap *= 2;
            char *t = PyMem_Realloc(self->text, (size_t)cap);
            if (!t) return PyErr_NoMemory();
            self->text = t;
            self->text_cap = cap;
        }
        /* faults come in entry order (run goes forward): the text is appended */
        memcpy(self->text + self->text_len, text, (size_t)len);
        self->text_len += len;
        self->flen[i] = (uint32_t)len;
        self->text_last = i;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(skip_doc, "skip(index)\n\nRun no capsule before INDEX (Python ran them).");

static PyObject *BatchLoop_skip(BatchLoop *self, PyObject *arg) {
    unsigned long i = PyLong_AsUnsignedLong(arg);
    if (i == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (i > self->n) i = self->n;
    if (i > self->next) self->next = (uint32_t)i;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(add_usage_doc, "add_usage(index, steps, fuel)\n\nAdd to what capsule INDEX is reported to have used.");

static PyObject *BatchLoop_add_usage(BatchLoop *self, PyObject *args) {
    unsigned int i;
    unsigned long long steps, fuel;
    if (!PyArg_ParseTuple(args, "IKK", &i, &steps, &fuel)) return NULL;
    if (i >= self->n) {
        PyErr_Format(PyExc_IndexError, "no capsule %u in a batch of %u", i, self->n);
        return NULL;
    }
    self->steps[i] += steps;
    self->fuel[i] += fuel;
    Py_RETURN_NONE;
}

/* Bytes of the VERDICTS record of the batch. */
static Py_ssize_t verdicts_size(BatchLoop *self) {
    return HEAD_SIZE + (Py_ssize_t)ENTRY_SIZE * self->n + self->text_len;
}

static PyObject *BatchLoop_size(BatchLoop *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSsize_t(verdicts_size(self));
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* The VERDICTS record (verdicts_size bytes) at P; the batch is done with. */
static void write_verdicts(BatchLoop *self, uint8_t *p, int needs_reset) {
    put_u32(p, self->n);
    put_u32(p + 4, needs_reset ? NEEDS_RESET : 0);
    put_u32(p + 8, (uint32_t)self->text_len);
    put_u32(p + 12, 0);
    p += HEAD_SIZE;
    for (uint32_t i = 0; i < self->n; i++, p += ENTRY_SIZE) {
        memcpy(p, &self->verdicts[i], 4);
        put_u32(p + 4, self->flen[i]);
        put_u64(p + 8, self->steps[i]);
        put_u64(p + 16, self->fuel[i]);
    }
    if (self->text_len) memcpy(p, self->text, (size_t)self->text_len);
    self->n = self->next = 0;
    self->text_len = 0;
}

PyDoc_STRVAR(write_doc,
"write(out, needs_reset)\n\n"
"Write the batch's VERDICTS record (size() bytes) into OUT, the space reserved for it in\n"
"the up ring.");

static PyObject *BatchLoop_write(BatchLoop *self, PyObject *args) {
    Py_buffer out;
    int needs_reset;
    if (!PyArg_ParseTuple(args, "w*p", &out, &needs_reset)) return NULL;
    Py_ssize_t size = verdicts_size(self);
    if (out.len != size) {
        PyBuffer_Release(&out);
        PyErr_Format(PyExc_ValueError, "the verdicts take %zd bytes, not %zd", size, out.len);
        return NULL;
    }
    write_verdicts(self, out.buf, needs_reset);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

#include "_batchloop_serve.c"

static PyObject *BatchLoop_get_counters(BatchLoop *self, void *Py_UNUSED(c)) {
    return Py_BuildValue("(KK)", self->fast_calls, self->fast_capsules);
}

static PyMethodDef BatchLoop_methods[] = {
    {"start", (PyCFunction)BatchLoop_start, METH_VARARGS, start_doc},
    {"run", (PyCFunction)BatchLoop_run, METH_NOARGS, run_doc},
    {"claim", (PyCFunction)BatchLoop_claim, METH_NOARGS, claim_doc},
    {"set_result", (PyCFunction)BatchLoop_set_result, METH_VARARGS, set_result_doc},
    {"add_usage", (PyCFunction)BatchLoop_add_usage, METH_VARARGS, add_usage_doc},
    {"skip", (PyCFunction)BatchLoop_skip, METH_O, skip_doc},
    {"size", (PyCFunction)BatchLoop_size, METH_NOARGS, "size() -> int\n\nBytes of the VERDICTS record to write."},
    {"write", (PyCFunction)BatchLoop_write, METH_VARARGS, write_doc},
    {"serve", (PyCFunction)BatchLoop_serve, METH_VARARGS, serve_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *BatchLoop_get_record(BatchLoop *self, void *Py_UNUSED(c)) {
    return Py_BuildValue("(nn)", self->rec_at, self->rec_len);
}

static PyObject *BatchLoop_get_positions(BatchLoop *self, void *Py_UNUSED(c)) {
    if (!self->serving) Py_RETURN_NONE;
    return Py_BuildValue("(KK)", (unsigned long long)self->serve_read, (unsigned long long)self->serve_head);
}

static PyGetSetDef BatchLoop_getset[] = {
    {"positions", (getter)BatchLoop_get_positions, NULL,
     "(down ring read cursor, up ring head) while serve runs a batch, else None", NULL},
    {"counters", (getter)BatchLoop_get_counters, NULL, "(calls into the entry, capsules they ran)", NULL},
    {"record", (getter)BatchLoop_get_record, NULL, "(offset, length) of the last started batch's payload in the view",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BatchLoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_runtime.isolation._batchloop.BatchLoop",
    .tp_doc = PyDoc_STR("BatchLoop(view, batch, state, address, after_run, take_usage, any_origin=False): "
                        "a worker's "
                        "C loop over a BATCH record's capsules; see the module docstring."),
    .tp_basicsize = sizeof(BatchLoop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BatchLoop_init,
    .tp_traverse = (traverseproc)BatchLoop_traverse,
    .tp_clear = (inquiry)BatchLoop_clear,
    .tp_dealloc = (destructor)BatchLoop_dealloc,
    .tp_methods = BatchLoop_methods,
    .tp_getset = BatchLoop_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_runtime.isolation._batchloop",
    .m_doc = PyDoc_STR("A worker's loop over a BATCH record's capsules in C; see pan_runtime/net/worker.py."),
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__batchloop(void) {
    if (PyType_Ready(&BatchLoopType) < 0) return NULL;
    if (!str_needs_reset && !(str_needs_reset = PyUnicode_InternFromString("needs_reset"))) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "BatchLoop", (PyObject *)&BatchLoopType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
