/*
 * common.c - what every type of shmkit._shmkit uses: the module state,
 * names given by Python code, and ext_error(), the one place where a
 * shmkit code becomes a Python exception (with the exception classes it
 * raises, made here at module exec).
 *
 * This is the bottom of the extension: it calls only libshmkit and the
 * CPython API, never a type's file (scripts/check_py_layers.py checks it).
 */
#include "ext.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* The module's definition, recorded by ext_common_init() so that this file
 * finds the module state without naming module.c (which is above it). */
static PyModuleDef *ext_def;

ext_state *ext_state_of_module(PyObject *m)
{
    return (ext_state *)PyModule_GetState(m);
}

#if PY_VERSION_HEX < 0x030B0000
/* CPython 3.10 has PyType_GetModuleByDef only as a private function. */
#define PyType_GetModuleByDef _PyType_GetModuleByDef
#endif

PyObject *ext_module_of_type(PyTypeObject *tp)
{
    PyObject *m;

    if (!ext_def)
        return NULL;
    m = PyType_GetModuleByDef(tp, ext_def);
    if (!m)
        PyErr_Clear();
    return m;
}

ext_state *ext_state_of_type(PyTypeObject *tp)
{
    PyObject *m = ext_module_of_type(tp);

    return m ? ext_state_of_module(m) : NULL;
}

int ext_name_arg(PyObject *obj, const char **out)
{
    Py_ssize_t len;

    if (obj == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "name must be str or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = PyUnicode_AsUTF8AndSize(obj, &len);
    if (!*out)
        return -1;
    /* The C API takes a C string: a NUL inside would silently cut the name
     * (x\0evil would name x). CPython's _posixshmem refuses it so. */
    if (strlen(*out) != (size_t)len) {
        PyErr_SetString(PyExc_ValueError, "embedded null character");
        return -1;
    }
    return 0;
}

int ext_fastcall_args(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names,
                      int required, PyObject **out, int nout)
{
    Py_ssize_t k, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    int i;

    if (nargs + nkw > nout) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d argument%s (%zd "
                     "given)", fn, nout, nout == 1 ? "" : "s", nargs + nkw);
        return -1;
    }
    for (i = 0; i < nout; i++)
        out[i] = i < nargs ? args[i] : NULL;
    for (k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);

        for (i = 0; i < nout; i++)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                break;
        if (i == nout) {
            PyErr_Format(PyExc_TypeError,
                         "%R is an invalid keyword argument for %s()", key, fn);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "argument for %s() given by name "
                         "('%s') and position (%d)", fn, names[i], i + 1);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (i = 0; i < required; i++)
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument "
                         "'%s' (pos %d)", fn, names[i], i + 1);
            return -1;
        }
    return 0;
}

int ext_required_name(PyObject *obj, const char **out)
{
    if (ext_name_arg(obj, out) < 0)
        return -1;
    if (!*out) {
        PyErr_SetString(PyExc_TypeError, "name must be str");
        return -1;
    }
    return 0;
}

/* Raises exc(code, message, "/name") -- OSError's constructor picks the
 * errno subclass (FileNotFoundError, PermissionError, ...) by itself. */
static PyObject *raise_oserror(PyObject *exc, int err, const char *msg,
                               const char *name)
{
    PyObject *v;

    if (name)
        v = Py_BuildValue("(isN)", err, msg,
                          PyUnicode_FromFormat("/%s", name[0] == '/' ? name + 1 : name));
    else
        v = Py_BuildValue("(is)", err, msg);
    if (v) {
        /* Made here, so that the exception is already the errno subclass
         * when raised: CPython 3.10 matches `except` against the type as
         * set, which would stay OSError until normalized. */
        PyObject *inst = PyObject_Call(exc, v, NULL);

        Py_DECREF(v);
        if (inst) {
            PyErr_SetObject((PyObject *)Py_TYPE(inst), inst);
            Py_DECREF(inst);
        }
    }
    return NULL;
}

/*
 * The message for code: the library's detail of the failed call when it is
 * about this failure, else the code's own message. shmkit_last_error() is
 * per thread and kept until the next detailed failure, and not every path
 * writes one (the lock paths never do), so it may belong to an earlier,
 * unrelated call: a detail is used only if it ends with this code's
 * "(NAME)", and never for the lock codes, whose paths write none.
 */
static const char *detail(int code)
{
    const char *d = shmkit_last_error(), *en = shmkit_errname(code);
    size_t dl, nl;

    if (code == SHMKIT_EOWNERDEAD || code == SHMKIT_ENOTRECOVERABLE ||
        !d || !*d)
        return shmkit_strerror(code);
    dl = strlen(d);
    nl = strlen(en);
    if (dl < nl + 2 || d[dl - 1] != ')' || d[dl - nl - 2] != '(' ||
        memcmp(d + dl - nl - 1, en, nl) != 0)
        return shmkit_strerror(code);
    return d;
}

PyObject *ext_error(ext_state *st, int code, const char *name)
{
    if (code < 0 && code > SHMKIT_EBASE) {
        /* A system error: -errno. */
        int err = -code;

        /* A name the system refuses is an OSError, as CPython's shm_open
         * reports it; other bad arguments are ValueErrors. */
        if (err == EINVAL && !(name && shmkit_name_check(name) < 0)) {
            PyErr_Format(PyExc_ValueError, "invalid argument: %s", detail(code));
            return NULL;
        }
        if (err == ENOMEM && !name)
            return PyErr_NoMemory();
        /* A name too long: CPython's shm_open (glibc) says EINVAL. */
        if (err == ENAMETOOLONG && name &&
            shmkit_name_check(name) == -ENAMETOOLONG)
            err = EINVAL;
        return raise_oserror(PyExc_OSError, err, strerror(err), name);
    }
    switch (code) {
    case SHMKIT_ESTORAGE:
        PyErr_SetString(PyExc_ValueError, "exceeds available storage");
        return NULL;
    case SHMKIT_EINDEX:
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    case SHMKIT_ENOTFOUND:
        PyErr_SetString(PyExc_ValueError, "value not in this container");
        return NULL;
    case SHMKIT_EEMPTY:
        PyErr_SetString(PyExc_ValueError, "cannot mmap an empty file");
        return NULL;
    case SHMKIT_ECORRUPT:
    case SHMKIT_EKIND:
    case SHMKIT_EVERSION:
    case SHMKIT_ETRUNCATED:
    case SHMKIT_ETYPE:
    case SHMKIT_ESHAPE:
        return raise_oserror(st ? st->CorruptError : PyExc_ValueError, code,
                             detail(code), name);
    case SHMKIT_EOWNERDEAD:
        return raise_oserror(st ? st->OwnerDeadError : PyExc_OSError, code,
                             detail(code), name);
    case SHMKIT_ENOTRECOVERABLE:
        return raise_oserror(st ? st->NotRecoverableError : PyExc_OSError,
                             code, detail(code), name);
    default:
        return raise_oserror(st ? st->Error : PyExc_OSError, code,
                             detail(code), name);
    }
}

/* Creates one exception class, adds it to the module, returns it. */
static PyObject *add_exc(PyObject *m, const char *name, const char *doc,
                         PyObject *bases)
{
    char qual[64];
    PyObject *e;

    snprintf(qual, sizeof qual, "shmkit.%s", name);
    e = PyErr_NewExceptionWithDoc(qual, doc, bases, NULL);
    if (e && PyModule_AddObjectRef(m, name, e) < 0)
        Py_CLEAR(e);
    return e;
}

/* The errors of ShareableList items, catchable as CPython's: it raises
 * KeyError for an unsupported type and struct.error for an int beyond 64
 * bits, where TypeError and OverflowError are what Python code expects. */
static int add_item_exceptions(PyObject *m, ext_state *st)
{
    PyObject *structmod = PyImport_ImportModule("struct"), *serr, *bases;

    serr = structmod ? PyObject_GetAttrString(structmod, "error") : NULL;
    Py_XDECREF(structmod);
    if (!serr)
        return -1;
    bases = PyTuple_Pack(2, PyExc_TypeError, PyExc_KeyError);
    st->ItemTypeError = bases ? add_exc(m, "ItemTypeError",
        "An item type a ShareableList cannot hold (a TypeError; also a\n"
        "KeyError, which CPython raises).", bases) : NULL;
    Py_XDECREF(bases);
    bases = PyTuple_Pack(2, PyExc_OverflowError, serr);
    st->ItemRangeError = bases ? add_exc(m, "ItemRangeError",
        "An int a ShareableList cannot hold in 64 bits (an OverflowError;\n"
        "also a struct.error, which CPython raises).", bases) : NULL;
    Py_XDECREF(bases);
    Py_DECREF(serr);
    return st->ItemTypeError && st->ItemRangeError ? 0 : -1;
}

static int add_exceptions(PyObject *m, ext_state *st)
{
    PyObject *bases;

    st->Error = add_exc(m, "Error",
        "A shmkit error without a closer Python equivalent. It is an OSError:\n"
        "errno is the (negative) shmkit code, strerror its message,\n"
        "filename the block ('/name') when one is concerned.", PyExc_OSError);
    if (!st->Error)
        return -1;
    bases = PyTuple_Pack(2, st->Error, PyExc_ValueError);
    if (!bases)
        return -1;
    st->CorruptError = add_exc(m, "CorruptError",
        "The block's layout is corrupt, truncated, of another kind or version.",
        bases);
    Py_DECREF(bases);
    st->OwnerDeadError = add_exc(m, "OwnerDeadError",
        "The lock's previous owner died while holding it.", st->Error);
    st->NotRecoverableError = add_exc(m, "NotRecoverableError",
        "The lock is unusable: an owner died and it was never made consistent.",
        st->Error);
    if (!st->CorruptError || !st->OwnerDeadError || !st->NotRecoverableError)
        return -1;
    return add_item_exceptions(m, st);
}

static int add_constants(PyObject *m)
{
    static const struct { const char *n; long v; } c[] = {
        {"TRACK", SHMKIT_TRACK}, {"REFCOUNT", SHMKIT_REFCOUNT},
        {"RDONLY", SHMKIT_RDONLY}, {"POPULATE", SHMKIT_POPULATE},
        {"RESERVE", SHMKIT_RESERVE}, {"HUGEPAGES", SHMKIT_HUGEPAGES},
        {"ANYUSER", SHMKIT_ANYUSER},
        {"RENAME_NOREPLACE", SHMKIT_NOREPLACE},
        {"RENAME_EXCHANGE", SHMKIT_EXCHANGE},
        {"ESTORAGE", SHMKIT_ESTORAGE}, {"EOWNERDEAD", SHMKIT_EOWNERDEAD},
        {"ENOTRECOVERABLE", SHMKIT_ENOTRECOVERABLE},
        {"ETRACKER", SHMKIT_ETRACKER},
    };
    size_t i;

    for (i = 0; i < sizeof c / sizeof c[0]; i++)
        if (PyModule_AddIntConstant(m, c[i].n, c[i].v) < 0)
            return -1;
    return PyModule_AddStringConstant(m, "LIB_VERSION", shmkit_version());
}

int ext_common_init(PyObject *m, ext_state *st)
{
    ext_def = PyModule_GetDef(m);
    if (!ext_def)
        return -1;
    return add_exceptions(m, st) < 0 || add_constants(m) < 0 ? -1 : 0;
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec ||
           (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int ext_next_slice(struct timespec *slice, const struct timespec *final)
{
    shmkit_deadline(slice, EXT_WAIT_SLICE);
    if (!final || ts_before(slice, final))
        return 0;
    *slice = *final;
    return 1;
}
