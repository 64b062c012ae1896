/* pan_restricted_py._account's C API for the fast entry (_fast.c): an account's enter and
 * leave without a Python call. The capsule `pan_restricted_py._account._C_API` holds one
 * pan_account_api. */
#ifndef PAN_ACCOUNT_API_H
#define PAN_ACCOUNT_API_H

#include <Python.h>

#define PAN_ACCOUNT_API_CAPSULE "pan_restricted_py._account._C_API"

typedef struct {
    PyTypeObject *type;            /* Account */
    int (*enter)(PyObject *acct);  /* what Account.enter() does: 0, or -1 with an error set */
    int (*leave)(PyObject *acct);  /* what Account.leave() does: the flags, or -1 with an error set */
    void *enter_method;            /* the C functions of the methods enter and leave (to know them) */
    void *leave_method;
} pan_account_api;

#endif
