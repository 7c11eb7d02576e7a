/*
 * ext.h - what the files of the shmkit._shmkit extension share.
 *
 * The extension is a client of the public C API only (<shmkit.h>). Every
 * type is a heap type created at module exec (multi-phase init); the module
 * state holds the types and the exception classes, and ext_error() is the
 * one place where a shmkit code becomes a Python exception.
 *
 * The files are layers; each calls only the ones before it in this list
 * (scripts/check_py_layers.py checks it on the object files):
 *
 *   common.c     module state, names, errors and the exception classes
 *   mapping.c    Mapping: a mapped block whose lifetime its users share;
 *                SharedMemoryBase: SharedMemory's create, attach, close
 *                and unlink in C
 *   sync.c       LockBase: Lock, RLock, Condition operations
 *   list.c       ShareableListBase
 *   typed.c      TypedBase: Value and Array (uses sync.c's embedded lock)
 *   manager.c    ManagerClient (uses list.c's item conversion)
 *   queue.c      QueueBase and QueueSlot: the shmkit queue
 *   functions.c  the module-level functions
 *   module.c     module init: registers all of the above, nothing else
 */
#ifndef SHMKIT_PY_EXT_H
#define SHMKIT_PY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <shmkit.h>

typedef struct ext_state {
    PyTypeObject *mapping_type;
    PyTypeObject *list_type;
    PyTypeObject *lock_type;
    PyTypeObject *lock_gate_type;   /* sync.c: a lock's bound __enter__/__exit__ */
    PyTypeObject *lock_entry_type;  /* sync.c: the descriptor handing them out */
    PyTypeObject *typed_type;
    PyObject *str_value;            /* typed.c: "value", interned */
    PyObject *typed_value_descr;    /* typed.c: TypedBase's "value" */
    PyTypeObject *value_fast_type;  /* typed.c: borrowed, only compared */
    unsigned int value_fast_tag;    /* its tp_version_tag when checked */
    PyTypeObject *queue_type;
    PyTypeObject *queue_slot_type;
    PyObject *Error;            /* shmkit.Error(OSError): any shmkit code */
    PyObject *CorruptError;     /* Error + ValueError: bad layout in a block */
    PyObject *OwnerDeadError;   /* Error: acquired, previous owner died */
    PyObject *NotRecoverableError; /* Error: lock permanently unusable */
    PyObject *ItemTypeError;    /* TypeError + KeyError: CPython raises KeyError */
    PyObject *ItemRangeError;   /* OverflowError + struct.error, as CPython */
} ext_state;

/* ---- common.c ---- */

/* Module exec's first step: records the module's definition (for
 * ext_state_of_type), adds the exception classes and the constants. */
int ext_common_init(PyObject *m, ext_state *st);

/* The module state reached from an object whose type the module made. */
ext_state *ext_state_of_type(PyTypeObject *tp);
/* The module itself (borrowed), or NULL (no exception set). */
PyObject *ext_module_of_type(PyTypeObject *tp);
ext_state *ext_state_of_module(PyObject *m);

/*
 * Sets the Python exception for shmkit code `code` (negative) and returns
 * NULL. `name` (may be NULL) is the block name the call was about; it goes
 * into the exception as CPython's _posixshmem does ("/name").
 */
PyObject *ext_error(ext_state *st, int code, const char *name);

/* Parses an optional name argument: None gives NULL, str gives its UTF-8;
 * a str with an embedded NUL is a ValueError, as in CPython. */
int ext_name_arg(PyObject *obj, const char **out);
/* The same, but None is refused too (TypeError "name must be str"). */
int ext_required_name(PyObject *obj, const char **out);

/* Parses METH_FASTCALL | METH_KEYWORDS arguments (fn(a, b=..., ...),
 * each given by position or by name) into out[0..nout) (borrowed; NULL
 * for one not given): names are the parameters in order, the first
 * `required` of them must be given. 0, or -1 with the TypeError
 * PyArg_ParseTupleAndKeywords raises (CPython 3.11's words). The one
 * parser of the module's hand-parsed fast calls (acquire, add). */
int ext_fastcall_args(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names,
                      int required, PyObject **out, int nout);

/* Blocking calls release the GIL and wait in slices of at most this many
 * seconds, running the signal handlers between slices: a signal that
 * lands before a sleep ends no sleep (locks: the robust futex wait is
 * restarted by the kernel; queues: it landed while the call looked or
 * spun), and Ctrl-C would otherwise wait for the lock, the next message
 * or the deadline. */
#define EXT_WAIT_SLICE 0.05

/* The next slice's deadline into *slice: at most EXT_WAIT_SLICE away,
 * never past *final (NULL: no end). Returns 1 if it ends at *final. */
int ext_next_slice(struct timespec *slice, const struct timespec *final);

/* ---- mapping.c: a mapped block whose lifetime its users share ---- */

/* What owns the block handle of a Mapping (closed when the Mapping goes). */
enum ext_map_kind {
    EXT_MAP_BLOCK = 0,     /* a plain shmkit_block */
    EXT_MAP_LIST,          /* handle is a shmkit_list; block is its block */
    EXT_MAP_ARRAY,         /* handle is a shmkit_array */
    EXT_MAP_LOCK           /* handle is a shmkit_lock */
};

typedef struct MappingObject {
    PyObject_HEAD
    shmkit_block *block;   /* the handle's block; closed at dealloc */
    void *handle;          /* the list/array/lock owning block, or NULL */
    int kind;              /* enum ext_map_kind */
    char *data;            /* cached shmkit_block_data() */
    Py_ssize_t size;       /* cached shmkit_block_size() */
    Py_ssize_t exports;    /* live buffer exports */
    int closing;           /* close() called: no new exports */
    int readonly;
    PyObject *name;        /* str; follows rename() */
    PyObject *weakreflist;
} MappingObject;

int ext_mapping_init_type(PyObject *m, ext_state *st);
/* The SharedMemory over Mapping m for an object of type `owner`: what
 * owner._shm_class._from_mapping(m, track) makes (shared_memory.py), in
 * C. A new reference, or NULL with the exception set. */
PyObject *ext_shm_over(PyTypeObject *owner, PyObject *m, int track);
/* "name", interned (borrowed; made by ext_mapping_init_type). */
PyObject *ext_str_name(void);

/* Wraps a handle of the given kind (stolen: closed on failure too) into a
 * new Mapping; `b` is the handle's block. */
PyObject *ext_mapping_new(ext_state *st, int kind, void *handle,
                          shmkit_block *b);

/* ---- sync.c ---- */

/* Acquires m (timeout < 0: forever) with the GIL released and signals
 * checked: 1 acquired (*died set if the previous owner died), 0 not, -1
 * error set. name (a str, or NULL) is the block an error names. */
int ext_mutex_acquire(ext_state *st, shmkit_mutex *m, int block,
                      double timeout, int *died, PyObject *name);
/* The arguments of acquire(block=True, timeout=None) as METH_FASTCALL |
 * METH_KEYWORDS gets them (CPython specialises such calls): 0, or -1
 * with the TypeError PyArg_ParseTupleAndKeywords would raise. */
int ext_acquire_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                     int *block, PyObject **timeout);
/* Releases m: 0, or -1 with multiprocessing's exception set. */
int ext_mutex_release(ext_state *st, shmkit_mutex *m, PyObject *name);
/* The mutex of a LockBase instance, or NULL if obj is none. */
shmkit_mutex *ext_lock_mutex(ext_state *st, PyObject *obj);
/* acquire()/release() of a LockBase instance (ext_lock_mutex non-NULL). */
PyObject *ext_lock_acquire(PyObject *lock, int block, double timeout);
PyObject *ext_lock_release(PyObject *lock);
/* What a type's __enter__/__exit__ Entry gives for an instance obj: a new
 * reference to a callable bound once (a gate), or NULL without an error
 * set to bind the plain method instead. */
typedef PyObject *(*ext_gate_fn)(PyObject *obj, int exit);
/* Puts __enter__ (defs[0]) and __exit__ (defs[1]) into tp's dictionary as
 * Entries (module exec, before any subclass exists): for an instance they
 * give gate_of(obj, 0 or 1); through the class, the plain methods. */
int ext_add_entries(ext_state *st, PyTypeObject *tp, PyMethodDef defs[2],
                    ext_gate_fn gate_of);
/* The gate of a LockBase instance for __enter__ (exit 0) or __exit__ (1),
 * a new reference; NULL without an error set if lock is none. */
PyObject *ext_lock_gate(ext_state *st, PyObject *lock, int exit);
/* Gives Python subclass cls its own descriptors of the methods defs of its
 * extension base (for CPython's call specialisation), where cls resolves
 * the name to that base's method; ext_init_subclass is the base's
 * __init_subclass__ doing it after the next one in cls's MRO. */
int ext_bind_methods(PyTypeObject *cls, PyMethodDef *defs);
PyObject *ext_init_subclass(size_t base_at, PyTypeObject *cls, PyObject *args,
                            PyObject *kw, PyMethodDef *defs);
/* A new instance of tp (a LockBase subclass) over the mutex embedded in
 * a block; owner keeps the mapping alive. */
PyObject *ext_lock_embedded(PyTypeObject *tp, PyObject *owner,
                            shmkit_mutex *m, PyObject *name);

/* ---- list.c ---- */

/* Builds the C items of a sequence into *items (PyMem_Free it); *keep
 * (Py_XDECREF it) holds the objects they point into. Returns the count, or
 * -1 with an exception set (still free and decref both). */
Py_ssize_t ext_items_of_sequence(ext_state *st, PyObject *seq,
                                 PyObject **keep, shmkit_item **items);

/* ---- list.c, sync.c, typed.c ---- */
int ext_list_init_type(PyObject *m, ext_state *st);
int ext_sync_init_type(PyObject *m, ext_state *st);
int ext_typed_init_type(PyObject *m, ext_state *st);
int ext_manager_init_type(PyObject *m, ext_state *st);
int ext_queue_init_type(PyObject *m, ext_state *st);

/* ---- functions.c ---- */
int ext_functions_add(PyObject *m);

#endif
