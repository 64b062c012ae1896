/* pan_wasm._fast: the wasm runtime's C entry for the node's UDP fast path.
 *
 * `run` (a pan_fast_run_fn, include/pan_fast.h) calls a code object's bound `accept` with
 * wasmtime_func_call_unchecked, the GIL released as ctypes would (the epoch ticker and
 * Python host calls need it). The C host functions below stand in for the Python ones of
 * the PNI calls a forwarding capsule makes most: segment calls on the body (handle 1) and
 * the origin, previous-hop and node-address calls. During a fast run they answer from the
 * capsule body and the fast path's context; otherwise, or for any other handle, they call
 * the Python host function they replace (its ctypes callback), so results are the same
 * on either path. Wasmtime functions are reached through addresses pan_wasm.fastcall takes
 * from wasmtime-py's own library handle (`configure`): nothing here links libwasmtime.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "pan_fast.h"
#include "pni.h"

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
static PyObject *one;

/* the capsule of the fast run in progress on this thread */
static __thread const pan_fast_ctx *t_ctx;
static __thread uint8_t *t_body;
static __thread uint64_t t_len;

/* One code object's bound accept (pan_wasm.fastcall.FastEntry has the same layout). */
typedef struct {
    void *context;     /* wasmtime_context_t * */
    void *func;        /* const wasmtime_func_t * */
    int64_t *args;     /* args_and_results, 64-bit slots, a value every 2 slots */
    size_t nargs;
    void **trap;       /* where a trap lands */
    uint64_t fuel;     /* fuel per call; 0: epoch mode */
    PyObject *ticks;   /* TickBudget whose seq is bumped before each call (borrowed) */
    void *err;         /* out: the wasmtime_error_t * of a failed call */
    uint64_t fuel_used; /* out: fuel the runs used since Python last took it (fuel mode) */
} pan_wasm_entry;

/* One import stood in for (pan_wasm.fastcall.ImportEnv). */
typedef struct {
    host_fn fallback;  /* the Python host function's callback */
    void *memory;      /* wasmtime_memory_t * of the instance */
} pan_wasm_import;

static int32_t run(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    pan_wasm_entry *e = state;
    PyObject *seq = PyObject_GetAttr(e->ticks, str_seq);
    PyObject *next = seq ? PyNumber_Add(seq, one) : NULL;
    Py_XDECREF(seq);
    if (!next || PyObject_SetAttr(e->ticks, str_seq, next) < 0) {
        Py_XDECREF(next);
        PyErr_WriteUnraisable(e->ticks);
        return PNI_BAD_ARGUMENT;
    }
    Py_DECREF(next);
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
    e->err = NULL;
    t_ctx = ctx, t_body = body, t_len = length;
    void *err;
    Py_BEGIN_ALLOW_THREADS
    err = p_call(e->context, e->func, e->args, e->nargs, e->trap);
    Py_END_ALLOW_THREADS
    t_ctx = NULL, t_body = NULL, t_len = 0;
    if (e->fuel) {
        uint64_t left = 0;
        void *ferr = p_get_fuel(e->context, &left);
        if (ferr) {
            if (!err) err = ferr; /* reported like a failed call */
        } else if (left <= e->fuel) {
            e->fuel_used += e->fuel - left;
        }
    }
    if (err || *e->trap) {
        e->err = err;
        return PNI_BAD_ARGUMENT; /* after_fast_run turns the trap or error into the fault */
    }
    return (int32_t)e->args[0];
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
    if (!t_ctx || U32(a, 0) != 1) return imp->fallback(env, caller, a, n)

#define IN_BODY(off, k) ((uint64_t)(off) + (uint64_t)(k) <= t_len)

static void *seg_length(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    RESULT(a, t_len);
    return NULL;
}

static void *seg_read(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    uint32_t off = U32(a, 1), len = U32(a, 3);
    uint8_t *dst = linear(caller, imp, U32(a, 2), len);
    if (!dst || !IN_BODY(off, len)) {
        RESULT(a, PNI_OUT_OF_RANGE);
        return NULL;
    }
    memcpy(dst, t_body + off, len);
    RESULT(a, len);
    return NULL;
}

static void *seg_write(void *env, void *caller, int64_t *a, size_t n) {
    BODY_OR_FALLBACK(a);
    uint32_t off = U32(a, 1), len = U32(a, 3);
    uint8_t *src = linear(caller, imp, U32(a, 2), len);
    if (!src || !IN_BODY(off, len)) {
        RESULT(a, PNI_OUT_OF_RANGE);
        return NULL;
    }
    memmove(t_body + off, src, len);
    RESULT(a, len);
    return NULL;
}

static void get(int64_t *a, int k) {
    uint32_t off = U32(a, 1);
    if (!IN_BODY(off, k)) {
        RESULT(a, PNI_OUT_OF_RANGE);
        return;
    }
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = (v << 8) | t_body[off + i];
    RESULT(a, v);
}

static void set(int64_t *a, int k) {
    uint32_t off = U32(a, 1), value = U32(a, 2);
    if (!IN_BODY(off, k)) {
        RESULT(a, PNI_OUT_OF_RANGE);
        return;
    }
    if (k < 4 && value >= (1u << (8 * k))) {
        RESULT(a, PNI_BAD_ARGUMENT);
        return;
    }
    for (int i = k - 1; i >= 0; i--, value >>= 8) t_body[off + i] = (uint8_t)value;
    RESULT(a, PNI_OK);
}

static void *seg_get_u8(void *env, void *caller, int64_t *a, size_t n) { BODY_OR_FALLBACK(a); get(a, 1); return NULL; }
static void *seg_get_u16(void *env, void *caller, int64_t *a, size_t n) { BODY_OR_FALLBACK(a); get(a, 2); return NULL; }
static void *seg_get_u32(void *env, void *caller, int64_t *a, size_t n) { BODY_OR_FALLBACK(a); get(a, 4); return NULL; }
static void *seg_set_u8(void *env, void *caller, int64_t *a, size_t n) { BODY_OR_FALLBACK(a); set(a, 1); return NULL; }
static void *seg_set_u16(void *env, void *caller, int64_t *a, size_t n) { BODY_OR_FALLBACK(a); set(a, 2); return NULL; }
static void *seg_set_u32(void *env, void *caller, int64_t *a, size_t n) { BODY_OR_FALLBACK(a); set(a, 4); return NULL; }

static void *env_origin_kind(void *env, void *caller, int64_t *a, size_t n) {
    pan_wasm_import *imp = env;
    if (!t_ctx) return imp->fallback(env, caller, a, n);
    RESULT(a, t_ctx->origin_kind);
    return NULL;
}

static void *address_out(void *env, void *caller, int64_t *a, size_t n, const uint8_t *addr) {
    pan_wasm_import *imp = env;
    uint8_t *dst = linear(caller, imp, U32(a, 0), PNI_ADDR_SIZE);
    if (!dst) {
        RESULT(a, PNI_OUT_OF_RANGE);
        return NULL;
    }
    if (!addr) {
        RESULT(a, PNI_NOT_FOUND);
        return NULL;
    }
    memcpy(dst, addr, PNI_ADDR_SIZE);
    RESULT(a, PNI_OK);
    return NULL;
}

static void *env_prev_hop(void *env, void *caller, int64_t *a, size_t n) {
    pan_wasm_import *imp = env;
    if (!t_ctx) return imp->fallback(env, caller, a, n);
    return address_out(env, caller, a, n, t_ctx->has_prev_hop ? t_ctx->prev_hop : NULL);
}

static void *node_address(void *env, void *caller, int64_t *a, size_t n) {
    pan_wasm_import *imp = env;
    if (!t_ctx) return imp->fallback(env, caller, a, n);
    return address_out(env, caller, a, n, t_ctx->node_address);
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
"addresses() -> (run, {call: host function})\n\n"
"The C entry for the fast path and the C host functions by PNI call name.");

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
    return Py_BuildValue("(NN)", PyLong_FromVoidPtr((void *)run), d);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, configure_doc},
    {"addresses", addresses, METH_NOARGS, addresses_doc},
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
    str_seq = PyUnicode_InternFromString("seq");
    one = PyLong_FromLong(1);
    if (!str_seq || !one) return NULL;
    return PyModule_Create(&module);
}
