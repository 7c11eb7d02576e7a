/*
 * manager.c - _shmkit.ManagerClient: a connection to a shmkit manager
 * daemon (shmkit/lifecycle.h), under shmkit.managers.SharedMemoryManager.
 *
 * A connection belongs to the process that made it: a forked child that
 * inherits the object never uses or closes it (closing the starting handle
 * would shut the daemon down under the parent's feet).
 */
#include "ext.h"

#include <unistd.h>

typedef struct ManagerObject {
    PyObject_HEAD
    shmkit_manager *mgr;
    pid_t pid;            /* process that owns mgr */
} ManagerObject;

static ext_state *mgr_state(ManagerObject *self)
{
    return ext_state_of_type(Py_TYPE(self));
}

static shmkit_manager *mgr_of(ManagerObject *self)
{
    if (!self->mgr) {
        PyErr_SetString(PyExc_ValueError, "manager connection is closed");
        return NULL;
    }
    if (self->pid != getpid()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "manager connection belongs to another process; connect() anew");
        return NULL;
    }
    return self->mgr;
}

static int key_arg(PyObject *obj, Py_buffer *key)
{
    if (obj == Py_None) {
        key->buf = NULL;
        key->len = 0;
        key->obj = NULL;
        return 0;
    }
    return PyObject_GetBuffer(obj, key, PyBUF_SIMPLE);
}

static PyObject *mgr_open(PyTypeObject *tp, PyObject *args, int start)
{
    PyObject *pathobj = Py_None, *keyobj = Py_None;
    const char *path;
    Py_buffer key;
    shmkit_manager *m;
    ManagerObject *self;
    int r;

    if (!PyArg_ParseTuple(args, "|OO", &pathobj, &keyobj))
        return NULL;
    if (ext_name_arg(pathobj, &path) < 0 || key_arg(keyobj, &key) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = start ? shmkit_manager_start(&m, path, key.buf, (size_t)key.len)
              : shmkit_manager_connect(&m, path, key.buf, (size_t)key.len);
    Py_END_ALLOW_THREADS
    if (key.obj)
        PyBuffer_Release(&key);
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, NULL);
    self = (ManagerObject *)tp->tp_alloc(tp, 0);
    if (!self) {
        shmkit_manager_close(m);
        return NULL;
    }
    self->mgr = m;
    self->pid = getpid();
    return (PyObject *)self;
}

static PyObject *mgr_start(PyTypeObject *tp, PyObject *args)
{
    return mgr_open(tp, args, 1);
}

static PyObject *mgr_connect(PyTypeObject *tp, PyObject *args)
{
    return mgr_open(tp, args, 0);
}

static PyObject *mgr_create_block(ManagerObject *self, PyObject *args)
{
    char name[SHMKIT_NAME_MAX + 1];
    PyObject *nameobj = Py_None;
    shmkit_manager *m = mgr_of(self);
    const char *want;
    Py_ssize_t size;
    int r;

    if (!m || !PyArg_ParseTuple(args, "n|O:create_block", &size, &nameobj) ||
        ext_name_arg(nameobj, &want) < 0)
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "'size' must be a positive number different from zero");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_manager_create_block(m, want, (size_t)size, name);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(mgr_state(self), r, want);
    return PyUnicode_FromString(name);
}

static PyObject *mgr_create_list(ManagerObject *self, PyObject *args)
{
    char name[SHMKIT_NAME_MAX + 1];
    PyObject *seq, *nameobj = Py_None, *keep = NULL;
    shmkit_manager *m = mgr_of(self);
    shmkit_item *items = NULL;
    const char *want;
    Py_ssize_t n;
    int r = 0;

    if (!m || !PyArg_ParseTuple(args, "O|O:create_list", &seq, &nameobj) ||
        ext_name_arg(nameobj, &want) < 0)
        return NULL;
    n = ext_items_of_sequence(mgr_state(self), seq, &keep, &items);
    if (n >= 0) {
        Py_BEGIN_ALLOW_THREADS
        r = shmkit_manager_create_list(m, want, items, (size_t)n, name);
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(items);
    Py_XDECREF(keep);
    if (n < 0)
        return NULL;
    if (r == SHMKIT_ESTORAGE) {
        PyErr_SetString(PyExc_ValueError,
                        "a str or bytes item exceeds available storage");
        return NULL;
    }
    if (r < 0)
        return ext_error(mgr_state(self), r, want);
    return PyUnicode_FromString(name);
}

static PyObject *mgr_create_queue(ManagerObject *self, PyObject *args)
{
    char name[SHMKIT_NAME_MAX + 1];
    PyObject *nameobj = Py_None;
    shmkit_manager *m = mgr_of(self);
    Py_ssize_t capacity, maxsize = 0;
    const char *want;
    int r;

    if (!m || !PyArg_ParseTuple(args, "n|nO:create_queue", &capacity, &maxsize,
                                &nameobj) ||
        ext_name_arg(nameobj, &want) < 0)
        return NULL;
    if (capacity <= 0 || maxsize < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "'capacity' must be positive and 'maxsize' not negative");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_manager_create_queue(m, want, (size_t)capacity, (size_t)maxsize,
                                    name);
    Py_END_ALLOW_THREADS
    if (r == -EOPNOTSUPP) {
        /* An older manager: the C message names both revisions. */
        PyObject *e = PyObject_CallFunction(PyExc_OSError, "is", EOPNOTSUPP,
                                            shmkit_last_error());
        if (e) {
            PyErr_SetObject(PyExc_OSError, e);
            Py_DECREF(e);
        }
        return NULL;
    }
    if (r < 0)
        return ext_error(mgr_state(self), r, want);
    return PyUnicode_FromString(name);
}

static PyObject *mgr_release(ManagerObject *self, PyObject *arg)
{
    shmkit_manager *m = mgr_of(self);
    const char *name;
    int r;

    if (!m || ext_name_arg(arg, &name) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_manager_release(m, name);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(mgr_state(self), r, name);
    Py_RETURN_NONE;
}

static PyObject *mgr_list(ManagerObject *self, PyObject *unused)
{
    shmkit_manager *m = mgr_of(self);
    char **names = NULL;
    size_t n = 0, i;
    PyObject *out;
    int r;

    if (!m)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_manager_list(m, &names, &n);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(mgr_state(self), r, NULL);
    out = PyList_New((Py_ssize_t)n);
    for (i = 0; out && i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, s);
    }
    shmkit_manager_list_free(names, n);
    return out;
}

static PyObject *mgr_shutdown(ManagerObject *self, PyObject *unused)
{
    shmkit_manager *m = mgr_of(self);
    int r;

    if (!m)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_manager_shutdown(m);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(mgr_state(self), r, NULL);
    Py_RETURN_NONE;
}

static void mgr_do_close(ManagerObject *self)
{
    shmkit_manager *m = self->mgr;

    self->mgr = NULL;
    if (!m || self->pid != getpid())
        return;   /* a fork's inherited copy: leave it to its owner */
    Py_BEGIN_ALLOW_THREADS
    shmkit_manager_close(m);
    Py_END_ALLOW_THREADS
}

static PyObject *mgr_close(ManagerObject *self, PyObject *unused)
{
    mgr_do_close(self);
    Py_RETURN_NONE;
}

static PyObject *mgr_get_socket(ManagerObject *self, void *c)
{
    shmkit_manager *m = mgr_of(self);

    return m ? PyUnicode_FromString(shmkit_manager_socket(m)) : NULL;
}

static PyObject *mgr_get_pid(ManagerObject *self, void *c)
{
    shmkit_manager *m = mgr_of(self);

    return m ? PyLong_FromLong((long)shmkit_manager_pid(m)) : NULL;
}

static PyObject *mgr_get_closed(ManagerObject *self, void *c)
{
    return PyBool_FromLong(self->mgr == NULL);
}

static void mgr_dealloc(ManagerObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    mgr_do_close(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef mgr_methods[] = {
    {"start", (PyCFunction)mgr_start, METH_VARARGS | METH_CLASS,
     "start(socket_path=None, authkey=None)\n--\n\nStart a daemon and connect."},
    {"connect", (PyCFunction)mgr_connect, METH_VARARGS | METH_CLASS,
     "connect(socket_path, authkey=None)\n--\n\nConnect to a running daemon."},
    {"create_block", (PyCFunction)mgr_create_block, METH_VARARGS,
     "create_block(size, name=None)\n--\n\nHave the manager create a block; its name."},
    {"create_list", (PyCFunction)mgr_create_list, METH_VARARGS,
     "create_list(sequence, name=None)\n--\n\n"
     "Have the manager create a ShareableList; its name. OSError(EMSGSIZE)\n"
     "if the items do not fit one request (64 KiB)."},
    {"create_queue", (PyCFunction)mgr_create_queue, METH_VARARGS,
     "create_queue(capacity, maxsize=0, name=None)\n--\n\n"
     "Have the manager create a queue of capacity ring bytes holding at\n"
     "most maxsize messages (0: no count limit); its name. OSError\n"
     "(EOPNOTSUPP) from a manager of an older shmkit."},
    {"release", (PyCFunction)mgr_release, METH_O,
     "release(name)\n--\n\nHave the manager unlink one of its blocks now."},
    {"list", (PyCFunction)mgr_list, METH_NOARGS,
     "list()\n--\n\nNames of the blocks the manager owns."},
    {"shutdown", (PyCFunction)mgr_shutdown, METH_NOARGS,
     "shutdown()\n--\n\nUnlink all the manager's blocks and stop it."},
    {"close", (PyCFunction)mgr_close, METH_NOARGS,
     "close()\n--\n\nDisconnect (the starting handle also shuts down)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef mgr_getset[] = {
    {"socket", (getter)mgr_get_socket, NULL, "socket path", NULL},
    {"pid", (getter)mgr_get_pid, NULL, "daemon process id", NULL},
    {"closed", (getter)mgr_get_closed, NULL, "disconnected", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot mgr_slots[] = {
    {Py_tp_dealloc, mgr_dealloc},
    {Py_tp_methods, mgr_methods},
    {Py_tp_getset, mgr_getset},
    {Py_tp_doc, (void *)"A connection to a shmkit manager daemon."},
    {0, NULL}
};

static PyType_Spec mgr_spec = {
    .name = "shmkit._shmkit.ManagerClient",
    .basicsize = sizeof(ManagerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = mgr_slots,
};

int ext_manager_init_type(PyObject *m, ext_state *st)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mgr_spec, NULL);
    int r;

    if (!tp)
        return -1;
    r = PyModule_AddType(m, tp);
    Py_DECREF(tp);
    return r;
}
