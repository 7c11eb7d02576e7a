/*
 * sync.c - _shmkit.LockBase: Lock, RLock and the Condition operations over
 * shmkit's robust process-shared mutexes (shmkit/sync.h).
 *
 * A LockBase is either a named stand-alone lock (a block of its own holding
 * a mutex and a condition) or the lock embedded in a Value/Array block.
 * Blocking calls release the GIL and wait in slices of EXT_WAIT_SLICE
 * seconds, checking for signals between slices, so Ctrl-C interrupts a
 * wait (the robust futex wait itself is restarted by the kernel, never
 * interrupted). A dead holder never blocks anyone: the next acquire gets
 * the lock and sets owner_died (see the Python classes' docs).
 */
#include "ext.h"

#include <errno.h>
#include <math.h>
#include <structmember.h>

#define EXT_WAIT_SLICE 0.05

typedef struct LockObject {
    PyObject_HEAD
    shmkit_mutex *mutex;
    shmkit_cond *cond;        /* NULL for a lock embedded in Value/Array */
    PyObject *owner;          /* the Mapping (or typed object) holding them */
    PyObject *name;           /* block name (str) */
    int recursive;
    int embedded;
    int owner_died;           /* the last acquire recovered a dead owner */
    int track;
    ext_state *st;            /* the module's state, looked up once */
} LockObject;

static ext_state *lock_state(LockObject *self)
{
    return self->st;
}

static const char *lock_name(LockObject *self)
{
    return self->name ? PyUnicode_AsUTF8(self->name) : NULL;
}

/* Parses a timeout: None is "forever" (-1), else a non-negative float. */
static int parse_timeout(PyObject *obj, double *out)
{
    if (obj == Py_None) {
        *out = -1.0;
        return 0;
    }
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(*out)) {
        PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
        return -1;
    }
    if (*out < 0)
        *out = 0;
    return 0;
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec ||
           (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The next slice's deadline: at most EXT_WAIT_SLICE away, never past
 * *final. Returns 1 if the slice ends at *final. */
static int next_slice(struct timespec *slice, const struct timespec *final)
{
    shmkit_deadline(slice, EXT_WAIT_SLICE);
    if (ts_before(slice, final))
        return 0;
    *slice = *final;
    return 1;
}

/*
 * Waits for m (cond NULL) or on cond with m held, until `timeout` seconds
 * pass (negative: forever), with the GIL released and signals checked
 * between slices. Returns the shmkit code (-ETIMEDOUT when time ran out),
 * or EXT_SIGNALLED with a Python exception set.
 */
#define EXT_SIGNALLED (-0x7fff)
static int wait_sliced(shmkit_mutex *m, shmkit_cond *cond, double timeout)
{
    struct timespec final, slice;
    PyThreadState *ts;
    int last, r;

    shmkit_deadline(&final, timeout < 0 ? INFINITY : timeout);
    ts = PyEval_SaveThread();
    for (;;) {
        last = next_slice(&slice, &final);
        r = cond ? shmkit_cond_timedwait(cond, m, &slice)
                 : shmkit_mutex_timedlock(m, &slice);
        if (r != -ETIMEDOUT || last)
            break;
        PyEval_RestoreThread(ts);
        if (PyErr_CheckSignals() < 0) {
            /* A condition wait holds m again here: the caller's
             * `with` block releases it. */
            return EXT_SIGNALLED;
        }
        ts = PyEval_SaveThread();
    }
    PyEval_RestoreThread(ts);
    return r;
}

/*
 * Acquires m: 1 acquired, 0 not (busy, timed out), -1 error set.
 * *died is set when the previous owner died holding it.
 */
int ext_mutex_acquire(ext_state *st, shmkit_mutex *m, int block,
                      double timeout, int *died, const char *name)
{
    int r = shmkit_mutex_trylock(m);

    if (r == -EBUSY && block && timeout != 0)
        r = wait_sliced(m, NULL, timeout);
    *died = 0;
    switch (r) {
    case 0:
        return 1;
    case SHMKIT_EOWNERDEAD:
        *died = 1;
        return 1;
    case -EBUSY:
    case -ETIMEDOUT:
        return 0;
    case EXT_SIGNALLED:
        return -1;
    case -EDEADLK:
        if (!block || timeout >= 0)
            return 0;
        PyErr_SetString(PyExc_RuntimeError,
                        "acquire would deadlock: this thread holds the lock");
        return -1;
    default:
        ext_error(st, r, name);
        return -1;
    }
}

/* Releases m: 0, or -1 with the exception multiprocessing raises. */
int ext_mutex_release(ext_state *st, shmkit_mutex *m, const char *name)
{
    int r = shmkit_mutex_unlock(m);

    if (r == 0)
        return 0;
    if (r == SHMKIT_ENOTOWNER) {
        if (shmkit_mutex_is_recursive(m))
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
        else
            PyErr_SetString(PyExc_ValueError,
                            "semaphore or lock released too many times");
        return -1;
    }
    ext_error(st, r, name);
    return -1;
}

static PyObject *lock_do_acquire(LockObject *self, int block, double timeout)
{
    int died, r;

    r = ext_mutex_acquire(lock_state(self), self->mutex, block, timeout,
                          &died, lock_name(self));
    if (r < 0)
        return NULL;
    if (r)
        self->owner_died = died;
    return PyBool_FromLong(r);
}

PyObject *ext_lock_acquire(PyObject *lock, int block, double timeout)
{
    return lock_do_acquire((LockObject *)lock, block, timeout);
}

PyObject *ext_lock_release(PyObject *lock)
{
    LockObject *self = (LockObject *)lock;

    if (ext_mutex_release(lock_state(self), self->mutex, lock_name(self)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(acquire_doc,
"acquire(block=True, timeout=None)\n--\n\n"
"Acquire the lock; return True if acquired, False on timeout or when\n"
"block is false and the lock is busy. If its previous holder died holding\n"
"it, the lock is acquired all the same and owner_died is True: repair the\n"
"data, call consistent(), then release (a lock released without\n"
"consistent() raises NotRecoverableError at every later acquire).");

static PyObject *lock_acquire(LockObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    PyObject *tobj = Py_None;
    int block = 1;
    double timeout;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pO:acquire", kwlist,
                                     &block, &tobj))
        return NULL;
    if (parse_timeout(tobj, &timeout) < 0)
        return NULL;
    return lock_do_acquire(self, block, timeout);
}

static PyObject *lock_enter(LockObject *self, PyObject *unused)
{
    return lock_do_acquire(self, 1, -1.0);
}

PyDoc_STRVAR(release_doc, "release()\n--\n\nRelease the lock.");

static PyObject *lock_release(LockObject *self, PyObject *unused)
{
    if (ext_mutex_release(lock_state(self), self->mutex, lock_name(self)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *lock_exit(LockObject *self, PyObject *const *args,
                           Py_ssize_t nargs)
{
    if (ext_mutex_release(lock_state(self), self->mutex, lock_name(self)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(consistent_doc,
"consistent()\n--\n\n"
"After an acquire that set owner_died, mark the protected data repaired.");

static PyObject *lock_consistent(LockObject *self, PyObject *unused)
{
    int r = shmkit_mutex_consistent(self->mutex);

    if (r < 0)
        return ext_error(lock_state(self), r, lock_name(self));
    self->owner_died = 0;
    Py_RETURN_NONE;
}

static PyObject *lock_count(LockObject *self, PyObject *unused)
{
    return PyLong_FromUnsignedLong(shmkit_mutex_held(self->mutex));
}

static PyObject *lock_is_mine(LockObject *self, PyObject *unused)
{
    return PyBool_FromLong(shmkit_mutex_held(self->mutex) > 0);
}

/* The holder's thread id (0 if free), for repr() and locked(): a snapshot
 * read without taking the lock. */
static PyObject *lock_owner_tid(LockObject *self, PyObject *unused)
{
    shmkit_mutex_info info;
    int r = shmkit_mutex_inspect(self->mutex, &info);

    if (r < 0)
        return ext_error(lock_state(self), r, lock_name(self));
    if (!info.locked)
        return PyLong_FromLong(0);
    /* Held, but the holder unknown to this C library's layout: -1. */
    return PyLong_FromLong(info.owner_tid ? (long)info.owner_tid : -1L);
}

/* ---- condition operations ------------------------------------------- */

static int need_cond(LockObject *self)
{
    if (self->cond)
        return 0;
    PyErr_SetString(PyExc_ValueError,
                    "this lock (embedded in a Value/Array) has no condition; "
                    "use shmkit.Condition() or shmkit.RLock()");
    return -1;
}

static PyObject *lock_wait(LockObject *self, PyObject *args)
{
    PyObject *tobj = Py_None;
    double timeout;
    int r;

    if (!PyArg_ParseTuple(args, "|O:wait", &tobj) || parse_timeout(tobj, &timeout) < 0)
        return NULL;
    if (need_cond(self) < 0)
        return NULL;
    if (!shmkit_mutex_held(self->mutex)) {
        PyErr_SetString(PyExc_AssertionError, "must acquire() condition before using wait()");
        return NULL;
    }
    r = wait_sliced(self->mutex, self->cond, timeout);
    switch (r) {
    case 0:
        Py_RETURN_TRUE;
    case -ETIMEDOUT:
        Py_RETURN_FALSE;
    case SHMKIT_EOWNERDEAD:
        self->owner_died = 1;
        Py_RETURN_TRUE;
    case EXT_SIGNALLED:
        return NULL;
    default:
        return ext_error(lock_state(self), r, lock_name(self));
    }
}

static PyObject *lock_notify(LockObject *self, PyObject *args)
{
    Py_ssize_t n = 1, i;
    int r = 0;

    if (!PyArg_ParseTuple(args, "|n:notify", &n) || need_cond(self) < 0)
        return NULL;
    if (!shmkit_mutex_held(self->mutex)) {
        PyErr_SetString(PyExc_AssertionError, "lock is not owned");
        return NULL;
    }
    for (i = 0; i < n && r == 0; i++)
        r = shmkit_cond_signal(self->cond);
    if (r < 0)
        return ext_error(lock_state(self), r, lock_name(self));
    Py_RETURN_NONE;
}

static PyObject *lock_notify_all(LockObject *self, PyObject *unused)
{
    int r;

    if (need_cond(self) < 0)
        return NULL;
    if (!shmkit_mutex_held(self->mutex)) {
        PyErr_SetString(PyExc_AssertionError, "lock is not owned");
        return NULL;
    }
    r = shmkit_cond_broadcast(self->cond);
    if (r < 0)
        return ext_error(lock_state(self), r, lock_name(self));
    Py_RETURN_NONE;
}

/* ---- construction --------------------------------------------------- */

static PyObject *lock_wrap(PyTypeObject *tp, PyObject *owner, shmkit_mutex *m,
                           shmkit_cond *c, PyObject *name)
{
    LockObject *self = (LockObject *)tp->tp_alloc(tp, 0);

    if (!self)
        return NULL;
    self->st = ext_state_of_type(tp);
    self->mutex = m;
    self->cond = c;
    self->owner = Py_NewRef(owner);
    self->name = Py_NewRef(name);
    self->recursive = shmkit_mutex_is_recursive(m);
    self->embedded = c == NULL;
    return (PyObject *)self;
}

static PyObject *lock_from_handle(PyTypeObject *tp, shmkit_lock *l, int track)
{
    ext_state *st = ext_state_of_type(tp);
    PyObject *mapping, *self;

    mapping = ext_mapping_new(st, EXT_MAP_LOCK, l, shmkit_lock_block(l));
    if (!mapping)
        return NULL;
    self = lock_wrap(tp, mapping, shmkit_lock_mutex(l), shmkit_lock_cond(l),
                     ((MappingObject *)mapping)->name);
    Py_DECREF(mapping);
    if (self)
        ((LockObject *)self)->track = track;
    return self;
}

static PyObject *lock_create(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"recursive", "name", "track", NULL};
    PyObject *nameobj = Py_None;
    int recursive = 0, track = 1, r;
    const char *name;
    shmkit_lock *l;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pOp:_create", kwlist,
                                     &recursive, &nameobj, &track))
        return NULL;
    if (ext_name_arg(nameobj, &name) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_lock_create(&l, name, recursive ? SHMKIT_MUTEX_RECURSIVE : 0,
                           track ? SHMKIT_TRACK : 0);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return lock_from_handle(tp, l, track);
}

static PyObject *lock_attach(PyTypeObject *tp, PyObject *arg)
{
    const char *name;
    shmkit_lock *l;
    int r;

    if (ext_required_name(arg, &name) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_lock_attach(&l, name, 0);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return lock_from_handle(tp, l, 0);
}

shmkit_mutex *ext_lock_mutex(ext_state *st, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, st->lock_type))
        return NULL;
    return ((LockObject *)obj)->mutex;
}

PyObject *ext_lock_embedded(PyTypeObject *tp, PyObject *owner,
                            shmkit_mutex *m, PyObject *name)
{
    return lock_wrap(tp, owner, m, NULL, name);
}

static PyObject *lock_unlink(LockObject *self, PyObject *unused)
{
    const char *name = lock_name(self);
    int r;

    if (!name)
        return NULL;
    if (self->embedded) {
        PyErr_SetString(PyExc_ValueError,
                        "this lock is part of a Value/Array block: unlink that");
        return NULL;
    }
    r = shmkit_unlink(name);
    if (r < 0)
        return ext_error(lock_state(self), r, name);
    Py_RETURN_NONE;
}

static PyObject *lock_repr(LockObject *self)
{
    unsigned held = shmkit_mutex_held(self->mutex);

    return PyUnicode_FromFormat("<%s(name=%R)%s%s>", Py_TYPE(self)->tp_name,
                                self->name, held ? " held" : "",
                                self->owner_died ? " owner_died" : "");
}

static int lock_traverse(LockObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->owner);
    return 0;
}

static int lock_clear(LockObject *self)
{
    Py_CLEAR(self->owner);
    Py_CLEAR(self->name);
    return 0;
}

static void lock_dealloc(LockObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    lock_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire,
     METH_VARARGS | METH_KEYWORDS, acquire_doc},
    {"release", (PyCFunction)lock_release, METH_NOARGS, release_doc},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, NULL},
    {"consistent", (PyCFunction)lock_consistent, METH_NOARGS, consistent_doc},
    {"unlink", (PyCFunction)lock_unlink, METH_NOARGS,
     "unlink()\n--\n\nRemove the lock's block name."},
    {"_count", (PyCFunction)lock_count, METH_NOARGS, NULL},
    {"_is_mine", (PyCFunction)lock_is_mine, METH_NOARGS, NULL},
    {"_owner_tid", (PyCFunction)lock_owner_tid, METH_NOARGS, NULL},
    {"_wait", (PyCFunction)lock_wait, METH_VARARGS, NULL},
    {"_notify", (PyCFunction)lock_notify, METH_VARARGS, NULL},
    {"_notify_all", (PyCFunction)lock_notify_all, METH_NOARGS, NULL},
    {"_create", (PyCFunction)(void (*)(void))lock_create,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, NULL},
    {"_attach", (PyCFunction)lock_attach, METH_O | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef lock_members[] = {
    {"name", T_OBJECT, offsetof(LockObject, name), READONLY,
     "name of the block holding the lock"},
    {"owner_died", T_BOOL, offsetof(LockObject, owner_died) , READONLY,
     "the last acquire took the lock from a holder that died"},
    {"_embedded", T_INT, offsetof(LockObject, embedded), READONLY, NULL},
    {"_recursive", T_INT, offsetof(LockObject, recursive), READONLY, NULL},
    {"_track", T_INT, offsetof(LockObject, track), READONLY, NULL},
    {"_owner", T_OBJECT, offsetof(LockObject, owner), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyType_Slot lock_slots[] = {
    {Py_tp_dealloc, lock_dealloc},
    {Py_tp_traverse, lock_traverse},
    {Py_tp_clear, lock_clear},
    {Py_tp_repr, lock_repr},
    {Py_tp_methods, lock_methods},
    {Py_tp_members, lock_members},
    {Py_tp_doc, (void *)"C core of shmkit.Lock and shmkit.RLock."},
    {0, NULL}
};

static PyType_Spec lock_spec = {
    .name = "shmkit._shmkit.LockBase",
    .basicsize = sizeof(LockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = lock_slots,
};

int ext_sync_init_type(PyObject *m, ext_state *st)
{
    st->lock_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &lock_spec, NULL);
    if (!st->lock_type)
        return -1;
    return PyModule_AddType(m, st->lock_type);
}
