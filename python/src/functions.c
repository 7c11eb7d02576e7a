/*
 * functions.c - the module-level functions of shmkit._shmkit: unlink by
 * name, error names, what kind a block is, the family tracker and gc.
 */
#include "ext.h"

#include <errno.h>
#include <limits.h>

PyDoc_STRVAR(unlink_doc,
"unlink(name)\n--\n\n"
"Remove the block called name (FileNotFoundError if there is none).");

static PyObject *mod_unlink(PyObject *m, PyObject *arg)
{
    const char *name;
    int r;

    if (ext_required_name(arg, &name) < 0)
        return NULL;
    r = shmkit_unlink(name);
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, name);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unlink_block_doc,
"unlink_block(name)\n--\n\n"
"Remove the raw block called name, without looking for a list's lock\n"
"(one system call; FileNotFoundError if there is none).");

static PyObject *mod_unlink_block(PyObject *m, PyObject *arg)
{
    const char *name;
    int r;

    if (ext_required_name(arg, &name) < 0)
        return NULL;
    r = shmkit_unlink_block(name);
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, name);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(track_doc,
"track(name)\n--\n\n"
"Track the existing block called name from now on, as if this process had\n"
"created it with track=True: it goes when this process family has exited.");

static PyObject *mod_track(PyObject *m, PyObject *arg)
{
    const char *name;
    int r;

    if (ext_required_name(arg, &name) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_track(name);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, name);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(untrack_doc,
"untrack(name)\n--\n\n"
"Stop tracking the block called name, which this process created with\n"
"track=True (or passed to track()): it then outlives the family. Returns\n"
"False if this process did not track it.");

static PyObject *mod_untrack(PyObject *m, PyObject *arg)
{
    const char *name;
    int r;

    if (ext_required_name(arg, &name) < 0)
        return NULL;
    r = shmkit_untrack(name);
    if (r == -ENOENT)
        Py_RETURN_FALSE;
    if (r < 0)
        return ext_error(ext_state_of_module(m), r, name);
    Py_RETURN_TRUE;
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

    if (ext_required_name(arg, &name) < 0)
        return NULL;
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

static PyMethodDef ext_functions[] = {
    {"track_start", mod_track_start, METH_NOARGS, track_start_doc},
    {"track_fd", mod_track_fd, METH_NOARGS, track_fd_doc},
    {"track_pid", mod_track_pid, METH_NOARGS, track_pid_doc},
    {"gc", (PyCFunction)(void (*)(void))mod_gc, METH_VARARGS | METH_KEYWORDS, gc_doc},
    {"unlink", mod_unlink, METH_O, unlink_doc},
    {"track", mod_track, METH_O, track_doc},
    {"untrack", mod_untrack, METH_O, untrack_doc},
    {"unlink_block", mod_unlink_block, METH_O, unlink_block_doc},
    {"errname", mod_errname, METH_O, errname_doc},
    {"block_kind", mod_block_kind, METH_O, kind_doc},
    {NULL, NULL, 0, NULL}
};

int ext_functions_add(PyObject *m)
{
    return PyModule_AddFunctions(m, ext_functions);
}
