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
    PyObject *gates[2];       /* __enter__, __exit__ bound once (see Gate) */
} LockObject;

static ext_state *lock_state(LockObject *self)
{
    return self->st;
}

/* The UTF-8 of a block name for an error message, or NULL. */
static const char *name_utf8(PyObject *name)
{
    const char *s = name ? PyUnicode_AsUTF8(name) : NULL;

    if (name && !s)
        PyErr_Clear();
    return s;
}

static const char *lock_name(LockObject *self)
{
    return name_utf8(self->name);
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
        last = ext_next_slice(&slice, &final);
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
 * The rest of an acquire of m whose first try (shmkit_mutex_trylock) gave
 * r != 0: waits if asked, then 1 acquired, 0 not (busy, timed out), -1
 * error set. *died is set when the previous owner died holding it.
 */
static int acquire_rest(ext_state *st, shmkit_mutex *m, int r, int block,
                        double timeout, int *died, PyObject *name)
{
    *died = 0;
    if (r == -EBUSY && block && timeout != 0)
        r = wait_sliced(m, NULL, timeout);
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
        ext_error(st, r, name_utf8(name));
        return -1;
    }
}

/* The uncontended path is inline (shmkit/sync_inline.h). */
int ext_mutex_acquire(ext_state *st, shmkit_mutex *m, int block,
                      double timeout, int *died, PyObject *name)
{
    int r = shmkit_mutex_trylock_fast(m);

    if (__builtin_expect(r == 0, 1)) {
        *died = 0;
        return 1;
    }
    return acquire_rest(st, m, r, block, timeout, died, name);
}

/* An unlock of m that gave r != 0: -1 with the exception multiprocessing
 * raises. */
static int release_failed(ext_state *st, shmkit_mutex *m, int r, PyObject *name)
{
    if (r == SHMKIT_ENOTOWNER) {
        if (shmkit_mutex_is_recursive(m))
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
        else
            PyErr_SetString(PyExc_ValueError,
                            "semaphore or lock released too many times");
        return -1;
    }
    ext_error(st, r, name_utf8(name));
    return -1;
}

/* Releases m: 0, or -1 with the exception multiprocessing raises. */
int ext_mutex_release(ext_state *st, shmkit_mutex *m, PyObject *name)
{
    int r = shmkit_mutex_unlock_fast(m);

    if (__builtin_expect(r == 0, 1))
        return 0;
    return release_failed(st, m, r, name);
}

static PyObject *lock_do_acquire(LockObject *self, int block, double timeout)
{
    int died, r;

    r = ext_mutex_acquire(lock_state(self), self->mutex, block, timeout,
                          &died, self->name);
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

    if (ext_mutex_release(lock_state(self), self->mutex, self->name) < 0)
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

int ext_acquire_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                     int *block, PyObject **timeout)
{
    static const char *const names[2] = {"block", "timeout"};
    PyObject *slot[2];

    if (ext_fastcall_args("acquire", args, nargs, kwnames, names, 0, slot, 2) < 0)
        return -1;
    *block = 1;
    if (slot[0] && (*block = PyObject_IsTrue(slot[0])) < 0)
        return -1;
    *timeout = slot[1] ? slot[1] : Py_None;
    return 0;
}

static PyObject *lock_acquire(LockObject *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *tobj;
    int block;
    double timeout;

    if (ext_acquire_args(args, nargs, kwnames, &block, &tobj) < 0 ||
        parse_timeout(tobj, &timeout) < 0)
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
    if (ext_mutex_release(lock_state(self), self->mutex, self->name) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *lock_exit(LockObject *self, PyObject *const *args,
                           Py_ssize_t nargs)
{
    if (ext_mutex_release(lock_state(self), self->mutex, self->name) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- with lock: __enter__ and __exit__ bound once per lock ----------- *
 *
 * `with lock:` looks __enter__ and __exit__ up on the lock's type and
 * binds each to the lock. For methods defined in C that binding makes a
 * new object every time: two allocations and two frees per with-block,
 * which cost more than taking and releasing the lock. So LockBase's
 * __enter__ and __exit__ are an Entry, a descriptor that gives, for an
 * instance, that lock's Gate: a callable bound to the lock once, at first
 * use, and kept by the lock. Through the class (LockBase.__enter__) an
 * Entry gives the plain method, so Lock.__enter__(lock) and
 * contextlib.ExitStack work as with any C method. TypedBase (Value,
 * Array) has Entries too: `with v:` gets its lock's gates.
 *
 * A Gate holds what it acts on by itself (the mutex, the mapping that
 * keeps it mapped, the name for errors) and only a borrowed pointer to its
 * lock, for owner_died, which the lock clears when it goes. So a lock and
 * its gates make no reference cycle: a lock is freed (and its block
 * unmapped) as soon as its last reference goes, as before; a gate someone
 * kept still works after its lock is gone.
 */

typedef struct GateObject {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    LockObject *lock;         /* borrowed; NULL once the lock is gone */
    PyObject *owner;          /* keeps the mutex mapped */
    PyObject *name;           /* the block's name (str), for errors */
    shmkit_mutex *mutex;
    ext_state *st;
    int exit;                 /* 0: __enter__, 1: __exit__ */
} GateObject;

static const char *const gate_names[2] = {"__enter__", "__exit__"};

static PyObject *gate_enter(PyObject *self, PyObject *const *args,
                            size_t nargsf, PyObject *kwnames)
{
    GateObject *g = (GateObject *)self;
    int died, r;

    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "__enter__() takes no arguments");
        return NULL;
    }
    r = ext_mutex_acquire(g->st, g->mutex, 1, -1.0, &died, g->name);
    if (r < 0)
        return NULL;
    if (r && g->lock)
        g->lock->owner_died = died;
    return PyBool_FromLong(r);
}

/* __exit__(*exc_info): releases; any positional arguments, as CPython's. */
static PyObject *gate_exit(PyObject *self, PyObject *const *args,
                           size_t nargsf, PyObject *kwnames)
{
    GateObject *g = (GateObject *)self;

    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "__exit__() takes no keyword arguments");
        return NULL;
    }
    if (ext_mutex_release(g->st, g->mutex, g->name) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The lock's gate for __enter__ (exit 0) or __exit__ (1): a new reference. */
static PyObject *lock_gate(LockObject *self, int exit)
{
    GateObject *g = (GateObject *)self->gates[exit];
    PyTypeObject *tp;

    if (g)
        return Py_NewRef((PyObject *)g);
    if (!self->owner) {
        PyErr_SetString(PyExc_ValueError, "the lock is not initialised");
        return NULL;
    }
    tp = self->st->lock_gate_type;
    g = (GateObject *)tp->tp_alloc(tp, 0);
    if (!g)
        return NULL;
    g->vectorcall = exit ? gate_exit : gate_enter;
    g->lock = self;
    g->owner = Py_NewRef(self->owner);
    g->name = Py_XNewRef(self->name);
    g->mutex = self->mutex;
    g->st = self->st;
    g->exit = exit;
    self->gates[exit] = Py_NewRef((PyObject *)g);
    return (PyObject *)g;
}

/* The lock is going: its gates no longer see it. */
static void lock_drop_gates(LockObject *self)
{
    int k;

    for (k = 0; k < 2; k++)
        if (self->gates[k]) {
            ((GateObject *)self->gates[k])->lock = NULL;
            Py_CLEAR(self->gates[k]);
        }
}

static PyObject *gate_repr(GateObject *g)
{
    return PyUnicode_FromFormat("<built-in method %s of shmkit lock %R>",
                                gate_names[g->exit], g->name);
}

static int gate_traverse(GateObject *g, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(g));
    Py_VISIT(g->owner);
    return 0;
}

static void gate_dealloc(GateObject *g)
{
    PyTypeObject *tp = Py_TYPE(g);

    PyObject_GC_UnTrack(g);
    Py_CLEAR(g->owner);
    Py_CLEAR(g->name);
    tp->tp_free(g);
    Py_DECREF(tp);
}

static PyObject *gate_get_self(GateObject *g, void *c)
{
    return Py_NewRef(g->lock ? (PyObject *)g->lock : Py_None);
}

static PyObject *gate_get_name(GateObject *g, void *c)
{
    return PyUnicode_FromString(gate_names[g->exit]);
}

/* Pickles as getattr(lock, '__enter__'), as a bound C method does. */
static PyObject *gate_reduce(GateObject *g, PyObject *unused)
{
    PyObject *getattr;

    if (!g->lock) {
        PyErr_Format(PyExc_TypeError, "cannot pickle %s: its lock is gone",
                     gate_names[g->exit]);
        return NULL;
    }
    getattr = PyDict_GetItemString(PyEval_GetBuiltins(), "getattr");
    if (!getattr) {
        PyErr_SetString(PyExc_RuntimeError, "no builtin getattr");
        return NULL;
    }
    return Py_BuildValue("O(Os)", getattr, (PyObject *)g->lock, gate_names[g->exit]);
}

static PyGetSetDef gate_getset[] = {
    {"__self__", (getter)gate_get_self, NULL, "the lock (None once it is gone)", NULL},
    {"__name__", (getter)gate_get_name, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMethodDef gate_methods[] = {
    {"__reduce__", (PyCFunction)gate_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef gate_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(GateObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyType_Slot gate_slots[] = {
    {Py_tp_dealloc, gate_dealloc},
    {Py_tp_traverse, gate_traverse},
    {Py_tp_repr, gate_repr},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, gate_members},
    {Py_tp_getset, gate_getset},
    {Py_tp_methods, gate_methods},
    {Py_tp_doc, (void *)"A shmkit lock's __enter__ or __exit__, bound to it."},
    {0, NULL}
};

static PyType_Spec gate_spec = {
    .name = "shmkit._shmkit.LockGate",
    .basicsize = sizeof(GateObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = gate_slots,
};

typedef struct EntryObject {
    PyObject_HEAD
    PyObject *method;         /* the plain method descriptor, for the class */
    PyTypeObject *type;       /* the type whose dictionary holds the Entry */
    ext_gate_fn gate_of;
    int exit;
} EntryObject;

static PyObject *entry_get(PyObject *self, PyObject *obj, PyObject *type)
{
    EntryObject *e = (EntryObject *)self;
    PyObject *g;

    if (obj == NULL || obj == Py_None)
        return Py_NewRef(e->method);
    if (!PyObject_TypeCheck(obj, e->type)) {
        PyErr_Format(PyExc_TypeError,
                     "descriptor '%s' for '%.100s' objects doesn't apply to a '%.100s' object",
                     gate_names[e->exit], e->type->tp_name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    g = e->gate_of(obj, e->exit);
    if (g || PyErr_Occurred())
        return g;
    /* No gate for this one: the plain method, bound as usual. */
    return Py_TYPE(e->method)->tp_descr_get(e->method, obj, type);
}

static PyObject *entry_repr(EntryObject *e)
{
    return PyUnicode_FromFormat("<method '%s' of '%.100s' objects>",
                                gate_names[e->exit], e->type->tp_name);
}

static int entry_traverse(EntryObject *e, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(e));
    Py_VISIT(e->method);
    Py_VISIT(e->type);
    return 0;
}

static int entry_clear(EntryObject *e)
{
    Py_CLEAR(e->method);
    Py_CLEAR(e->type);
    return 0;
}

static void entry_dealloc(EntryObject *e)
{
    PyTypeObject *tp = Py_TYPE(e);

    PyObject_GC_UnTrack(e);
    entry_clear(e);
    tp->tp_free(e);
    Py_DECREF(tp);
}

static PyType_Slot entry_slots[] = {
    {Py_tp_dealloc, entry_dealloc},
    {Py_tp_traverse, entry_traverse},
    {Py_tp_clear, entry_clear},
    {Py_tp_repr, entry_repr},
    {Py_tp_descr_get, entry_get},
    {0, NULL}
};

static PyType_Spec entry_spec = {
    .name = "shmkit._shmkit.WithEntry",
    .basicsize = sizeof(EntryObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = entry_slots,
};

int ext_add_entries(ext_state *st, PyTypeObject *tp, PyMethodDef defs[2],
                    ext_gate_fn gate_of)
{
    int k;

    for (k = 0; k < 2; k++) {
        EntryObject *e = (EntryObject *)st->lock_entry_type->tp_alloc(st->lock_entry_type, 0);
        int r;

        if (!e)
            return -1;
        e->exit = k;
        e->gate_of = gate_of;
        e->type = (PyTypeObject *)Py_NewRef((PyObject *)tp);
        e->method = PyDescr_NewMethod(tp, &defs[k]);
        r = e->method ? PyDict_SetItemString(tp->tp_dict, gate_names[k], (PyObject *)e) : -1;
        Py_DECREF(e);
        if (r < 0)
            return -1;
    }
    PyType_Modified(tp);
    return 0;
}

PyObject *ext_lock_gate(ext_state *st, PyObject *lock, int exit)
{
    if (!PyObject_TypeCheck(lock, st->lock_type))
        return NULL;
    return lock_gate((LockObject *)lock, exit);
}

static PyObject *lock_gate_of(PyObject *obj, int exit)
{
    return lock_gate((LockObject *)obj, exit);
}

static PyMethodDef lock_entry_methods[2] = {
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS,
     "__enter__()\n--\n\nAcquire the lock (blocking); return True."},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL,
     "__exit__(*exc_info)\n--\n\nRelease the lock."},
};

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

    if (!name) {
        PyErr_SetString(PyExc_ValueError, "the lock has no name");
        return NULL;
    }
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
    Py_VISIT(self->gates[0]);
    Py_VISIT(self->gates[1]);
    return 0;
}

static int lock_clear(LockObject *self)
{
    lock_drop_gates(self);
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

/* ---- methods bound to the concrete class ----------------------------- *
 *
 * CPython specialises a call like `v.get_lock()` or `lock.release()` to a
 * direct call of the C function only when the instance's type is exactly
 * the type the method descriptor belongs to. Here the instances are of
 * Python subclasses (shmkit.Value, shmkit.RLock, ...), so every such call
 * missed that check and took the generic path. So each subclass gets, at
 * creation (__init_subclass__), its own descriptors for the base's methods,
 * the same C functions bound to it; a method the subclass (or a class
 * between) defines itself is left alone.
 */
int ext_bind_methods(PyTypeObject *cls, PyMethodDef *defs)
{
    PyObject *mro = cls->tp_mro;
    PyMethodDef *def;

    if (!mro || !PyTuple_Check(mro))
        return 0;
    for (def = defs; def->ml_name; def++) {
        PyObject *name, *found = NULL, *descr;
        Py_ssize_t k;
        int r;

        if (def->ml_flags & (METH_CLASS | METH_STATIC))
            continue;
        name = PyUnicode_InternFromString(def->ml_name);
        if (!name)
            return -1;
        for (k = 0; k < PyTuple_GET_SIZE(mro) && !found; k++) {
            PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, k))->tp_dict;
            if (dict && !(found = PyDict_GetItemWithError(dict, name)) && PyErr_Occurred()) {
                Py_DECREF(name);
                return -1;
            }
        }
        /* Only the base's own method, and not yet bound to cls. */
        if (!found || !PyObject_TypeCheck(found, &PyMethodDescr_Type) ||
            ((PyMethodDescrObject *)found)->d_method != def ||
            PyDescr_TYPE(found) == cls) {
            Py_DECREF(name);
            continue;
        }
        descr = PyDescr_NewMethod(cls, def);
        r = descr ? PyObject_SetAttr((PyObject *)cls, name, descr) : -1;
        Py_XDECREF(descr);
        Py_DECREF(name);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* __init_subclass__ of LockBase and TypedBase (the base is the module
 * state's type at `base_at`): the next class's in cls's MRO first, with
 * the class keywords (cooperative, as super().__init_subclass__(**kw) in
 * Python), then ext_bind_methods. */
PyObject *ext_init_subclass(size_t base_at, PyTypeObject *cls, PyObject *args,
                            PyObject *kw, PyMethodDef *defs)
{
    ext_state *st = ext_state_of_type(cls);
    PyObject *sup, *next, *r;

    if (!st) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_SystemError, "shmkit: no module state for %.100s",
                         cls->tp_name);
        return NULL;
    }
    sup = PyObject_CallFunctionObjArgs((PyObject *)&PySuper_Type,
                                       *(PyObject **)((char *)st + base_at),
                                       (PyObject *)cls, NULL);
    if (!sup)
        return NULL;
    next = PyObject_GetAttrString(sup, "__init_subclass__");
    Py_DECREF(sup);
    if (!next)
        return NULL;
    r = PyObject_Call(next, args, kw);
    Py_DECREF(next);
    if (!r)
        return NULL;
    Py_DECREF(r);
    if (ext_bind_methods(cls, defs) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *lock_init_subclass(PyTypeObject *cls, PyObject *args, PyObject *kw);

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire,
     METH_FASTCALL | METH_KEYWORDS, acquire_doc},
    {"release", (PyCFunction)lock_release, METH_NOARGS, release_doc},
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
    {"__init_subclass__", (PyCFunction)(void (*)(void))lock_init_subclass,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyObject *lock_init_subclass(PyTypeObject *cls, PyObject *args, PyObject *kw)
{
    return ext_init_subclass(offsetof(ext_state, lock_type), cls, args, kw,
                             lock_methods);
}

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
    st->lock_gate_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &gate_spec, NULL);
    if (!st->lock_gate_type)
        return -1;
    st->lock_entry_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &entry_spec, NULL);
    if (!st->lock_entry_type ||
        ext_add_entries(st, st->lock_type, lock_entry_methods, lock_gate_of) < 0)
        return -1;
    return PyModule_AddType(m, st->lock_type);
}
