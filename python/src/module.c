/*
 * module.c - the shmkit._shmkit module: multi-phase init, module state,
 * module-level functions, and ext_error(), the one place where a shmkit
 * code becomes a Python exception.
 */
#include "ext.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

ext_state *ext_state_of_module(PyObject *m)
{
    return (ext_state *)PyModule_GetState(m);
}

ext_state *ext_state_of_type(PyTypeObject *tp)
{
    PyObject *m = PyType_GetModuleByDef(tp, &ext_module_def);

    if (!m) {
        PyErr_Clear();
        return NULL;
    }
    return ext_state_of_module(m);
}

int ext_name_arg(PyObject *obj, const char **out)
{
    if (obj == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "name must be str or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = PyUnicode_AsUTF8(obj);
    return *out ? 0 : -1;
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
        PyErr_SetObject(exc, v);
        Py_DECREF(v);
    }
    return NULL;
}

/* The detail of the last failed shmkit call, for messages. */
static const char *detail(int code)
{
    const char *d = shmkit_last_error();

    return (d && *d) ? d : shmkit_strerror(code);
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

PyDoc_STRVAR(unlink_doc,
"unlink(name)\n--\n\n"
"Remove the block called name (FileNotFoundError if there is none).");

static PyObject *mod_unlink(PyObject *m, PyObject *arg)
{
    const char *name;
    int r;

    if (ext_name_arg(arg, &name) < 0)
        return NULL;
    if (!name) {
        PyErr_SetString(PyExc_TypeError, "name must be str");
        return NULL;
    }
    r = shmkit_unlink(name);
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, name);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(errname_doc,
"errname(code)\n--\n\nSymbolic name of a shmkit error code.");

static PyObject *mod_errname(PyObject *m, PyObject *arg)
{
    long code = PyLong_AsLong(arg);

    if (code == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(shmkit_errname(code < INT_MIN || code > INT_MAX ? 0 : (int)code));
}

PyDoc_STRVAR(kind_doc,
"block_kind(name)\n--\n\n"
"What the block called name holds: 'raw', 'list', 'array', 'value', "
"'lock' or 'sidecar'.");

static PyObject *mod_block_kind(PyObject *m, PyObject *arg)
{
    shmkit_block *b;
    const char *name;
    shmkit_kind k;
    int r;

    if (ext_name_arg(arg, &name) < 0)
        return NULL;
    if (!name) {
        PyErr_SetString(PyExc_TypeError, "name must be str");
        return NULL;
    }
    r = shmkit_block_attach(&b, name, SHMKIT_RDONLY);
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, name);
    k = shmkit_block_kind(b);
    shmkit_block_close(b);
    return PyUnicode_FromString(shmkit_kind_name(k));
}

PyDoc_STRVAR(track_start_doc,
"track_start()\n--\n\n"
"Start this process family's tracker now (or join the inherited one).\n"
"Call it before forking workers that should belong to the family.");

static PyObject *mod_track_start(PyObject *m, PyObject *unused)
{
    int r;

    Py_BEGIN_ALLOW_THREADS
    r = shmkit_track_start();
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, NULL);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(track_fd_doc,
"track_fd()\n--\n\n"
"The family's lifeline descriptor (-1 if no tracker yet): pass it in\n"
"subprocess's pass_fds to keep a child in the family.");

static PyObject *mod_track_fd(PyObject *m, PyObject *unused)
{
    return PyLong_FromLong(shmkit_track_fd());
}

PyDoc_STRVAR(track_pid_doc,
"track_pid()\n--\n\nProcess id of the family's tracker, or -1.");

static PyObject *mod_track_pid(PyObject *m, PyObject *unused)
{
    return PyLong_FromLong((long)shmkit_track_pid());
}

PyDoc_STRVAR(gc_doc,
"gc(dry_run=False)\n--\n\n"
"Remove what dead tracked families, managers and attachers left behind\n"
"(only this user's objects); return the number of blocks removed (or\n"
"that would be, with dry_run).");

static PyObject *mod_gc(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"dry_run", NULL};
    int dry = 0, r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:gc", kwlist, &dry))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_gc(dry ? SHMKIT_GC_DRY_RUN : 0, NULL, NULL);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, NULL);
    return PyLong_FromLong(r);
}

static PyMethodDef mod_methods[] = {
    {"track_start", mod_track_start, METH_NOARGS, track_start_doc},
    {"track_fd", mod_track_fd, METH_NOARGS, track_fd_doc},
    {"track_pid", mod_track_pid, METH_NOARGS, track_pid_doc},
    {"gc", (PyCFunction)(void (*)(void))mod_gc, METH_VARARGS | METH_KEYWORDS, gc_doc},
    {"unlink", mod_unlink, METH_O, unlink_doc},
    {"errname", mod_errname, METH_O, errname_doc},
    {"block_kind", mod_block_kind, METH_O, kind_doc},
    {NULL, NULL, 0, NULL}
};

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

static int mod_exec(PyObject *m)
{
    ext_state *st = ext_state_of_module(m);

    if (add_exceptions(m, st) < 0 || add_constants(m) < 0)
        return -1;
    if (ext_mapping_init_type(m, st) < 0)
        return -1;
    if (ext_list_init_type(m, st) < 0)
        return -1;
    if (ext_sync_init_type(m, st) < 0)
        return -1;
    if (ext_typed_init_type(m, st) < 0)
        return -1;
    if (ext_manager_init_type(m, st) < 0)
        return -1;
    return 0;
}

static int mod_traverse(PyObject *m, visitproc visit, void *arg)
{
    ext_state *st = ext_state_of_module(m);

    Py_VISIT(st->mapping_type);
    Py_VISIT(st->list_type);
    Py_VISIT(st->lock_type);
    Py_VISIT(st->typed_type);
    Py_VISIT(st->Error);
    Py_VISIT(st->CorruptError);
    Py_VISIT(st->OwnerDeadError);
    Py_VISIT(st->NotRecoverableError);
    Py_VISIT(st->ItemTypeError);
    Py_VISIT(st->ItemRangeError);
    return 0;
}

static int mod_clear(PyObject *m)
{
    ext_state *st = ext_state_of_module(m);

    Py_CLEAR(st->mapping_type);
    Py_CLEAR(st->list_type);
    Py_CLEAR(st->lock_type);
    Py_CLEAR(st->typed_type);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->CorruptError);
    Py_CLEAR(st->OwnerDeadError);
    Py_CLEAR(st->NotRecoverableError);
    Py_CLEAR(st->ItemTypeError);
    Py_CLEAR(st->ItemRangeError);
    return 0;
}

static void mod_free(void *m)
{
    mod_clear((PyObject *)m);
}

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL}
};

PyModuleDef ext_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmkit._shmkit",
    .m_doc = "C core of shmkit: blocks, ShareableList, locks, Value/Array.",
    .m_size = sizeof(ext_state),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__shmkit(void)
{
    return PyModuleDef_Init(&ext_module_def);
}
