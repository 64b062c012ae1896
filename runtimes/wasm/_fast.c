/* pan_wasm._fast: the wasm runtime's C entry for the node's UDP fast path.
 *
 * `run` (a pan_fast_run_fn, include/pan_fast.h) calls a code object's bound `accept` with
 * wasmtime_func_call_unchecked, the GIL released as ctypes would (the epoch ticker and
 * Python host calls need it). The C host functions below stand in for the Python ones of
 * the PNI's hot calls (pni_hot.h, generated from the spec): segment calls on the body
 * (handle 1) and the origin, previous-hop and node-address calls. During a fast run they
 * answer from the capsule body and the fast path's context; otherwise, or for any other
 * handle, they call the Python host function they replace (its ctypes callback), so results
 * are the same on either path. A failure of the host's own bookkeeping before a run (the
 * tick bump) is kept as the Python exception for `take_error`, never reported as a trap. Wasmtime functions are reached through addresses pan_wasm.fastcall takes
 * from wasmtime-py's own library handle (`configure`): nothing here links libwasmtime.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "pni_hot.h"

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, int64_t *args, size_t n, void **trap);
typedef void *(*set_fuel_fn)(void *ctx, uint64_t fuel);
typedef void *(*get_fuel_fn)(const void *ctx, uint64_t *fuel);
typedef void *(*caller_context_fn)(void *caller);
typedef uint8_t *(*memory_data_fn)(const void *ctx, const void *memory);
typedef size_t (*memory_data_size_fn)(const void *ctx, const void *memory);
typedef void *(*host_fn)(void *env, void *caller, int64_t *args, size_t n);

static call_unchecked_fn p_call;
static set_fuel_fn p_set_fuel;
static get_fuel_fn p_get_fuel;
static caller_context_fn p_caller_context;
static memory_data_fn p_memory_data;
static memory_data_size_fn p_memory_data_size;
static PyObject *str_seq;
static PyObject *str_limit;
static PyObject *one;

/* the capsule of the fast run in progress on this thread (all 0 outside one) */
static __thread pni_hot_body t_body;

/* One code object's bound accept (pan_wasm.fastcall.FastEntry has the same layout). */
typedef struct {
    void *context;     /* wasmtime_context_t * */
    void *func;        /* const wasmtime_func_t * */
    int64_t *args;     /* args_and_results, 64-bit slots, a value every 2 slots */
    size_t nargs;
    void **trap;       /* where a trap lands */
    uint64_t fuel;     /* fuel per call; 0: epoch mode */
    PyObject *ticks;   /* TickBudget whose seq is bumped before each call (the code object owns it) */
    void *err;         /* out: the wasmtime_error_t * of a failed call */
    uint64_t fuel_used; /* out: fuel the runs used since Python last took it (fuel mode) */
    PyObject *host_error; /* out, owned: the exception of a failed tick bump (take_error) */
} pan_wasm_entry;

/* One import stood in for (pan_wasm.fastcall.ImportEnv). */
typedef struct {
    host_fn fallback;  /* the Python host function's callback */
    void *memory;      /* wasmtime_memory_t * of the instance */
} pan_wasm_import;

/* Keep the raised exception for take_error (a failure of the host, not of the code). */
static void keep_error(pan_wasm_entry *e) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    Py_XSETREF(e->host_error, value);
}

/* ticks.seq += 1, as the Python path does before each call; -1 with the exception kept in
 * E->host_error (a failure of the host, not of the code). TICKS is held for the duration:
 * the attribute calls may run Python code. */
static int bump_ticks(pan_wasm_entry *e) {
    PyObject *ticks = e->ticks;
    Py_INCREF(ticks);
    PyObject *seq = PyObject_GetAttr(ticks, str_seq);
    PyObject *next = seq ? PyNumber_Add(seq, one) : NULL;
    Py_XDECREF(seq);
    int rc = next ? PyObject_SetAttr(ticks, str_seq, next) : -1;
    Py_XDECREF(next);
    Py_DECREF(ticks);
    if (rc == 0) return 0;
    keep_error(e);
    return -1;
}

/* In fuel mode, add what the call that just returned used to fuel_used; a failure to read
 * the fuel is reported like a failed call (the call's own error, if any, comes first). */
static void *charge_fuel(pan_wasm_entry *e, void *err) {
    if (!e->fuel)
        return err;
    uint64_t left = 0;
    void *ferr = p_get_fuel(e->context, &left);
    if (ferr)
        return err ? err : ferr;
    if (left <= e->fuel)
        e->fuel_used += e->fuel - left;
    return err;
}

static int32_t run(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    pan_wasm_entry *e = state;
    e->err = NULL;
    if (bump_ticks(e) < 0) return PNI_BAD_ARGUMENT; /* after_fast_run raises e->host_error */
    if (e->fuel) {
        void *err = p_set_fuel(e->context, e->fuel);
        if (err) {
            e->err = err;
            return PNI_BAD_ARGUMENT;
        }
    }
    e->args[0] = 1; /* the body's handle */
    e->args[2] = (int64_t)length;
    *e->trap = NULL;
    t_body.data = body, t_body.length = length, t_body.ctx = ctx;
    void *err;
    Py_BEGIN_ALLOW_THREADS
    err = p_call(e->context, e->func, e->args, e->nargs, e->trap);
    Py_END_ALLOW_THREADS
    t_body.data = NULL, t_body.length = 0, t_body.ctx = NULL;
    err = charge_fuel(e, err);
    if (err || *e->trap) {
        e->err = err;
        return PNI_BAD_ARGUMENT; /* after_fast_run turns the trap or error into the fault */
    }
    return (int32_t)e->args[0];
}

/* ticks.limit = LIMIT; 0, or -1 with the exception kept for take_error (a failure of the
 * host, as in bump_ticks). */
static int set_limit(pan_wasm_entry *e, PyObject *limit) {
    PyObject *ticks = e->ticks;
    Py_INCREF(ticks);
    int rc = PyObject_SetAttr(ticks, str_limit, limit);
    Py_DECREF(ticks);
    if (rc < 0) keep_error(e);
    return rc;
}

/* The fast path's batch entry (pan_fast_batch_fn): the capsules run one after another with
 * the GIL released once. As the runtime's own batches do, the batch is one call for the
 * time budget: one seq bump and a limit of count times the per-call ticks (restored after),
 * so its capsules together may take what each may; fuel is per capsule. A failure of the
 * host's bookkeeping is reported on the capsule it stopped (after_fast_run raises it). */
static uint32_t run_batch(void *state, pan_fast_batch *b, const pan_fast_ctx *ctx) {
    pan_wasm_entry *e = state;
    e->err = NULL;
    PyObject *per_call = PyObject_GetAttr(e->ticks, str_limit);
    if (!per_call) {
        keep_error(e);
        b->verdicts[0] = PNI_BAD_ARGUMENT;
        return 1;
    }
    PyObject *count = PyLong_FromUnsignedLong(b->count);
    PyObject *limit = count ? PyNumber_Multiply(per_call, count) : NULL;
    Py_XDECREF(count);
    int ok = limit ? set_limit(e, limit) == 0 : (keep_error(e), 0);
    Py_XDECREF(limit);
    if (ok && bump_ticks(e) < 0) {
        ok = 0;
        PyObject *kept = e->host_error; /* the bump's failure is the one to report */
        e->host_error = NULL;
        set_limit(e, per_call);
        Py_XSETREF(e->host_error, kept);
    }
    if (!ok) {
        Py_DECREF(per_call);
        b->verdicts[0] = PNI_BAD_ARGUMENT;
        return 1;
    }
    uint32_t i = 0;
    void *err = NULL;
    Py_BEGIN_ALLOW_THREADS
    while (i < b->count) {
        b->index = i;
        if (e->fuel) {
            err = p_set_fuel(e->context, e->fuel);
            if (err) {
                b->verdicts[i++] = PNI_BAD_ARGUMENT;
                break;
            }
        }
        e->args[0] = 1; /* the body's handle */
        e->args[2] = (int64_t)b->lengths[i];
        *e->trap = NULL;
        t_body.data = b->bodies[i], t_body.length = b->lengths[i], t_body.ctx = ctx;
        err = p_call(e->context, e->func, e->args, e->nargs, e->trap);
        t_body.data = NULL, t_body.length = 0, t_body.ctx = NULL;
        err = charge_fuel(e, err);
        if (err || *e->trap) {
            b->verdicts[i++] = PNI_BAD_ARGUMENT; /* after_fast_run turns the trap or error into the fault */
            break;
        }
        int32_t v = (int32_t)e->args[0];
        b->verdicts[i++] = v;
        if (v < 0 || PNI_VERDICT_KIND(v) != PNI_KIND_FORWARD || b->stop) break;
    }
    Py_END_ALLOW_THREADS
    e->err = err;
    if (set_limit(e, per_call) < 0) b->verdicts[i - 1] = PNI_BAD_ARGUMENT; /* handed over: the host's failure */
    Py_DECREF(per_call);
    return i;
}

#define U32(a, i) ((uint32_t)(a)[2 * (i)])
#define RESULT(a, v) ((a)[0] = (int64_t)(v))

/* [ptr, ptr+len) in the caller's linear memory, or NULL. */
static uint8_t *linear(void *caller, pan_wasm_import *imp, uint32_t ptr, uint64_t len) {
    void *cx = p_caller_context(caller);
    if ((uint64_t)ptr + len > p_memory_data_size(cx, imp->memory)) return NULL;
    return p_memory_data(cx, imp->memory) + ptr;
}

#define BODY_OR_FALLBACK(a)                                          \
    pan_wasm_import *imp = env;                                      \
    if (!pni_hot_on_body(&t_body, U32(a, 0))) return imp->fallback(env, caller, a, n)

#define CONTEXT_OR_FALLBACK(a)                                       \
    pan_wasm_import *imp = env;                                      \
    if (!pni_hot_in_context(&t_body)) return imp->fallback(env, caller, a, n)

static void *seg_length(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_length(&t_body));
    return NULL;
}

/* a (pointer, length) outside linear memory is OUT_OF_RANGE, as in the Python callback */
static void *seg_read(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    uint32_t len = U32(a, 3);
    uint8_t *dst = linear(caller, imp, U32(a, 2), len);
    RESULT(a, dst ? pni_hot_seg_read(&t_body, U32(a, 1), dst, len) : PNI_OUT_OF_RANGE);
    return NULL;
}

static void *seg_write(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    uint32_t len = U32(a, 3);
    uint8_t *src = linear(caller, imp, U32(a, 2), len);
    RESULT(a, src ? pni_hot_seg_write(&t_body, U32(a, 1), src, len) : PNI_OUT_OF_RANGE);
    return NULL;
}

static void *seg_get_u8(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_get_u8(&t_body, U32(a, 1)));
    return NULL;
}

static void *seg_get_u16(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_get_u16(&t_body, U32(a, 1)));
    return NULL;
}

static void *seg_get_u32(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_get_u32(&t_body, U32(a, 1)));
    return NULL;
}

static void *seg_set_u8(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_set_u8(&t_body, U32(a, 1), U32(a, 2)));
    return NULL;
}

static void *seg_set_u16(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_set_u16(&t_body, U32(a, 1), U32(a, 2)));
    return NULL;
}

static void *seg_set_u32(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, pni_hot_seg_set_u32(&t_body, U32(a, 1), U32(a, 2)));
    return NULL;
}

static void *env_origin_kind(void *env, void *caller, int64_t *a, size_t n) {
    CONTEXT_OR_FALLBACK(a);
    RESULT(a, pni_hot_env_origin_kind(&t_body));
    return NULL;
}

static void *env_prev_hop(void *env, void *caller, int64_t *a, size_t n) {
    CONTEXT_OR_FALLBACK(a);
    RESULT(a, pni_hot_env_prev_hop(&t_body, linear(caller, imp, U32(a, 0), PNI_ADDR_SIZE)));
    return NULL;
}

static void *node_address(void *env, void *caller, int64_t *a, size_t n) {
    CONTEXT_OR_FALLBACK(a);
    RESULT(a, pni_hot_node_address(&t_body, linear(caller, imp, U32(a, 0), PNI_ADDR_SIZE)));
    return NULL;
}

static const struct {
    const char *name;
    void *fn;
} IMPORTS[] = {
    {"seg_length", (void *)seg_length},
    {"seg_read", (void *)seg_read},
    {"seg_write", (void *)seg_write},
    {"seg_get_u8", (void *)seg_get_u8},
    {"seg_get_u16", (void *)seg_get_u16},
    {"seg_get_u32", (void *)seg_get_u32},
    {"seg_set_u8", (void *)seg_set_u8},
    {"seg_set_u16", (void *)seg_set_u16},
    {"seg_set_u32", (void *)seg_set_u32},
    {"env_origin_kind", (void *)env_origin_kind},
    {"env_prev_hop", (void *)env_prev_hop},
    {"node_address", (void *)node_address},
};

PyDoc_STRVAR(configure_doc,
"configure(call_unchecked, set_fuel, get_fuel, caller_context, memory_data, memory_data_size)\n\n"
"The addresses of the Wasmtime C functions this module calls.");

static PyObject *configure(PyObject *Py_UNUSED(m), PyObject *args) {
    unsigned long long c, f, g, cc, md, mds;
    if (!PyArg_ParseTuple(args, "KKKKKK", &c, &f, &g, &cc, &md, &mds)) return NULL;
    if (!c || !f || !g || !cc || !md || !mds) {
        PyErr_SetString(PyExc_ValueError, "every Wasmtime function address is needed");
        return NULL;
    }
    p_call = (call_unchecked_fn)(uintptr_t)c;
    p_set_fuel = (set_fuel_fn)(uintptr_t)f;
    p_get_fuel = (get_fuel_fn)(uintptr_t)g;
    p_caller_context = (caller_context_fn)(uintptr_t)cc;
    p_memory_data = (memory_data_fn)(uintptr_t)md;
    p_memory_data_size = (memory_data_size_fn)(uintptr_t)mds;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(addresses_doc,
"addresses() -> (run, {call: host function}, run_batch)\n\n"
"The C entry for the fast path, the C host functions by PNI call name and the batch entry.");

static PyObject *addresses(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (size_t i = 0; i < sizeof IMPORTS / sizeof IMPORTS[0]; i++) {
        PyObject *v = PyLong_FromVoidPtr(IMPORTS[i].fn);
        if (!v || PyDict_SetItemString(d, IMPORTS[i].name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    PyObject *r = PyLong_FromVoidPtr((void *)run);
    PyObject *rb = r ? PyLong_FromVoidPtr((void *)run_batch) : NULL;
    if (!rb) {
        Py_XDECREF(r);
        Py_DECREF(d);
        return NULL;
    }
    return Py_BuildValue("(NNN)", r, d, rb);
}

PyDoc_STRVAR(take_error_doc,
"take_error(entry) -> exception or None\n\n"
"The exception that stopped the last run at ENTRY (the address of a pan_wasm_entry) before\n"
"the code ran (a failure of the host, not of the code), cleared; None when there was none.");

static PyObject *take_error(PyObject *Py_UNUSED(m), PyObject *arg) {
    pan_wasm_entry *e = PyLong_AsVoidPtr(arg);
    if (!e) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a null entry address");
        return NULL;
    }
    PyObject *exc = e->host_error;
    e->host_error = NULL;
    if (!exc) Py_RETURN_NONE;
    return exc;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, configure_doc},
    {"addresses", addresses, METH_NOARGS, addresses_doc},
    {"take_error", take_error, METH_O, take_error_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_wasm._fast",
    .m_doc = PyDoc_STR("The wasm runtime's C entry and host functions for the node's UDP fast path."),
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fast(void) {
    if (!str_seq && !(str_seq = PyUnicode_InternFromString("seq"))) return NULL;
    if (!str_limit && !(str_limit = PyUnicode_InternFromString("limit"))) return NULL;
    if (!one && !(one = PyLong_FromLong(1))) return NULL;
    return PyModule_Create(&module);
}
