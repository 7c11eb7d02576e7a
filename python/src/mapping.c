/*
 * mapping.c - _shmkit.Mapping: one shmkit block handle whose mapping lives
 * as long as anything uses it.
 *
 * CPython's SharedMemory.close() raises BufferError while a memoryview
 * still uses the buffer, and unmaps memory that NumPy arrays still point
 * to (NumPy keeps a reference to the exporting object, not a buffer
 * export). Here close() only forbids new exports; the block is unmapped
 * when the Mapping object itself goes, that is when the last memoryview,
 * NumPy array or ShareableList built on it is gone (at once, in the common
 * case where nothing else uses it: reference counting frees it).
 */
#include "ext.h"

#include <structmember.h>

static int mapping_check_open(MappingObject *mo)
{
    if (mo->closing || !mo->block) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shared memory block");
        return -1;
    }
    return 0;
}

/* Closes what a Mapping owns. Returns 0 or a negative shmkit code. */
static int mapping_close_handle(int kind, void *handle, shmkit_block *b)
{
    switch (kind) {
    case EXT_MAP_LIST:
        return shmkit_list_close(handle);
    case EXT_MAP_ARRAY:
        return shmkit_array_close(handle);
    case EXT_MAP_LOCK:
        return shmkit_lock_close(handle);
    default:
        return shmkit_block_close(b);
    }
}

static PyObject *mapping_wrap(PyTypeObject *tp, int kind, void *handle,
                              shmkit_block *b)
{
    MappingObject *mo = PyObject_GC_New(MappingObject, tp);

    if (!mo) {
        mapping_close_handle(kind, handle, b);
        return NULL;
    }
    mo->block = b;
    mo->handle = handle;
    mo->kind = kind;
    mo->data = shmkit_block_data(b);
    mo->size = (Py_ssize_t)shmkit_block_size(b);
    mo->exports = 0;
    mo->closing = 0;
    mo->readonly = (shmkit_block_flags(b) & SHMKIT_RDONLY) != 0;
    mo->weakreflist = NULL;
    mo->name = PyUnicode_FromString(shmkit_block_name(b));
    if (!mo->name) {
        Py_DECREF(mo);
        return NULL;
    }
    PyObject_GC_Track(mo);
    return (PyObject *)mo;
}

PyObject *ext_mapping_new(ext_state *st, int kind, void *handle,
                          shmkit_block *b)
{
    return mapping_wrap(st->mapping_type, kind, handle, b);
}

PyDoc_STRVAR(create_doc,
"create(name, size, flags=0, mode=0o600)\n--\n\n"
"Create a new block (name None: generated) and map it.");

static PyObject *mapping_create(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "size", "flags", "mode", NULL};
    PyObject *nameobj;
    const char *name;
    Py_ssize_t size;
    unsigned int flags = 0, mode = 0600;
    shmkit_block *b;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "On|II:create", kwlist,
                                     &nameobj, &size, &flags, &mode))
        return NULL;
    if (ext_name_arg(nameobj, &name) < 0)
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "'size' must be a positive number different from zero");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_block_create_mode(&b, name, (size_t)size, flags, (mode_t)mode);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return mapping_wrap(tp, EXT_MAP_BLOCK, NULL, b);
}

PyDoc_STRVAR(attach_doc,
"attach(name, flags=0)\n--\n\n"
"Attach to the existing block called name and map all of it.");

static PyObject *mapping_attach(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "flags", NULL};
    PyObject *nameobj;
    const char *name;
    unsigned int flags = 0;
    shmkit_block *b;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|I:attach", kwlist,
                                     &nameobj, &flags))
        return NULL;
    if (ext_name_arg(nameobj, &name) < 0)
        return NULL;
    if (!name) {
        PyErr_SetString(PyExc_ValueError, "'name' can only be None if create=True");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_block_attach(&b, name, flags);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return mapping_wrap(tp, EXT_MAP_BLOCK, NULL, b);
}

PyDoc_STRVAR(close_doc,
"close()\n--\n\n"
"Give up this handle: no new buffers are handed out, and the block is\n"
"unmapped when this object goes (with the last buffer or array using it).");

static PyObject *mapping_close(MappingObject *mo, PyObject *unused)
{
    mo->closing = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unlink_doc,
"unlink()\n--\n\nRemove the block's name (the memory stays while mapped).");

static PyObject *mapping_unlink(MappingObject *mo, PyObject *unused)
{
    const char *name = PyUnicode_AsUTF8(mo->name);
    int r;

    if (!name)
        return NULL;
    if (!mo->block)
        r = shmkit_unlink(name);
    else if (mo->kind == EXT_MAP_LIST)
        r = shmkit_list_unlink(mo->handle);   /* and its "<name>.lock" */
    else
        r = shmkit_block_unlink(mo->block);
    if (r < 0)
        return ext_error(ext_state_of_type(Py_TYPE(mo)), r, name);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(rename_doc,
"rename(newname, flags=0)\n--\n\n"
"Rename the block atomically (flags: RENAME_NOREPLACE, RENAME_EXCHANGE).");

static PyObject *mapping_rename(MappingObject *mo, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"newname", "flags", NULL};
    const char *to;
    unsigned int flags = 0;
    PyObject *name;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|I:rename", kwlist, &to, &flags))
        return NULL;
    if (!mo->block) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shared memory block");
        return NULL;
    }
    r = shmkit_block_rename(mo->block, to, flags);
    if (r < 0)
        return ext_error(ext_state_of_type(Py_TYPE(mo)), r, to);
    name = PyUnicode_FromString(shmkit_block_name(mo->block));
    if (!name)
        return NULL;
    Py_SETREF(mo->name, name);
    Py_RETURN_NONE;
}

/* resize and refresh may move the mapping: only with nothing exported. */
static int mapping_check_movable(MappingObject *mo)
{
    if (mapping_check_open(mo) < 0)
        return -1;
    if (mo->kind != EXT_MAP_BLOCK) {
        PyErr_SetString(PyExc_ValueError,
                        "a list, array or lock block has a fixed layout");
        return -1;
    }
    if (mo->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot remap: %zd buffer(s) still in use", mo->exports);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(resize_doc,
"resize(size)\n--\n\nGrow the block to size bytes (BufferError while exported).");

static PyObject *mapping_resize(MappingObject *mo, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    int r;

    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "'size' must be a positive integer");
        return NULL;
    }
    if (mapping_check_movable(mo) < 0)
        return NULL;
    r = shmkit_block_resize(mo->block, (size_t)n);
    if (r == SHMKIT_ESHRINK) {
        PyErr_SetString(PyExc_ValueError, "cannot shrink a shared memory block");
        return NULL;
    }
    mo->data = shmkit_block_data(mo->block);
    mo->size = (Py_ssize_t)shmkit_block_size(mo->block);
    if (r < 0)
        return ext_error(ext_state_of_type(Py_TYPE(mo)), r,
                         shmkit_block_name(mo->block));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(refresh_doc,
"refresh()\n--\n\nRemap to the block's current size (after a peer resized it).");

static PyObject *mapping_refresh(MappingObject *mo, PyObject *unused)
{
    int r;

    if (mapping_check_movable(mo) < 0)
        return NULL;
    r = shmkit_block_refresh(mo->block);
    mo->data = shmkit_block_data(mo->block);
    mo->size = (Py_ssize_t)shmkit_block_size(mo->block);
    if (r < 0 && r != SHMKIT_ETRUNCATED)
        return ext_error(ext_state_of_type(Py_TYPE(mo)), r,
                         shmkit_block_name(mo->block));
    Py_RETURN_NONE;
}

static PyObject *mapping_kind(MappingObject *mo, PyObject *unused)
{
    if (mapping_check_open(mo) < 0)
        return NULL;
    return PyUnicode_FromString(shmkit_kind_name(shmkit_block_kind(mo->block)));
}

static PyObject *get_size(MappingObject *mo, void *c)
{
    return PyLong_FromSsize_t(mo->size);
}

static PyObject *get_closed(MappingObject *mo, void *c)
{
    return PyBool_FromLong(mo->closing || !mo->block);
}

static PyObject *get_mapped(MappingObject *mo, void *c)
{
    return PyBool_FromLong(mo->block != NULL);
}

static PyObject *get_flags(MappingObject *mo, void *c)
{
    return PyLong_FromUnsignedLong(mo->block ? shmkit_block_flags(mo->block) : 0);
}

static PyObject *get_fd(MappingObject *mo, void *c)
{
    return PyLong_FromLong(mo->block ? shmkit_block_fd(mo->block) : -1);
}

static PyObject *get_address(MappingObject *mo, void *c)
{
    return PyLong_FromVoidPtr(mo->data);
}

static int mapping_getbuffer(MappingObject *mo, Py_buffer *view, int flags)
{
    if (mapping_check_open(mo) < 0)
        return -1;
    if (PyBuffer_FillInfo(view, (PyObject *)mo, mo->data, mo->size,
                          mo->readonly, flags) < 0)
        return -1;
    mo->exports++;
    return 0;
}

static void mapping_releasebuffer(MappingObject *mo, Py_buffer *view)
{
    mo->exports--;
}

static int mapping_traverse(MappingObject *mo, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(mo));
    return 0;
}

static void mapping_dealloc(MappingObject *mo)
{
    PyTypeObject *tp = Py_TYPE(mo);

    PyObject_GC_UnTrack(mo);
    if (mo->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)mo);
    if (mo->block)
        mapping_close_handle(mo->kind, mo->handle, mo->block);
    Py_XDECREF(mo->name);
    tp->tp_free(mo);
    Py_DECREF(tp);
}

static PyObject *mapping_repr(MappingObject *mo)
{
    return PyUnicode_FromFormat("<shmkit Mapping %R size=%zd%s>", mo->name,
                                mo->size, mo->block ? "" : " released");
}

static PyMethodDef mapping_methods[] = {
    {"create", (PyCFunction)(void (*)(void))mapping_create,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, create_doc},
    {"attach", (PyCFunction)(void (*)(void))mapping_attach,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, attach_doc},
    {"close", (PyCFunction)mapping_close, METH_NOARGS, close_doc},
    {"unlink", (PyCFunction)mapping_unlink, METH_NOARGS, unlink_doc},
    {"rename", (PyCFunction)(void (*)(void))mapping_rename,
     METH_VARARGS | METH_KEYWORDS, rename_doc},
    {"resize", (PyCFunction)mapping_resize, METH_O, resize_doc},
    {"refresh", (PyCFunction)mapping_refresh, METH_NOARGS, refresh_doc},
    {"kind", (PyCFunction)mapping_kind, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef mapping_members[] = {
    {"name", T_OBJECT, offsetof(MappingObject, name), READONLY, NULL},
    {"exports", T_PYSSIZET, offsetof(MappingObject, exports), READONLY, NULL},
    {"handle_kind", T_INT, offsetof(MappingObject, kind), READONLY,
     "0 plain block, 1 list, 2 Value/Array, 3 lock"},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(MappingObject, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyGetSetDef mapping_getset[] = {
    {"size", (getter)get_size, NULL, "exact size in bytes", NULL},
    {"closed", (getter)get_closed, NULL, "close() was called", NULL},
    {"mapped", (getter)get_mapped, NULL, "the block is still mapped", NULL},
    {"flags", (getter)get_flags, NULL, "flags of the handle", NULL},
    {"fd", (getter)get_fd, NULL, "descriptor of the handle (-1 released)", NULL},
    {"address", (getter)get_address, NULL, "address of the mapping", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot mapping_slots[] = {
    {Py_tp_dealloc, mapping_dealloc},
    {Py_tp_traverse, mapping_traverse},
    {Py_tp_repr, mapping_repr},
    {Py_tp_methods, mapping_methods},
    {Py_tp_members, mapping_members},
    {Py_tp_getset, mapping_getset},
    {Py_bf_getbuffer, mapping_getbuffer},
    {Py_bf_releasebuffer, mapping_releasebuffer},
    {Py_tp_doc, (void *)"A mapped shmkit block; see SharedMemory."},
    {0, NULL}
};

static PyType_Spec mapping_spec = {
    .name = "shmkit._shmkit.Mapping",
    .basicsize = sizeof(MappingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = mapping_slots,
};

int ext_mapping_init_type(PyObject *m, ext_state *st)
{
    st->mapping_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mapping_spec, NULL);
    if (!st->mapping_type)
        return -1;
    return PyModule_AddType(m, st->mapping_type);
}
