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

PyDoc_STRVAR(configure_doc,
"configure(get_created_java_vms) -> run\n\n"
"Find the JVM (address of libjvm's JNI_GetCreatedJavaVMs) and Lane.fastAccept; returns\n"
"the address of the C entry.");

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
        jclass global = m ? (*env)->NewGlobalRef(env, c) : NULL;
        if (c) (*env)->DeleteLocalRef(env, c);
        if (!global) {
            (*env)->ExceptionClear(env);
            PyErr_SetString(PyExc_RuntimeError, "org.pan.jvm.Lane.fastAccept(IIIII)I not found");
            return NULL;
        }
        lane_class = global;
        fast_accept = m;
    }
    return PyLong_FromVoidPtr((void *)run);
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
