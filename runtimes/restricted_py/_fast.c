/* pan_restricted_py._fast: the restricted_py runtime's C entry for the node's UDP fast path.
 *
 * restricted_py code is Python, so its run is a call of the code object's `fast_accept`
 * (code.py: the code's accept under its step meter and memory and time account, its PNI
 * answered from the body). What this file adds is the door the other runtimes have: `run`
 * (a pan_fast_run_fn, include/pan_fast.h) and `batch` (a pan_fast_batch_fn), so the fast
 * path hands a run of capsules of one code object from one neighbour over in ONE call and
 * the loop over them is here, with the previous hop's bytes built once per batch. Each
 * capsule is still one call of `fast_accept`, so every per-call budget (steps, time,
 * memory) is applied per capsule as before.
 *
 * A call that raises records the exception (`take_fault` hands it to after_fast_run, which
 * raises it for the node) and gives PNI_BAD_ARGUMENT, a verdict that is no forward, so the
 * fast path hands the capsule over and the batch stops there: the record is always the
 * last run's. The GIL is taken (PyGILState) around the calls, whatever the caller holds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "pan_fast.h"
#include "pni.h"

#define ADDR_SIZE 16

/* One code object's fast entry: its `fast_accept` and the fault of its last run. */
typedef struct {
    PyObject_HEAD
    PyObject *accept; /* fast_accept(body: memoryview, prev_hop: bytes) -> int */
    PyObject *fault;  /* the exception the last run raised, or NULL */
} Entry;

static PyObject *str_release;

/* The raised exception, normalized, without its traceback (it holds the run's frames, which
 * hold the body); a new reference, never NULL. */
static PyObject *take_exception(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return PyObject_CallFunction(PyExc_SystemError, "s", "fast_accept failed without an exception");
    PyErr_NormalizeException(&type, &value, &tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    if (value && PyExceptionInstance_Check(value)) PyException_SetTraceback(value, Py_None);
    if (!value) {
        PyErr_Clear();
        value = Py_NewRef(PyExc_MemoryError); /* no instance could be made: the class stands for it */
    }
    return value;
}

/* Run the code on one body; the verdict, or PNI_BAD_ARGUMENT with the fault recorded. */
static int32_t run_body(Entry *e, uint8_t *body, uintptr_t length, PyObject *prev) {
    Py_CLEAR(e->fault);
    PyObject *view = PyMemoryView_FromMemory((char *)body, (Py_ssize_t)length, PyBUF_WRITE);
    PyObject *r = view ? PyObject_CallFunctionObjArgs(e->accept, view, prev, NULL) : NULL;
    int32_t verdict = PNI_BAD_ARGUMENT;
    if (!r) {
        e->fault = take_exception();
    } else {
        long v = PyLong_Check(r) ? PyLong_AsLong(r) : -1;
        if (!PyLong_Check(r)) {
            e->fault = PyObject_CallFunction(PyExc_TypeError, "s", "fast_accept returned a non-integer verdict");
        } else if (v == -1 && PyErr_Occurred()) {
            e->fault = take_exception();
        } else if (v < INT32_MIN || v > INT32_MAX) {
            e->fault = PyObject_CallFunction(PyExc_OverflowError, "s", "verdict outside 32 bits");
        } else {
            verdict = (int32_t)v;
        }
        if (!e->fault && PyErr_Occurred()) e->fault = take_exception(); /* making the fault failed */
        Py_DECREF(r);
    }
    if (view) {
        /* the body is the pool's: no view of it outlives the run (one the code kept is
         * released here; if it cannot be, it stays valid as the pool does) */
        PyObject *gone = PyObject_CallMethodNoArgs(view, str_release);
        if (gone) Py_DECREF(gone);
        else PyErr_Clear();
        Py_DECREF(view);
    }
    return verdict;
}

static PyObject *prev_hop_of(const pan_fast_ctx *ctx) {
    if (!ctx->has_prev_hop) return Py_NewRef(Py_None);
    return PyBytes_FromStringAndSize((const char *)ctx->prev_hop, ADDR_SIZE);
}

static int32_t run(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    Entry *e = (Entry *)state;
    PyGILState_STATE g = PyGILState_Ensure();
    int32_t verdict = PNI_BAD_ARGUMENT;
    PyObject *prev = prev_hop_of(ctx);
    if (prev) {
        verdict = run_body(e, body, length, prev);
        Py_DECREF(prev);
    } else {
        Py_XSETREF(e->fault, take_exception());
    }
    PyGILState_Release(g);
    return verdict;
}

static uint32_t batch(void *state, pan_fast_batch *b, const pan_fast_ctx *ctx) {
    Entry *e = (Entry *)state;
    PyGILState_STATE g = PyGILState_Ensure();
    uint32_t i = 0;
    PyObject *prev = prev_hop_of(ctx);
    if (!prev) {
        Py_XSETREF(e->fault, take_exception());
        b->index = 0;
        b->verdicts[i++] = PNI_BAD_ARGUMENT;
    }
    while (prev && i < b->count) {
        b->index = i;
        int32_t v = run_body(e, b->bodies[i], b->lengths[i], prev);
        b->verdicts[i++] = v;
        if (v < 0 || PNI_VERDICT_KIND(v) != PNI_KIND_FORWARD || b->stop) break;
    }
    Py_XDECREF(prev);
    PyGILState_Release(g);
    return i;
}

/* ---------------------------------------------------------------- the type */

static int Entry_init(Entry *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"accept", NULL};
    PyObject *accept;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kw, &accept)) return -1;
    if (!PyCallable_Check(accept)) {
        PyErr_SetString(PyExc_TypeError, "accept must be callable");
        return -1;
    }
    Py_XSETREF(self->accept, Py_NewRef(accept));
    return 0;
}

static int Entry_traverse(Entry *self, visitproc visit, void *arg) {
    Py_VISIT(self->accept);
    Py_VISIT(self->fault);
    return 0;
}

static int Entry_clear(Entry *self) {
    Py_CLEAR(self->accept);
    Py_CLEAR(self->fault);
    return 0;
}

static void Entry_dealloc(Entry *self) {
    PyObject_GC_UnTrack(self);
    Entry_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(take_fault_doc, "take_fault() -> exception or None\n\nThe fault of the last run, once.");

static PyObject *Entry_take_fault(Entry *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *f = self->fault;
    self->fault = NULL;
    return f ? f : Py_NewRef(Py_None);
}

static PyObject *Entry_get_state(Entry *self, void *Py_UNUSED(c)) {
    return PyLong_FromVoidPtr(self);
}

static PyMethodDef Entry_methods[] = {
    {"take_fault", (PyCFunction)Entry_take_fault, METH_NOARGS, take_fault_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Entry_getset[] = {
    {"state", (getter)Entry_get_state, NULL, "the address the fast path passes to RUN and BATCH", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_restricted_py._fast.Entry",
    .tp_doc = PyDoc_STR("Entry(accept): one code object's C entry for the fast path (see the module docstring)."),
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Entry_init,
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_traverse = (traverseproc)Entry_traverse,
    .tp_clear = (inquiry)Entry_clear,
    .tp_methods = Entry_methods,
    .tp_getset = Entry_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_restricted_py._fast",
    .m_doc = PyDoc_STR("restricted_py's C entry for the node's UDP fast path (RUN, BATCH, Entry)."),
    .m_size = -1,
};

/* m.NAME = the address of FN (module init's helper: 0, or -1 with an error set). */
static int add_address(PyObject *m, const char *name, void *fn) {
    PyObject *v = PyLong_FromVoidPtr(fn);
    if (!v) return -1;
    int r = PyModule_AddObjectRef(m, name, v);
    Py_DECREF(v);
    return r;
}

PyMODINIT_FUNC PyInit__fast(void) {
    if (PyType_Ready(&EntryType) < 0) return NULL;
    str_release = PyUnicode_InternFromString("release");
    if (!str_release) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Entry", (PyObject *)&EntryType) < 0 ||
        add_address(m, "RUN", (void *)(pan_fast_run_fn)run) < 0 ||
        add_address(m, "BATCH", (void *)(pan_fast_batch_fn)batch) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
