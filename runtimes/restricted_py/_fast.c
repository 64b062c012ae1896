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
 *
 * Two things take Python frames off a run (code.py binds them):
 *
 * - `Entry.bind(...)`: the run does what `fast_accept` does (arm the meter, set the body host,
 *   enter the account, call the code's accept, leave, count steps, check the verdict) here,
 *   calling the code's accept directly; only the rare cases go back to Python (the meter's
 *   budget changed, the call raised, the account flagged the call, a verdict not an int),
 *   through the callables `bind` was given, which are `fast_accept`'s own steps. What a run
 *   needs is kept between runs where nothing else can hold it: the body's memoryview (pointed
 *   at the next body only while the entry alone holds it, at no body between runs), the
 *   previous hop's bytes, and the meter's configuration (until the code's _configure says
 *   `budget_changed()`); the body host's `body` and `prev_hop` are written into their slots.
 * - `direct_calls(host, pni)`: the hot reads (`pni_hot_py.h`, generated from the spec) as C
 *   methods, in place of the Python forms of `pni_hot.BodyHost.direct_calls`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "pan_fast.h"
#include "pni.h"
#include "pni_hot_py.h"
#include "_account_api.h"

#define ADDR_SIZE 16

/* What `bind` gives a run made here (indices into Entry.bound). */
enum {
    B_FN,       /* the code's accept(pni, capsule, length) */
    B_PNI,      /* the pni the code is called with (the body host's view) */
    B_GLOBALS,  /* the code's module dict: its _left_ is the meter's count */
    B_METER,    /* the meter: its `extra` is set per run */
    B_LEAN,     /* the pni_hot.BodyHost: `body` and `prev_hop` set per run */
    B_ENTER,    /* the account's enter() */
    B_LEAVE,    /* the account's leave() -> flags */
    B_CODE,     /* the RestrictedPyCode (its _configure calls budget_changed()) */
    B_BUDGET,   /* the node's budget */
    B_PREPARE,  /* prepare() -> (chunk0, extra0, steps): configure the meter for the node's budget */
    B_FAILED,   /* failed(exc) -> the fault to raise (the call raised; the account not left) */
    B_OVER,     /* over(flags) -> the fault to raise, or None (the account flagged the call) */
    B_NOT_INT,  /* not_int(r) -> the fault of a verdict that is not an int */
    B_CHUNK0,   /* prepare's results */
    B_EXTRA0,
    B_COUNT
};

/* One code object's fast entry: its `fast_accept` (or the parts of it `bind` gave) and the
 * fault of its last run. */
typedef struct {
    PyObject_HEAD
    PyObject *accept; /* fast_accept(body: memoryview, prev_hop: bytes) -> int */
    PyObject *fault;  /* the exception the last run raised, or NULL */
    PyObject *bound[B_COUNT]; /* all set after bind(), else all NULL */
    int metered;              /* the code's accept counts steps */
    long long steps;          /* prepare's steps (0: call prepare) */
    long long fast_steps;     /* steps the runs made here used, until take_steps() */
    Py_ssize_t extra_slot;    /* offset of the meter's `extra` slot (bind found it plain), or 0 */
    Py_ssize_t body_slot;     /* offsets of the body host's `body` and `prev_hop` slots (bind found */
    Py_ssize_t prev_slot;     /* them plain), or 0: setattr is used */
    int stale;                /* the code was configured since prepare (budget_changed()) */
    PyObject *len;            /* the length int of the last run (ints are immutable: shared) */
    uintptr_t len_value;
    PyObject *view;           /* the last run's body view, kept for the next run while nothing else
                               * holds it (view_of), or NULL */
    PyObject *prev;           /* the last batch's previous hop as bytes (immutable: shared), or NULL */
    PyObject *acct;           /* the Account whose enter and leave bind was given (called in C), or NULL */
} Entry;

/* _account's C API (imported by the first bind), or NULL: enter and leave are called. */
static const pan_account_api *acct_api;

static PyObject *str_release, *str_left, *str_extra, *str_body, *str_prev_hop, *str_seg_read, *int_one;

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

/* The raised exception, normalized, with its traceback (the fault names the code's line);
 * a new reference, never NULL. */
static PyObject *take_exception_with_traceback(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return PyObject_CallFunction(PyExc_SystemError, "s", "accept failed without an exception");
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb && PyExceptionInstance_Check(value)) PyException_SetTraceback(value, tb);
    Py_DECREF(type);
    Py_XDECREF(tb);
    if (!value) {
        PyErr_Clear();
        value = Py_NewRef(PyExc_MemoryError);
    }
    return value;
}

/* Let go of a run's view: no view of the pool's body outlives the run (one the code kept is
 * released; the last reference goes with its buffer). */
static void drop_view(PyObject *view) {
    if (Py_REFCNT(view) == 1) {
        Py_DECREF(view);
        return;
    }
    PyObject *gone = PyObject_CallMethodNoArgs(view, str_release);
    if (gone) Py_DECREF(gone);
    else PyErr_Clear();
    Py_DECREF(view);
}

/* Whether E's kept view is the entry's alone: no other reference to it or to its buffer, no
 * view made from it (a slice holds the buffer), nothing exported from it, no weak reference,
 * not released. Only then may it be pointed at another body. */
static int view_alone(PyObject *view) {
    PyMemoryViewObject *v = (PyMemoryViewObject *)view;
    _PyManagedBufferObject *mb = v->mbuf;
    return Py_REFCNT(view) == 1 && v->exports == 0 && v->weakreflist == NULL && !(v->flags & _Py_MEMORYVIEW_RELEASED) &&
           mb != NULL && Py_REFCNT(mb) == 1 && mb->exports == 1 && !(mb->flags & _Py_MANAGED_BUFFER_RELEASED) &&
           mb->master.obj == NULL && v->view.ndim == 1 && v->view.itemsize == 1 && v->view.shape == v->ob_array;
}

/* Point VIEW (view_alone) at the LENGTH bytes at BODY: its buffer's and its own fields. */
static void point_view(PyObject *view, uint8_t *body, uintptr_t length) {
    PyMemoryViewObject *v = (PyMemoryViewObject *)view;
    v->mbuf->master.buf = body;
    v->mbuf->master.len = (Py_ssize_t)length;
    v->view.buf = body;
    v->view.len = (Py_ssize_t)length;
    v->view.shape[0] = (Py_ssize_t)length;
}

/* What a kept view shows between runs: nothing (no pointer into the pool outlives a run). */
static uint8_t no_body[1];

/* A writable view of LENGTH bytes at BODY for one run (a new reference; NULL with an error
 * set): E's kept view pointed at BODY when it is the entry's alone (view_alone), else a new
 * one. What the view exposes is exactly what PyMemoryView_FromMemory would have made. */
static PyObject *view_of(Entry *e, uint8_t *body, uintptr_t length) {
    PyObject *view = e->view;
    if (view && view_alone(view)) {
        point_view(view, body, length);
        return Py_NewRef(view);
    }
    e->view = NULL;
    Py_XDECREF(view); /* held elsewhere (a run still on): its holder's end_view lets go of it */
    return PyMemoryView_FromMemory((char *)body, (Py_ssize_t)length, PyBUF_WRITE);
}

/* The end of a run's view: kept for the next run when only the run and E hold it, else let
 * go of as drop_view does (no view of the pool's body outlives the run). */
static void end_view(Entry *e, PyObject *view) {
    if (view == e->view || (!e->view && Py_REFCNT(view) == 1)) {
        if (!e->view) e->view = view; /* the run's reference becomes the entry's */
        else Py_DECREF(view);
        if (view_alone(e->view)) {
            point_view(e->view, no_body, 0);
        } else {
            view = e->view;
            e->view = NULL;
            drop_view(view);
        }
        return;
    }
    drop_view(view);
}

/* body host.NAME = V, straight into its slot at OFFSET when bind found it plain, else by
 * setattr: 0, or -1 with an error set. */
static int set_host(Entry *e, Py_ssize_t offset, PyObject *name, PyObject *v) {
    if (!offset) return PyObject_SetAttr(e->bound[B_LEAN], name, v);
    PyObject **slot = (PyObject **)((char *)e->bound[B_LEAN] + offset);
    if (*slot != v) Py_XSETREF(*slot, Py_NewRef(v));
    return 0;
}

/* The verdict R stands for: 0 and *OUT, or -1 with E's fault recorded. */
static int verdict_of(Entry *e, PyObject *r, int32_t *out) {
    long v = PyLong_AsLong(r);
    if (v == -1 && PyErr_Occurred()) {
        e->fault = take_exception();
        return -1;
    }
    if (v < INT32_MIN || v > INT32_MAX) {
        e->fault = PyObject_CallFunction(PyExc_OverflowError, "s", "verdict outside 32 bits");
        if (!e->fault) e->fault = take_exception();
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

/* The meter's count for the node's budget: configured by `prepare` when the code last ran
 * under another budget (or never). 0, or -1 with an error set. */
static int ready(Entry *e) {
    if (!e->stale && e->steps) return 0;
    PyObject *t = PyObject_CallNoArgs(e->bound[B_PREPARE]);
    if (!t) return -1;
    long long steps;
    PyObject *chunk0, *extra0;
    if (!PyArg_ParseTuple(t, "OOL", &chunk0, &extra0, &steps)) {
        Py_DECREF(t);
        return -1;
    }
    Py_XSETREF(e->bound[B_CHUNK0], Py_NewRef(chunk0));
    Py_XSETREF(e->bound[B_EXTRA0], Py_NewRef(extra0));
    e->steps = steps;
    e->stale = 0;
    Py_DECREF(t);
    return 0;
}

/* meter.extra = V: 0, or -1 with an error set. Straight into its slot where bind found it
 * a plain object slot of the meter's class (what setattr would do), else by setattr. */
static int set_extra(Entry *e, PyObject *v) {
    if (!e->extra_slot) return PyObject_SetAttr(e->bound[B_METER], str_extra, v);
    PyObject **slot = (PyObject **)((char *)e->bound[B_METER] + e->extra_slot);
    Py_XSETREF(*slot, Py_NewRef(v));
    return 0;
}

/* meter.extra, a new reference; NULL with an error set. */
static PyObject *get_extra(Entry *e) {
    if (!e->extra_slot) return PyObject_GetAttr(e->bound[B_METER], str_extra);
    PyObject *v = *(PyObject **)((char *)e->bound[B_METER] + e->extra_slot);
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "extra");
        return NULL;
    }
    return Py_NewRef(v);
}

/* The offset of NAME in instances of T when it is a writable object slot of T's layout (a
 * member descriptor made by T or a base, inside T's basic size); else 0. */
static Py_ssize_t object_slot(PyTypeObject *t, PyObject *name) {
    PyObject *d = _PyType_Lookup(t, name); /* borrowed */
    if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type) || !PyType_IsSubtype(t, PyDescr_TYPE(d))) return 0;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY) || m->offset < (Py_ssize_t)sizeof(PyObject) ||
        m->offset + (Py_ssize_t)sizeof(PyObject *) > t->tp_basicsize)
        return 0;
    return m->offset;
}

/* The offset of OB's `extra` when it is a writable object slot of OB's class and the class
 * reads and writes attributes the generic way; else 0 (setattr and getattr are used). */
static Py_ssize_t plain_slot(PyObject *ob, PyObject *name) {
    PyTypeObject *t = Py_TYPE(ob);
    if (t->tp_setattro != PyObject_GenericSetAttr || t->tp_getattro != PyObject_GenericGetAttr) return 0;
    return object_slot(t, name);
}

/* The offset of OB's NAME when it is a writable object slot of OB's class and the class
 * writes attributes the generic way (a slot's member descriptor is a data descriptor: what
 * setattr would do is write the slot); else 0 (setattr is used). */
static Py_ssize_t set_slot(PyObject *ob, PyObject *name) {
    PyTypeObject *t = Py_TYPE(ob);
    if (t->tp_setattro != PyObject_GenericSetAttr) return 0;
    Py_ssize_t offset = object_slot(t, name);
    if (offset && !*(PyObject **)((char *)ob + offset)) return 0; /* unset: setattr says what to do */
    return offset;
}

/* Steps the run used (the meter's count left, as fast_accept counts them): 0, or -1. */
static int count_steps(Entry *e) {
    PyObject *extra = get_extra(e);
    if (!extra) return -1;
    PyObject *left = PyDict_GetItemWithError(e->bound[B_GLOBALS], str_left); /* borrowed */
    long long x = PyLong_AsLongLong(extra);
    Py_DECREF(extra);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (!left) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "_left_");
        return -1;
    }
    long long l = PyLong_AsLongLong(left);
    if (l == -1 && PyErr_Occurred()) return -1;
    e->fast_steps += e->steps - x - l;
    return 0;
}

/* fast_accept's run, made here (see the module docstring): the verdict, or PNI_BAD_ARGUMENT
 * with the fault recorded. */
static int32_t run_bound(Entry *e, uint8_t *body, uintptr_t length, PyObject *prev) {
    PyObject **b = e->bound;
    int32_t verdict = PNI_BAD_ARGUMENT;
    if (ready(e) < 0) {
        e->fault = take_exception();
        return verdict;
    }
    PyObject *view = view_of(e, body, length);
    if (!view) {
        e->fault = take_exception();
        return verdict;
    }
    PyObject *len = NULL, *r = NULL, *flags = NULL;
    if (!e->len || e->len_value != length) {
        PyObject *n = PyLong_FromSize_t((size_t)length);
        if (!n) {
            e->fault = take_exception();
            goto done;
        }
        Py_XSETREF(e->len, n);
        e->len_value = length;
    }
    len = Py_NewRef(e->len);
    if (PyDict_SetItem(b[B_GLOBALS], str_left, b[B_CHUNK0]) < 0 || set_extra(e, b[B_EXTRA0]) < 0 ||
        set_host(e, e->body_slot, str_body, view) < 0 || set_host(e, e->prev_slot, str_prev_hop, prev) < 0) {
        e->fault = take_exception();
        goto done;
    }
    if (e->acct) {
        if (acct_api->enter(e->acct) < 0) {
            e->fault = take_exception();
            goto done;
        }
    } else {
        PyObject *entered = PyObject_CallNoArgs(b[B_ENTER]);
        if (!entered) {
            e->fault = take_exception();
            goto done;
        }
        Py_DECREF(entered);
    }
    PyObject *args[3] = {b[B_PNI], int_one, len};
    r = PyObject_Vectorcall(b[B_FN], args, 3, NULL);
    if (!r) { /* failed(exc) leaves the account, names the fault and re-arms the meter */
        PyObject *exc = take_exception_with_traceback();
        PyObject *fault = PyObject_CallOneArg(b[B_FAILED], exc);
        Py_DECREF(exc);
        e->fault = fault ? fault : take_exception();
        goto done;
    }
    if (e->acct) {
        int fl = acct_api->leave(e->acct);
        flags = fl < 0 ? NULL : fl == 0 ? Py_NewRef(Py_None) : PyLong_FromLong(fl);
    } else {
        flags = PyObject_CallNoArgs(b[B_LEAVE]);
    }
    if (!flags || (e->metered && count_steps(e) < 0)) {
        e->fault = take_exception();
        goto done;
    }
    if (flags != Py_None && PyObject_IsTrue(flags)) {
        PyObject *over = PyObject_CallOneArg(b[B_OVER], flags);
        if (!over) {
            e->fault = take_exception();
            goto done;
        }
        if (over != Py_None) {
            e->fault = over;
            goto done;
        }
        Py_DECREF(over);
    }
    if (PyErr_Occurred()) { /* IsTrue failed */
        e->fault = take_exception();
        goto done;
    }
    if (!PyLong_CheckExact(r)) {
        PyObject *fault = PyObject_CallOneArg(b[B_NOT_INT], r);
        e->fault = fault ? fault : take_exception();
        goto done;
    }
    int32_t v;
    if (verdict_of(e, r, &v) == 0) verdict = v;
done:
    if (set_host(e, e->body_slot, str_body, Py_None) < 0) { /* the run is over: no body */
        if (!e->fault) e->fault = take_exception();
        else PyErr_Clear();
    }
    Py_XDECREF(flags);
    Py_XDECREF(r);
    Py_XDECREF(len);
    end_view(e, view);
    return verdict;
}

/* Run the code on one body; the verdict, or PNI_BAD_ARGUMENT with the fault recorded. */
static int32_t run_body(Entry *e, uint8_t *body, uintptr_t length, PyObject *prev) {
    Py_CLEAR(e->fault);
    if (e->bound[B_FN]) return run_bound(e, body, length, prev);
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

/* The previous hop as bytes (None when there is none): E's last one when it is the same
 * address (bytes are immutable, so one object serves every batch from that neighbour). */
static PyObject *prev_hop_of(Entry *e, const pan_fast_ctx *ctx) {
    if (!ctx->has_prev_hop) return Py_NewRef(Py_None);
    if (e->prev && memcmp(PyBytes_AS_STRING(e->prev), ctx->prev_hop, ADDR_SIZE) == 0) return Py_NewRef(e->prev);
    PyObject *prev = PyBytes_FromStringAndSize((const char *)ctx->prev_hop, ADDR_SIZE);
    if (prev) Py_XSETREF(e->prev, Py_NewRef(prev));
    return prev;
}

static int32_t run(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    Entry *e = (Entry *)state;
    PyGILState_STATE g = PyGILState_Ensure();
    int32_t verdict = PNI_BAD_ARGUMENT;
    PyObject *prev = prev_hop_of(e, ctx);
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
    PyObject *prev = prev_hop_of(e, ctx);
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
    for (int i = 0; i < B_COUNT; i++) Py_VISIT(self->bound[i]);
    Py_VISIT(self->len);
    Py_VISIT(self->view);
    Py_VISIT(self->prev);
    Py_VISIT(self->acct);
    return 0;
}

static int Entry_clear(Entry *self) {
    Py_CLEAR(self->accept);
    Py_CLEAR(self->fault);
    for (int i = 0; i < B_COUNT; i++) Py_CLEAR(self->bound[i]);
    Py_CLEAR(self->len);
    Py_CLEAR(self->view);
    Py_CLEAR(self->prev);
    Py_CLEAR(self->acct);
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

/* The Account whose methods ENTER and LEAVE are (a new reference), when _account's C API is
 * there: then a run calls them in C. NULL otherwise (an error set only when importing the API
 * failed for another reason than its absence). */
static PyObject *account_of(PyObject *enter, PyObject *leave) {
    if (!acct_api) {
        acct_api = (const pan_account_api *)PyCapsule_Import(PAN_ACCOUNT_API_CAPSULE, 0);
        if (!acct_api) {
            if (!PyErr_ExceptionMatches(PyExc_ImportError) && !PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
            PyErr_Clear();
            return NULL;
        }
    }
    if (!PyCFunction_Check(enter) || !PyCFunction_Check(leave)) return NULL;
    PyObject *self = PyCFunction_GET_SELF(enter);
    if (!self || self != PyCFunction_GET_SELF(leave) || !Py_IS_TYPE(self, acct_api->type) ||
        (void *)PyCFunction_GET_FUNCTION(enter) != acct_api->enter_method ||
        (void *)PyCFunction_GET_FUNCTION(leave) != acct_api->leave_method)
        return NULL;
    return Py_NewRef(self);
}

PyDoc_STRVAR(bind_doc,
"bind(fn, pni, globals, meter, lean, enter, leave, code, budget, prepare, failed, over, not_int, metered)\n\n"
"Make each run here what fast_accept does, calling FN (the code's accept) directly; the\n"
"rare cases go to PREPARE, FAILED, OVER and NOT_INT (see the module docstring).");

static PyObject *Entry_bind(Entry *self, PyObject *args) {
    PyObject *o[B_CHUNK0];
    int metered;
    if (!PyArg_ParseTuple(args, "OOO!OOOOOOOOOOp:bind", &o[B_FN], &o[B_PNI], &PyDict_Type, &o[B_GLOBALS], &o[B_METER],
                          &o[B_LEAN], &o[B_ENTER], &o[B_LEAVE], &o[B_CODE], &o[B_BUDGET], &o[B_PREPARE],
                          &o[B_FAILED], &o[B_OVER], &o[B_NOT_INT], &metered))
        return NULL;
    static const int callables[] = {B_FN, B_ENTER, B_LEAVE, B_PREPARE, B_FAILED, B_OVER, B_NOT_INT};
    for (size_t i = 0; i < sizeof callables / sizeof callables[0]; i++) {
        if (!PyCallable_Check(o[callables[i]])) {
            PyErr_SetString(PyExc_TypeError, "bind: fn, enter, leave, prepare, failed, over and not_int must be callable");
            return NULL;
        }
    }
    for (int i = 0; i < B_CHUNK0; i++) Py_XSETREF(self->bound[i], Py_NewRef(o[i]));
    Py_CLEAR(self->bound[B_CHUNK0]);
    Py_CLEAR(self->bound[B_EXTRA0]);
    self->metered = metered;
    self->steps = 0;
    self->stale = 0;
    self->extra_slot = plain_slot(o[B_METER], str_extra);
    self->body_slot = set_slot(o[B_LEAN], str_body);
    self->prev_slot = set_slot(o[B_LEAN], str_prev_hop);
    Py_CLEAR(self->acct);
    PyObject *acct = account_of(o[B_ENTER], o[B_LEAVE]);
    if (!acct && PyErr_Occurred()) return NULL;
    self->acct = acct;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(budget_changed_doc, "budget_changed()\n\nThe code was configured for a budget: the next run prepares the node's again.");

static PyObject *Entry_budget_changed(Entry *self, PyObject *Py_UNUSED(ignored)) {
    self->stale = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(take_steps_doc, "take_steps() -> int\n\nSteps the runs made here used since the last take, once.");

static PyObject *Entry_take_steps(Entry *self, PyObject *Py_UNUSED(ignored)) {
    long long n = self->fast_steps;
    self->fast_steps = 0;
    return PyLong_FromLongLong(n);
}

static PyObject *Entry_get_state(Entry *self, void *Py_UNUSED(c)) {
    return PyLong_FromVoidPtr(self);
}

static PyMethodDef Entry_methods[] = {
    {"take_fault", (PyCFunction)Entry_take_fault, METH_NOARGS, take_fault_doc},
    {"bind", (PyCFunction)Entry_bind, METH_VARARGS, bind_doc},
    {"take_steps", (PyCFunction)Entry_take_steps, METH_NOARGS, take_steps_doc},
    {"budget_changed", (PyCFunction)Entry_budget_changed, METH_NOARGS, budget_changed_doc},
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

/* ---------------------------------------------------------------- the code's pni */

/* The `pni` object code run from the fast path is called with: what a SimpleNamespace of the
 * same calls gives code (each name a read-only attribute; code cannot write attributes of
 * it, the write guard refuses), read without a type lookup or a dict probe for the hot names
 * (their interned names are compared by address first, then the dict is asked). The header
 * codecs' C read (Reader) takes its seg_read from here directly. */

#define PNI_FAST_NAMES 16

typedef struct {
    PyObject_HEAD
    PyObject *calls;                   /* name -> callable: every call the pni offers */
    PyObject *seg_read;                /* calls["seg_read"], or NULL */
    Py_ssize_t nfast;
    PyObject *fast_name[PNI_FAST_NAMES]; /* interned names read most, with their callables */
    PyObject *fast_call[PNI_FAST_NAMES];
} Pni;

static PyTypeObject PniType;

static int Pni_traverse(Pni *self, visitproc visit, void *arg) {
    Py_VISIT(self->calls);
    Py_VISIT(self->seg_read);
    for (Py_ssize_t i = 0; i < self->nfast; i++) {
        Py_VISIT(self->fast_name[i]);
        Py_VISIT(self->fast_call[i]);
    }
    return 0;
}

static int Pni_clear(Pni *self) {
    Py_CLEAR(self->calls);
    Py_CLEAR(self->seg_read);
    for (Py_ssize_t i = 0; i < self->nfast; i++) {
        Py_CLEAR(self->fast_name[i]);
        Py_CLEAR(self->fast_call[i]);
    }
    self->nfast = 0;
    return 0;
}

static void Pni_dealloc(Pni *self) {
    PyObject_GC_UnTrack(self);
    Pni_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* pni.NAME: a hot name by its address, else the calls' dict, else what any object has. */
static PyObject *Pni_getattro(Pni *self, PyObject *name) {
    for (Py_ssize_t i = 0; i < self->nfast; i++) {
        if (self->fast_name[i] == name) return Py_NewRef(self->fast_call[i]);
    }
    if (self->calls && PyUnicode_CheckExact(name)) {
        PyObject *v = PyDict_GetItemWithError(self->calls, name); /* borrowed */
        if (v) return Py_NewRef(v);
        if (PyErr_Occurred()) return NULL;
    }
    return PyObject_GenericGetAttr((PyObject *)self, name);
}

static int Pni_setattro(Pni *self, PyObject *name, PyObject *value) {
    PyErr_Format(PyExc_AttributeError, "pni attributes are read-only (%R)", name);
    return -1;
}

static PyObject *Pni_repr(Pni *self) {
    return PyUnicode_FromFormat("<pni %R>", self->calls ? self->calls : Py_None);
}

static PyTypeObject PniType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_restricted_py._fast.Pni",
    .tp_doc = PyDoc_STR("The pni of the fast path's runs: the calls of a mapping as read-only attributes (made by pni)."),
    .tp_basicsize = sizeof(Pni),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Pni_dealloc,
    .tp_traverse = (traverseproc)Pni_traverse,
    .tp_clear = (inquiry)Pni_clear,
    .tp_getattro = (getattrofunc)Pni_getattro,
    .tp_setattro = (setattrofunc)Pni_setattro,
    .tp_repr = (reprfunc)Pni_repr,
};

PyDoc_STRVAR(pni_doc,
"pni(calls, hot) -> Pni\n\n"
"The pni object of CALLS (a dict: name -> callable), each name a read-only attribute; the\n"
"names in HOT (at most 16) are found first, by their interned strings' addresses.");

static PyObject *mod_pni(PyObject *Py_UNUSED(m), PyObject *args) {
    PyObject *calls, *hot;
    if (!PyArg_ParseTuple(args, "O!O:pni", &PyDict_Type, &calls, &hot)) return NULL;
    PyObject *seq = PySequence_Fast(hot, "pni: hot must be a sequence of names");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > PNI_FAST_NAMES) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "pni: more than 16 hot names");
        return NULL;
    }
    Pni *p = PyObject_GC_New(Pni, &PniType);
    if (!p) {
        Py_DECREF(seq);
        return NULL;
    }
    p->calls = PyDict_Copy(calls);
    p->seg_read = NULL;
    p->nfast = 0;
    PyObject_GC_Track(p);
    if (!p->calls) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_CheckExact(name)) {
            PyErr_SetString(PyExc_TypeError, "pni: hot names must be str");
            goto fail;
        }
        PyObject *call = PyDict_GetItemWithError(p->calls, name); /* borrowed */
        if (!call) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_KeyError, "pni: hot name %R is not a call", name);
            goto fail;
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name); /* code's names are interned: compared by address */
        p->fast_name[p->nfast] = name;
        p->fast_call[p->nfast] = Py_NewRef(call);
        p->nfast++;
    }
    PyObject *sr = PyDict_GetItemWithError(p->calls, str_seg_read); /* borrowed */
    if (!sr && PyErr_Occurred()) goto fail;
    p->seg_read = Py_XNewRef(sr);
    Py_DECREF(seq);
    return (PyObject *)p;
fail:
    Py_DECREF(seq);
    Py_DECREF(p);
    return NULL;
}

/* ---------------------------------------------------------------- the header codecs */

/* A header codec's `read` made here: `cls.read(pni, seg, off)` of a generated codec class
 * (pan_runtime.protocol_headers) is `pni.seg_read(seg, off, SIZE)` and then `STRUCT.unpack_from`
 * into a new instance; a Reader does the same call of the code's pni and decodes the bytes
 * straight into the instance's slots (no struct call, no tuple, no Python frame), and where
 * that call is the direct seg_read (pni_hot_py.h) over a live body, decodes from the body
 * what it would have answered (no bytes made). Whatever is
 * not plain (the answer not exact bytes of SIZE or more, or CLS not the class the reader was
 * made for) goes to FINISH or FALLBACK, the Python forms, so every answer is theirs. */

enum { F_BYTES, F_UINT };

typedef struct {
    Py_ssize_t wire;  /* offset in the encoded bytes */
    Py_ssize_t width; /* bytes */
    Py_ssize_t slot;  /* offset of the instance's slot */
    int kind;         /* F_BYTES or F_UINT (big-endian, width 1, 2, 4 or 8) */
} codec_field;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall; /* Reader_vectorcall */
    PyTypeObject *cls;   /* the class whose instances it makes */
    PyObject *size;      /* SIZE as an int (the seg_read argument) */
    PyObject *finish;    /* finish(cls, data): the Python form of read after seg_read */
    PyObject *fallback;  /* fallback(cls, pni, seg, off): the Python form of read */
    Py_ssize_t nbytes;   /* SIZE */
    Py_ssize_t nfields;
    codec_field fields[32];
} Reader;

static PyTypeObject DirectType; /* the direct calls' type (below) */

static int Reader_traverse(Reader *self, visitproc visit, void *arg) {
    Py_VISIT(self->cls);
    Py_VISIT(self->size);
    Py_VISIT(self->finish);
    Py_VISIT(self->fallback);
    return 0;
}

static int Reader_clear(Reader *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->size);
    Py_CLEAR(self->finish);
    Py_CLEAR(self->fallback);
    return 0;
}

static void Reader_dealloc(Reader *self) {
    PyObject_GC_UnTrack(self);
    Reader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Decode the nbytes at P into a new instance of the reader's class. */
static PyObject *decode(Reader *r, const unsigned char *p) {
    PyObject *values[32];
    Py_ssize_t n = 0;
    for (; n < r->nfields; n++) {
        const codec_field *f = &r->fields[n];
        const unsigned char *q = p + f->wire;
        if (f->kind == F_BYTES) {
            values[n] = PyBytes_FromStringAndSize((const char *)q, f->width);
        } else {
            unsigned long long v = 0;
            for (Py_ssize_t i = 0; i < f->width; i++) v = (v << 8) | q[i];
            values[n] = PyLong_FromUnsignedLongLong(v);
        }
        if (!values[n]) goto fail;
    }
    PyObject *obj = r->cls->tp_alloc(r->cls, 0);
    if (!obj) goto fail;
    for (Py_ssize_t i = 0; i < r->nfields; i++) {
        PyObject **slot = (PyObject **)((char *)obj + r->fields[i].slot);
        Py_XSETREF(*slot, values[i]); /* the reference moves into the slot */
    }
    return obj;
fail:
    while (n > 0) Py_DECREF(values[--n]);
    return NULL;
}

/* The direct seg_read (pni_hot_py.h) over a live body, when SEG_READ is one: decode the
 * header at OFF straight from the body (what that call would answer as bytes). 1 with *OUT
 * set (NULL with an error set), or 0: not the plain case, the call is made as it stands. */
static int read_body(Reader *r, PyObject *seg_read, PyObject *seg, PyObject *off, PyObject **out) {
    if (!PyCFunction_Check(seg_read) ||
        PyCFunction_GET_FUNCTION(seg_read) != (PyCFunction)(void (*)(void))pni_hot_py_seg_read ||
        !Py_IS_TYPE(PyCFunction_GET_SELF(seg_read), &DirectType))
        return 0;
    pni_hot_body b;
    int on = pni_hot_py_body((pni_hot_direct *)PyCFunction_GET_SELF(seg_read), seg, &b);
    if (on < 0) {
        *out = NULL;
        return 1;
    }
    uint32_t offset;
    if (!on || !pni_hot_py_u32(off, &offset) || (uint64_t)offset + (uint64_t)r->nbytes > b.length) return 0;
    *out = decode(r, b.data + offset);
    return 1;
}

/* read(pni, seg, off=0) of the reader's class: see above. */
static PyObject *Reader_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Reader *self = (Reader *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames || (nargs != 2 && nargs != 3)) { /* keywords, a count the Python form refuses: its answer */
        Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
        PyObject *small[8], **all = n + 1 <= 8 ? small : PyMem_Malloc((size_t)(n + 1) * sizeof(PyObject *));
        if (!all) return PyErr_NoMemory();
        all[0] = (PyObject *)self->cls;
        for (Py_ssize_t i = 0; i < n; i++) all[i + 1] = args[i];
        PyObject *out = PyObject_Vectorcall(self->fallback, all, (size_t)(nargs + 1), kwnames);
        if (all != small) PyMem_Free(all);
        return out;
    }
    PyObject *pni = args[0], *seg = args[1], *off = nargs == 3 ? args[2] : NULL, *zero = NULL;
    if (!off) {
        off = zero = PyLong_FromLong(0);
        if (!zero) return NULL;
    }
    PyObject *out = NULL;
    PyObject *seg_read = Py_IS_TYPE(pni, &PniType) && ((Pni *)pni)->seg_read ? Py_NewRef(((Pni *)pni)->seg_read)
                                                                           : PyObject_GetAttr(pni, str_seg_read);
    if (!seg_read) goto done;
    if (read_body(self, seg_read, seg, off, &out)) {
        Py_DECREF(seg_read);
        goto done;
    }
    PyObject *call[3] = {seg, off, self->size};
    PyObject *data = PyObject_Vectorcall(seg_read, call, 3, NULL);
    Py_DECREF(seg_read);
    if (!data) goto done;
    if (PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) >= self->nbytes) {
        out = decode(self, (const unsigned char *)PyBytes_AS_STRING(data));
    } else {
        PyObject *fa[2] = {(PyObject *)self->cls, data};
        out = PyObject_Vectorcall(self->finish, fa, 2, NULL);
    }
    Py_DECREF(data);
done:
    Py_XDECREF(zero);
    return out;
}

/* A reader is its class's `read`: read on the class (or an instance of it) is the reader
 * itself, no bound method made per call; on any other class, the Python form bound to it. */
static PyObject *Reader_descr_get(PyObject *self, PyObject *obj, PyObject *type) {
    Reader *r = (Reader *)self;
    if (!type) {
        if (!obj) {
            PyErr_SetString(PyExc_TypeError, "Reader.__get__(None, None) is invalid");
            return NULL;
        }
        type = (PyObject *)Py_TYPE(obj);
    }
    if (type == (PyObject *)r->cls) return Py_NewRef(self);
    return PyMethod_New(r->fallback, type);
}

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_restricted_py._fast.Reader",
    .tp_doc = PyDoc_STR("A header codec's read made in C: read(pni, seg, off=0) (made by codec_reader)."),
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_vectorcall_offset = offsetof(Reader, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = Reader_descr_get,
};

PyDoc_STRVAR(codec_reader_doc,
"codec_reader(cls, size, fields, finish, fallback) -> Reader\n\n"
"A C read for the codec class CLS (instances of SIZE bytes; FIELDS a sequence of\n"
"(name, wire offset, width, is_bytes), each name a writable object slot of CLS);\n"
"FINISH(cls, data) and FALLBACK(cls, pni, seg, off) are the Python forms it defers to.");

static PyObject *mod_codec_reader(PyObject *Py_UNUSED(m), PyObject *args) {
    PyObject *cls, *fields, *finish, *fallback;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "O!nOOO:codec_reader", &PyType_Type, &cls, &size, &fields, &finish, &fallback))
        return NULL;
    PyTypeObject *type = (PyTypeObject *)cls;
    if (!PyCallable_Check(finish) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "codec_reader: finish and fallback must be callable");
        return NULL;
    }
    if (type->tp_alloc != PyType_GenericAlloc || type->tp_dictoffset != 0 || type->tp_itemsize != 0 || size < 0) {
        PyErr_SetString(PyExc_TypeError, "codec_reader: the class must be slotted, without a __dict__");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(fields, "codec_reader: fields must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 32) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "codec_reader: more than 32 fields");
        return NULL;
    }
    Reader *r = PyObject_GC_New(Reader, &ReaderType);
    if (!r) {
        Py_DECREF(seq);
        return NULL;
    }
    r->vectorcall = Reader_vectorcall;
    r->cls = (PyTypeObject *)Py_NewRef(cls);
    r->size = PyLong_FromSsize_t(size);
    r->finish = Py_NewRef(finish);
    r->fallback = Py_NewRef(fallback);
    r->nbytes = size;
    r->nfields = 0;
    PyObject_GC_Track(r);
    if (!r->size) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name;
        Py_ssize_t wire, width;
        int is_bytes;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Unnp:codec_reader field", &name, &wire, &width, &is_bytes))
            goto fail;
        if (wire < 0 || width < 0 || wire + width > size || (!is_bytes && width != 1 && width != 2 && width != 4 && width != 8)) {
            PyErr_Format(PyExc_ValueError, "codec_reader: field %R does not fit", name);
            goto fail;
        }
        Py_ssize_t slot = object_slot(type, name);
        if (!slot) {
            PyErr_Format(PyExc_TypeError, "codec_reader: %R is not a writable object slot of the class's layout", name);
            goto fail;
        }
        r->fields[i] = (codec_field){.wire = wire, .width = width, .slot = slot, .kind = is_bytes ? F_BYTES : F_UINT};
        r->nfields = i + 1;
    }
    Py_DECREF(seq);
    return (PyObject *)r;
fail:
    Py_DECREF(seq);
    Py_DECREF(r);
    return NULL;
}

/* ---------------------------------------------------------------- the direct calls */

static int Direct_traverse(pni_hot_direct *self, visitproc visit, void *arg) {
    Py_VISIT(self->host);
    for (int i = 0; i < PNI_HOT_PY_CALLS; i++) Py_VISIT(self->slow[i]);
    return 0;
}

static int Direct_clear(pni_hot_direct *self) {
    Py_CLEAR(self->host);
    for (int i = 0; i < PNI_HOT_PY_CALLS; i++) Py_CLEAR(self->slow[i]);
    return 0;
}

static void Direct_dealloc(pni_hot_direct *self) {
    PyObject_GC_UnTrack(self);
    Direct_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject DirectType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pan_restricted_py._fast.Direct",
    .tp_doc = PyDoc_STR("The hot reads of one pni_hot.BodyHost as C methods (made by direct_calls)."),
    .tp_basicsize = sizeof(pni_hot_direct),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Direct_dealloc,
    .tp_traverse = (traverseproc)Direct_traverse,
    .tp_clear = (inquiry)Direct_clear,
    .tp_methods = PNI_HOT_PY_METHODS,
};

PyDoc_STRVAR(direct_calls_doc,
"direct_calls(host, pni) -> {name: call}\n\n"
"What HOST.direct_calls(PNI) returns (HOST a pni_hot.BodyHost, PNI a pni_api.HostPNI over it),\n"
"each call a C method: the same answers, and the same call of PNI for everything else.");

static PyObject *mod_direct_calls(PyObject *Py_UNUSED(m), PyObject *args) {
    PyObject *host, *pni;
    if (!PyArg_ParseTuple(args, "OO:direct_calls", &host, &pni)) return NULL;
    pni_hot_direct *d = PyObject_GC_New(pni_hot_direct, &DirectType);
    if (!d) return NULL;
    d->host = Py_NewRef(host);
    for (int i = 0; i < PNI_HOT_PY_CALLS; i++) d->slow[i] = NULL;
    PyObject_GC_Track(d);
    PyObject *out = PyDict_New();
    if (!out) goto fail;
    for (int i = 0; i < PNI_HOT_PY_CALLS; i++) {
        d->slow[i] = PyObject_GetAttrString(pni, PNI_HOT_PY_NAMES[i]);
        PyObject *call = d->slow[i] ? PyObject_GetAttrString((PyObject *)d, PNI_HOT_PY_NAMES[i]) : NULL;
        if (!call) goto fail;
        int r = PyDict_SetItemString(out, PNI_HOT_PY_NAMES[i], call);
        Py_DECREF(call);
        if (r < 0) goto fail;
    }
    Py_DECREF(d);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(d);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"direct_calls", mod_direct_calls, METH_VARARGS, direct_calls_doc},
    {"codec_reader", mod_codec_reader, METH_VARARGS, codec_reader_doc},
    {"pni", mod_pni, METH_VARARGS, pni_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_restricted_py._fast",
    .m_doc = PyDoc_STR("restricted_py's C entry for the node's UDP fast path (RUN, BATCH, Entry, direct_calls, pni, codec_reader)."),
    .m_size = -1,
    .m_methods = module_methods,
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
    if (PyType_Ready(&EntryType) < 0 || PyType_Ready(&DirectType) < 0 || PyType_Ready(&ReaderType) < 0 || PyType_Ready(&PniType) < 0 || pni_hot_py_init() < 0) return NULL;
    if (!(str_release = PyUnicode_InternFromString("release")) || !(str_left = PyUnicode_InternFromString("_left_")) ||
        !(str_extra = PyUnicode_InternFromString("extra")) || !(str_body = PyUnicode_InternFromString("body")) ||
        !(str_prev_hop = PyUnicode_InternFromString("prev_hop")) || !(str_seg_read = PyUnicode_InternFromString("seg_read")) ||
        !(int_one = PyLong_FromLong(1)))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Entry", (PyObject *)&EntryType) < 0 || PyModule_AddObjectRef(m, "Pni", (PyObject *)&PniType) < 0 ||
        add_address(m, "RUN", (void *)(pan_fast_run_fn)run) < 0 ||
        add_address(m, "BATCH", (void *)(pan_fast_batch_fn)batch) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
