/* pan_jvm._fast: the jvm runtime's C entry for the node's UDP fast path.
 *
 * `run` (a pan_fast_run_fn, include/pan_fast.h) copies the fast path's context where the
 * Java PniBridge of the lane reads it (origin, previous hop, node address: no call back into
 * Python for those) and calls the static org.pan.jvm.Lane.fastAccept through JNI, with the
 * GIL released as JPype does for calls into Java. Everything else a code object asks of
 * the PNI still reaches the Python host through the lane's upcalls. The JavaVM comes from
 * JNI_GetCreatedJavaVMs of the libjvm JPype loaded (`configure`); nothing here starts one.
 * A run that fails around the code (no JNIEnv, a body outside the lane's buffer, an escaped
 * Java exception) sets `host_failed`, so the runtime reports a host failure instead of the
 * lane's last fault message, which is about an earlier run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <jni.h>
#include <stdint.h>
#include <string.h>

#include "pan_fast.h"
#include "pni.h"

typedef jint (*get_vms_fn)(JavaVM **, jsize, jsize *);

static JavaVM *vm;
static jclass lane_class;
static jmethodID fast_accept;
static jmethodID fast_accept_batch;

/* the batch area in the context buffer (org.pan.jvm.Lane.FAST_BATCH_AT and _STRIDE): a
 * count, then per capsule (offset in the lane's buffer, length, verdict), native-order ints */
#define BATCH_AT 64
#define BATCH_STRIDE 12
#define BATCH_MAX 1024 /* the fast path's largest receive batch */
#define CTX_SIZE (BATCH_AT + 8 + BATCH_MAX * BATCH_STRIDE)

/* One code object on one lane (pan_jvm.fast.JvmEntry has the same layout). */
typedef struct {
    int32_t lane;      /* the lane's index in Lane's registry */
    int32_t code;      /* the code object's id on the lane */
    int32_t buffer;    /* the lane's id of the direct buffer over the node's pool */
    int32_t last;      /* out: the verdict of the last run (Lane.FAULT when it faulted) */
    uint8_t *lo, *hi;  /* the pool memory that buffer covers */
    uint8_t *ctx;      /* the pan_fast_ctx copy the lane's PniBridge reads */
    int32_t host_failed; /* out: why the last run failed before or around the code (HOST_*), else 0 */
} pan_jvm_entry;

/* failures of the host, not of the code: the lane's fault message is not about this run */
#define HOST_NO_JNIENV 1      /* this thread could not get a JNIEnv */
#define HOST_OUTSIDE_BUFFER 2 /* the body is not inside the lane's buffer over the pool */
#define HOST_JAVA_EXCEPTION 3 /* Lane.fastAccept let an exception out */

static JNIEnv *jni_env(void) {
    JNIEnv *env = NULL;
    jint r = (*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8);
    if (r == JNI_EDETACHED) r = (*vm)->AttachCurrentThreadAsDaemon(vm, (void **)&env, NULL);
    return r == JNI_OK ? env : NULL;
}

static int32_t run(void *state, uint8_t *body, uintptr_t length, const pan_fast_ctx *ctx) {
    pan_jvm_entry *e = state;
    JNIEnv *env = jni_env();
    e->host_failed = !env ? HOST_NO_JNIENV : (body < e->lo || body + length > e->hi) ? HOST_OUTSIDE_BUFFER : 0;
    if (e->host_failed) {
        e->last = INT32_MIN;
        return INT32_MIN;
    }
    memcpy(e->ctx, ctx, sizeof *ctx);
    jint r;
    Py_BEGIN_ALLOW_THREADS
    r = (*env)->CallStaticIntMethod(env, lane_class, fast_accept, (jint)e->lane, (jint)e->code, (jint)e->buffer,
                                     (jint)(body - e->lo), (jint)length);
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionClear(env);
        e->host_failed = HOST_JAVA_EXCEPTION;
        r = INT32_MIN;
    }
    Py_END_ALLOW_THREADS
    e->last = (int32_t)r;
    return (int32_t)r;
}

/* The fast path's batch entry (pan_fast_batch_fn): the capsules' places go to the batch area
 * and Lane.fastAcceptBatch runs them in one JNI call, the GIL released once. It stops after
 * a capsule that called the Python host, which is where the fast path's `stop` comes from.
 * Java keeps the index of the capsule it runs in the batch area (after the count), which
 * `index_at` points the caller to: a host call mid-batch claims that capsule. */
static uint32_t run_batch(void *state, pan_fast_batch *b, const pan_fast_ctx *ctx) {
    pan_jvm_entry *e = state;
    JNIEnv *env = jni_env();
    uint32_t n = b->count < BATCH_MAX ? b->count : BATCH_MAX;
    e->host_failed = !env ? HOST_NO_JNIENV : 0;
    for (uint32_t i = 0; !e->host_failed && i < n; i++) {
        if (b->bodies[i] < e->lo || b->bodies[i] + b->lengths[i] > e->hi) e->host_failed = HOST_OUTSIDE_BUFFER;
    }
    if (e->host_failed) {
        e->last = INT32_MIN;
        b->verdicts[0] = INT32_MIN;
        return 1;
    }
    memcpy(e->ctx, ctx, sizeof *ctx);
    int32_t *area = (int32_t *)(void *)(e->ctx + BATCH_AT);
    area[0] = (int32_t)n;
    area[1] = 0;
    b->index_at = &area[1];
    for (uint32_t i = 0; i < n; i++) {
        area[2 + 3 * i] = (int32_t)(b->bodies[i] - e->lo);
        area[2 + 3 * i + 1] = (int32_t)b->lengths[i];
    }
    jint ran;
    Py_BEGIN_ALLOW_THREADS
    ran = (*env)->CallStaticIntMethod(env, lane_class, fast_accept_batch, (jint)e->lane, (jint)e->code, (jint)e->buffer);
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionClear(env);
        e->host_failed = HOST_JAVA_EXCEPTION;
        ran = -1;
    }
    Py_END_ALLOW_THREADS
    if (ran < 1 || (uint32_t)ran > n) { /* an escaped exception (or a broken lane): the first is lost to it */
        if (!e->host_failed) e->host_failed = HOST_JAVA_EXCEPTION;
        e->last = INT32_MIN;
        b->verdicts[0] = INT32_MIN;
        return 1;
    }
    for (jint i = 0; i < ran; i++) b->verdicts[i] = area[2 + 3 * i + 2];
    b->index = (uint32_t)ran - 1;
    e->last = b->verdicts[ran - 1];
    return (uint32_t)ran;
}

PyDoc_STRVAR(configure_doc,
"configure(get_created_java_vms) -> (run, run_batch, context size)\n\n"
"Find the JVM (address of libjvm's JNI_GetCreatedJavaVMs), Lane.fastAccept and\n"
"Lane.fastAcceptBatch; returns the addresses of the C entries and the size of the context\n"
"buffer they use (the fast path's context, then the batch area).");

static PyObject *configure(PyObject *Py_UNUSED(m), PyObject *args) {
    unsigned long long addr;
    if (!PyArg_ParseTuple(args, "K", &addr)) return NULL;
    if (!vm) {
        JavaVM *vms[1];
        jsize n = 0;
        if (!addr || ((get_vms_fn)(uintptr_t)addr)(vms, 1, &n) != JNI_OK || n < 1) {
            PyErr_SetString(PyExc_RuntimeError, "no running JVM (JNI_GetCreatedJavaVMs found none)");
            return NULL;
        }
        vm = vms[0];
    }
    if (!lane_class) {
        JNIEnv *env = jni_env();
        if (!env) {
            PyErr_SetString(PyExc_RuntimeError, "cannot attach this thread to the JVM");
            return NULL;
        }
        jclass c = (*env)->FindClass(env, "org/pan/jvm/Lane");
        jmethodID m = c ? (*env)->GetStaticMethodID(env, c, "fastAccept", "(IIIII)I") : NULL;
        jmethodID mb = m ? (*env)->GetStaticMethodID(env, c, "fastAcceptBatch", "(III)I") : NULL;
        jclass global = mb ? (*env)->NewGlobalRef(env, c) : NULL;
        if (c) (*env)->DeleteLocalRef(env, c);
        if (!global) {
            (*env)->ExceptionClear(env);
            PyErr_SetString(PyExc_RuntimeError, "org.pan.jvm.Lane.fastAccept(IIIII)I or fastAcceptBatch(III)I not found");
            return NULL;
        }
        lane_class = global;
        fast_accept = m;
        fast_accept_batch = mb;
    }
    PyObject *r = PyLong_FromVoidPtr((void *)run);
    PyObject *rb = r ? PyLong_FromVoidPtr((void *)run_batch) : NULL;
    if (!rb) {
        Py_XDECREF(r);
        return NULL;
    }
    return Py_BuildValue("(NNi)", r, rb, CTX_SIZE);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, configure_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pan_jvm._fast",
    .m_doc = PyDoc_STR("The jvm runtime's C entry for the node's UDP fast path."),
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }
