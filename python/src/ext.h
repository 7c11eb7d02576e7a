/*
 * ext.h - what the files of the shmkit._shmkit extension share.
 *
 * The extension is a client of the public C API only (<shmkit.h>). Every
 * type is a heap type created at module exec (multi-phase init); the module
 * state holds the types and the exception classes, and ext_error() is the
 * one place where a shmkit code becomes a Python exception.
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
    PyTypeObject *typed_type;
    PyObject *Error;            /* shmkit.Error(OSError): any shmkit code */
    PyObject *CorruptError;     /* Error + ValueError: bad layout in a block */
    PyObject *OwnerDeadError;   /* Error: acquired, previous owner died */
    PyObject *NotRecoverableError; /* Error: lock permanently unusable */
} ext_state;

extern PyModuleDef ext_module_def;

/* The module state reached from an object whose type the module made. */
ext_state *ext_state_of_type(PyTypeObject *tp);
ext_state *ext_state_of_module(PyObject *m);

/*
 * Sets the Python exception for shmkit code `code` (negative) and returns
 * NULL. `name` (may be NULL) is the block name the call was about; it goes
 * into the exception as CPython's _posixshmem does ("/name").
 */
PyObject *ext_error(ext_state *st, int code, const char *name);

/* Parses an optional name argument: None gives NULL, str gives its UTF-8. */
int ext_name_arg(PyObject *obj, const char **out);

/* ---- mapping.c: a mapped block whose lifetime its buffer exports share ---- */
typedef struct MappingObject {
    PyObject_HEAD
    shmkit_block *block;   /* NULL once released */
    char *data;            /* cached shmkit_block_data() */
    Py_ssize_t size;       /* cached shmkit_block_size() */
    Py_ssize_t exports;    /* live buffer exports */
    int closing;           /* close() called: no new exports */
    int readonly;
    PyObject *name;        /* str, kept after release for unlink() */
    PyObject *weakreflist;
} MappingObject;

int ext_mapping_init_type(PyObject *m, ext_state *st);

/* 0 if the mapping is open; -1 with ValueError once close() was called. */
int ext_mapping_check(MappingObject *mo);

/* ---- list.c, sync.c, typed.c ---- */
int ext_list_init_type(PyObject *m, ext_state *st);
int ext_sync_init_type(PyObject *m, ext_state *st);
int ext_typed_init_type(PyObject *m, ext_state *st);

#endif
