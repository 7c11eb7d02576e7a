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

#include <fcntl.h>
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

/* Creates a block (name NULL: generated) and wraps it in a new Mapping of
 * type tp; NULL with the exception set. */
static PyObject *mapping_create_block(PyTypeObject *tp, const char *name,
                                      Py_ssize_t size, unsigned flags,
                                      unsigned mode)
{
    shmkit_block *b;
    int r;

    Py_BEGIN_ALLOW_THREADS
    r = shmkit_block_create_mode(&b, name, (size_t)size, flags, (mode_t)mode);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return mapping_wrap(tp, EXT_MAP_BLOCK, NULL, b);
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
    return mapping_create_block(tp, name, size, flags, mode);
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

/* ---- SharedMemoryBase: the hot paths of SharedMemory ------------------- */

/*
 * The base class of shmkit.shared_memory.SharedMemory. A 4 KiB create,
 * close and unlink is about 17 us of system calls here, and the Python
 * around them cost another 1.6 us: a Python frame run between system
 * calls runs from cold caches. So __init__ does the common create
 * (create=True, a str name, an int size > 0) here and hands every other
 * case to the Python class's _init(); close() and unlink() are here too.
 *
 * The state stays in the instance's __dict__ under the Python class's
 * names (_mapping, _buf, _name, _size, _flags, _raw, _track), so the
 * Python class, its subclasses and code written for CPython see it as
 * before; _mode and _prepend_leading_slash are read from the instance, so
 * a subclass may override them.
 */

enum {
    A_MAPPING, A_BUF, A_NAME, A_SIZE, A_FLAGS, A_RAW, A_TRACK, A_MODE,
    A_SLASH, A_INIT, A_MADE, A_KEEP, A_MOVE, A_POPITEM, A_CLOSE, A_UNLINK,
    A_UNLINK_BLOCK, A_PUBNAME, A_SLASHSTR, A_ARG_NAME, A_ARG_CREATE,
    A_ARG_SIZE, A_ARG_TRACK, A_ARG_RESERVE, A_SHM_CLASS, A_ZERO, A_COUNT
};
static const char *const shm_attr_names[A_COUNT] = {
    "_mapping", "_buf", "_name", "_size", "_flags", "_raw", "_track",
    "_mode", "_prepend_leading_slash", "_init", "_made_names", "_made_keep",
    "move_to_end", "popitem", "close", "unlink", "unlink_block", "name",
    "/", "name", "create", "size", "track", "reserve", "_shm_class", NULL
};
static PyObject *shm_attr[A_COUNT];   /* interned once; A_ZERO is int 0 */

/* Sets self.<attr a> to v (stolen; NULL: the error that made it). */
static int shm_set(PyObject *self, int a, PyObject *v)
{
    int r;

    if (!v)
        return -1;
    r = PyObject_SetAttr(self, shm_attr[a], v);
    Py_DECREF(v);
    return r;
}

/* Truth of self.<attr a>: 1, 0, or -1 with the exception set. */
static int shm_truth(PyObject *self, int a)
{
    PyObject *v = PyObject_GetAttr(self, shm_attr[a]);
    int r;

    if (!v)
        return -1;
    r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* Records a name shmkit made, attached or unlinked here for the
 * resource_tracker shim: the newest _shmkit._made_keep of them, in the
 * OrderedDict _shmkit._made_names (its _made(), done here). With `fresh`
 * (unlink) a name already there keeps its place: it was recorded when
 * this handle was made. Nothing to do before shmkit.shared_memory set
 * them. */
static int shm_record(PyObject *module, PyObject *name, int fresh)
{
    PyObject *names, *keep = NULL, *r = NULL;
    Py_ssize_t n, k;
    int ret = -1, have;

    names = PyObject_GetAttr(module, shm_attr[A_MADE]);
    if (!names) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    have = PyMapping_HasKey(names, name);
    if (have && fresh) {
        ret = 0;
        goto out;
    }
    if (PyObject_SetItem(names, name, Py_None) < 0)
        goto out;
    if (have) {     /* the newest again */
        r = PyObject_CallMethodOneArg(names, shm_attr[A_MOVE], name);
        if (!r)
            goto out;
        Py_CLEAR(r);
    }
    keep = PyObject_GetAttr(module, shm_attr[A_KEEP]);
    k = keep ? PyLong_AsSsize_t(keep) : -1;
    if (k == -1 && PyErr_Occurred())
        goto out;
    n = PyObject_Size(names);
    if (n < 0)
        goto out;
    if (n > k) {
        r = PyObject_CallMethodOneArg(names, shm_attr[A_POPITEM], Py_False);
        if (!r)
            goto out;
    }
    ret = 0;
out:
    Py_XDECREF(r);
    Py_XDECREF(keep);
    Py_DECREF(names);
    return ret;
}

/* The module of self's type (borrowed); NULL with SystemError set. */
static PyObject *shm_module(PyObject *self)
{
    PyObject *m = ext_module_of_type(Py_TYPE(self));

    if (!m)
        PyErr_SetString(PyExc_SystemError,
                        "SharedMemoryBase without its module");
    return m;
}

/* An int class attribute of self (_mode, _flags): 0, or -1 with the
 * exception set. Masked as the "I" format of Mapping.create does. */
static int shm_uint(PyObject *self, int a, unsigned long *out)
{
    PyObject *v = PyObject_GetAttr(self, shm_attr[a]);

    if (!v)
        return -1;
    *out = PyLong_AsUnsignedLongMask(v);
    Py_DECREF(v);
    return (*out == (unsigned long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* Fills self with Mapping m (stolen) as SharedMemory.__init__ does:
 * `name` as given, `created` for a raw block made here. */
static int shm_fill(PyObject *self, PyObject *module, PyObject *m,
                    PyObject *name, int created, int track)
{
    MappingObject *mo = (MappingObject *)m;
    PyObject *full;
    int slash = shm_truth(self, A_SLASH);

    full = slash < 0 ? NULL
         : slash ? PyUnicode_Concat(shm_attr[A_SLASHSTR], name)
                 : Py_NewRef(name);
    if ((created && shm_set(self, A_FLAGS,
                            PyLong_FromLong(O_CREAT | O_EXCL | O_RDWR)) < 0) ||
        (created && shm_set(self, A_RAW, Py_NewRef(Py_True)) < 0) ||
        (!track && shm_set(self, A_TRACK, Py_NewRef(Py_False)) < 0) ||
        shm_set(self, A_MAPPING, Py_NewRef(m)) < 0 ||
        shm_set(self, A_NAME, full) < 0 ||
        shm_set(self, A_SIZE, PyLong_FromSsize_t(mo->size)) < 0 ||
        shm_set(self, A_BUF, PyMemoryView_FromObject(m)) < 0 ||
        shm_record(module, mo->name, 0) < 0) {
        Py_DECREF(m);
        return -1;
    }
    Py_DECREF(m);
    return 0;
}

PyObject *ext_shm_over(PyTypeObject *owner, PyObject *m, int track)
{
    MappingObject *mo = (MappingObject *)m;
    PyObject *cls, *shm, *empty;
    PyTypeObject *tp;

    cls = PyObject_GetAttr((PyObject *)owner, shm_attr[A_SHM_CLASS]);
    if (!cls)
        return NULL;
    if (!PyType_Check(cls) || !((PyTypeObject *)cls)->tp_new) {
        PyErr_SetString(PyExc_TypeError, "_shm_class must be a class");
        Py_DECREF(cls);
        return NULL;
    }
    tp = (PyTypeObject *)cls;
    empty = PyTuple_New(0);
    shm = empty ? tp->tp_new(tp, empty, NULL) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(cls);
    if (!shm)
        return NULL;
    if (shm_set(shm, A_TRACK, PyBool_FromLong(track)) < 0 ||
        shm_set(shm, A_MAPPING, Py_NewRef(m)) < 0 ||
        shm_set(shm, A_NAME, PyUnicode_Concat(shm_attr[A_SLASHSTR], mo->name)) < 0 ||
        shm_set(shm, A_SIZE, PyLong_FromSsize_t(mo->size)) < 0 ||
        shm_set(shm, A_BUF, PyMemoryView_FromObject(m)) < 0) {
        Py_DECREF(shm);
        return NULL;
    }
    return shm;
}

PyObject *ext_str_name(void)
{
    return shm_attr[A_ARG_NAME];
}

/* The common create (create=True, a str name, size > 0) and the common
 * attach (a str name, the class's _flags plain O_RDWR); 1 if neither
 * applies (the Python _init() does it), else 0 or -1. */
static int shm_fast(PyObject *self, PyObject *name, int create,
                    Py_ssize_t size, int track, int reserve)
{
    PyObject *module, *m;
    ext_state *st;
    const char *cname;
    unsigned long v;
    shmkit_block *b;
    int r;

    if (create ? size <= 0 : size < 0)
        return 1;
    if (!create && (shm_uint(self, A_FLAGS, &v) < 0 || v != O_RDWR))
        return PyErr_Occurred() ? -1 : 1;
    if (ext_name_arg(name, &cname) < 0 || !(module = shm_module(self)))
        return -1;
    st = ext_state_of_module(module);
    if (create) {
        if (shm_uint(self, A_MODE, &v) < 0)
            return -1;
        m = mapping_create_block(st->mapping_type, cname, size,
                                 (track ? SHMKIT_TRACK : 0) |
                                 (reserve ? SHMKIT_RESERVE : 0), (unsigned)v);
    } else {
        Py_BEGIN_ALLOW_THREADS
        r = shmkit_block_attach(&b, cname, 0);
        Py_END_ALLOW_THREADS
        m = r < 0 ? ext_error(st, r, cname)
                  : mapping_wrap(st->mapping_type, EXT_MAP_BLOCK, NULL, b);
    }
    if (!m)
        return -1;
    return shm_fill(self, module, m, name, create, track);
}

/* Finds keyword `key` among SharedMemory's five arguments. */
static int shm_kwindex(PyObject *key)
{
    static const int order[5] = {A_ARG_NAME, A_ARG_CREATE, A_ARG_SIZE,
                                 A_ARG_TRACK, A_ARG_RESERVE};
    int i;

    for (i = 0; i < 5; i++)
        if (key == shm_attr[order[i]])
            return i;
    for (i = 0; i < 5; i++)
        if (PyUnicode_Check(key) &&
            PyUnicode_Compare(key, shm_attr[order[i]]) == 0)
            return i;
    return -1;
}

/* Parses (name=None, create=False, size=0, *, track=True, reserve=True)
 * into v[5] (borrowed; NULL where not given). A hand-written parser: the
 * generic one was a tenth of what __init__ costs above its system calls. */
static int shm_parse(PyObject *args, PyObject *kw, PyObject *v[5])
{
    Py_ssize_t i, nargs = PyTuple_GET_SIZE(args), pos = 0;
    PyObject *key, *val;
    int k;

    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "SharedMemory() takes at most 3 "
                     "positional arguments (%zd given)", nargs);
        return -1;
    }
    for (i = 0; i < 5; i++)
        v[i] = i < nargs ? PyTuple_GET_ITEM(args, i) : NULL;
    while (kw && PyDict_Next(kw, &pos, &key, &val)) {
        k = shm_kwindex(key);
        if (k < 0) {
            PyErr_Format(PyExc_TypeError, "SharedMemory() got an unexpected "
                         "keyword argument '%S'", key);
            return -1;
        }
        if (v[k]) {
            PyErr_Format(PyExc_TypeError, "SharedMemory() got multiple "
                         "values for argument '%S'", key);
            return -1;
        }
        v[k] = val;
    }
    return 0;
}

/* __init__(name=None, create=False, size=0, *, track=True, reserve=True) */
static int shm_init(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *v[5], *r;
    Py_ssize_t n = 0;
    int c, t = 1, rs = 1;

    if (shm_parse(args, kw, v) < 0)
        return -1;
    c = v[1] ? PyObject_IsTrue(v[1]) : 0;
    if (c < 0 || (v[3] && (t = PyObject_IsTrue(v[3])) < 0) ||
        (v[4] && (rs = PyObject_IsTrue(v[4])) < 0))
        return -1;
    if (v[2] && PyLong_Check(v[2])) {
        n = PyLong_AsSsize_t(v[2]);
        if (n == -1 && PyErr_Occurred()) {
            PyErr_Clear();      /* too large: _init says so */
            n = -1;
        }
    } else if (v[2])
        n = -1;                 /* not an int: _init says so */
    if (v[0] && PyUnicode_Check(v[0])) {
        int f = shm_fast(self, v[0], c, n, t, rs);
        if (f <= 0)
            return f;
    }
    /* Everything else: a generated name, O_CREAT set by a subclass, and
     * the errors, as CPython words them. */
    r = PyObject_CallMethodObjArgs(
        self, shm_attr[A_INIT], v[0] ? v[0] : Py_None, v[1] ? v[1] : Py_False,
        v[2] ? v[2] : shm_attr[A_ZERO], t ? Py_True : Py_False,
        rs ? Py_True : Py_False, NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

PyDoc_STRVAR(shm_close_doc,
"close()\n--\n\n"
"Closes access to the shared memory from this instance but does not\n"
"destroy the shared memory block. Memoryviews and NumPy arrays still\n"
"using the memory stay valid: the block is unmapped when the last of them\n"
"is gone (at once if there is none).");

static PyObject *shm_close(PyObject *self, PyObject *unused)
{
    PyObject *m, *r = NULL;

    /* Drop buf rather than release it: a NumPy array made with
     * buffer=shm.buf references the mapping object, not a buffer export. */
    if (PyObject_SetAttr(self, shm_attr[A_BUF], Py_None) < 0)
        return NULL;
    m = PyObject_GetAttr(self, shm_attr[A_MAPPING]);
    if (!m)
        return NULL;
    if (m == Py_None)
        r = Py_NewRef(Py_None);
    else if (PyObject_SetAttr(self, shm_attr[A_MAPPING], Py_None) == 0)
        r = PyObject_CallMethodNoArgs(m, shm_attr[A_CLOSE]);
    Py_DECREF(m);    /* the last reference: unmapped here */
    return r;
}

/* name without its leading slashes (name.lstrip('/')), a new reference. */
static PyObject *shm_bare(PyObject *name)
{
    Py_ssize_t i = 0, len = PyUnicode_GET_LENGTH(name);

    while (i < len && PyUnicode_READ_CHAR(name, i) == '/')
        i++;
    return PyUnicode_Substring(name, i, len);
}

/* Removes the block's name: through the Mapping while it is open, by name
 * with no list lock to look for if this handle created the block raw, else
 * by name with its list lock (the module's functions, looked up at each
 * call, as the Python code did). */
static PyObject *shm_remove(PyObject *self, PyObject *module, PyObject *name,
                            PyObject *bare)
{
    PyObject *m, *mname, *fn, *r;
    int same = 0, raw;

    m = PyObject_GetAttr(self, shm_attr[A_MAPPING]);
    if (!m)
        return NULL;
    if (m != Py_None) {
        mname = PyObject_GetAttr(m, shm_attr[A_PUBNAME]);
        same = mname ? PyObject_RichCompareBool(bare, mname, Py_EQ) : -1;
        Py_XDECREF(mname);
    }
    if (same > 0)
        r = PyObject_CallMethodNoArgs(m, shm_attr[A_UNLINK]);
    else if (same < 0 || (raw = shm_truth(self, A_RAW)) < 0)
        r = NULL;
    else {
        fn = PyObject_GetAttr(module, shm_attr[raw ? A_UNLINK_BLOCK : A_UNLINK]);
        r = fn ? PyObject_CallOneArg(fn, name) : NULL;
        Py_XDECREF(fn);
    }
    Py_DECREF(m);
    return r;
}

PyDoc_STRVAR(shm_unlink_doc,
"unlink()\n--\n\n"
"Requests that the underlying shared memory block be destroyed.\n\n"
"Unlink should be called once (and only once) across all handles\n"
"which have access to the shared memory block.");

static PyObject *shm_unlink(PyObject *self, PyObject *unused)
{
    PyObject *module, *name, *short_name = NULL, *bare = NULL, *r = NULL;
    int slash;

    if (!(module = shm_module(self)))
        return NULL;
    name = PyObject_GetAttr(self, shm_attr[A_NAME]);
    if (!name || name == Py_None)
        return name;
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        goto out;
    }
    /* The name property: _name without the slash it was given. */
    slash = shm_truth(self, A_SLASH);
    if (slash < 0)
        goto out;
    if (slash && PyUnicode_GET_LENGTH(name) > 0 &&
        PyUnicode_READ_CHAR(name, 0) == '/')
        short_name = PyUnicode_Substring(name, 1, PyUnicode_GET_LENGTH(name));
    else
        short_name = Py_NewRef(name);
    if (!short_name || !(bare = shm_bare(short_name)))
        goto out;
    r = shm_remove(self, module, short_name, bare);
    if (r && shm_record(module, bare, 1) < 0)
        Py_CLEAR(r);
out:
    Py_XDECREF(bare);
    Py_XDECREF(short_name);
    Py_DECREF(name);
    return r;
}

static PyMethodDef shm_methods[] = {
    {"close", shm_close, METH_NOARGS, shm_close_doc},
    {"unlink", shm_unlink, METH_NOARGS, shm_unlink_doc},
    {NULL, NULL, 0, NULL}
};

static PyType_Slot shm_slots[] = {
    {Py_tp_init, shm_init},
    {Py_tp_methods, shm_methods},
    {Py_tp_doc, (void *)"The C part of shmkit.shared_memory.SharedMemory: "
                        "__init__'s common create, close() and unlink()."},
    {0, NULL}
};

static PyType_Spec shm_spec = {
    .name = "shmkit._shmkit.SharedMemoryBase",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = shm_slots,
};

int ext_mapping_init_type(PyObject *m, ext_state *st)
{
    PyObject *shm_type;
    int i, r;

    for (i = 0; i < A_COUNT; i++)
        if (!shm_attr[i] &&
            !(shm_attr[i] = shm_attr_names[i]
                  ? PyUnicode_InternFromString(shm_attr_names[i])
                  : PyLong_FromLong(0)))
            return -1;
    st->mapping_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mapping_spec, NULL);
    if (!st->mapping_type || PyModule_AddType(m, st->mapping_type) < 0)
        return -1;
    shm_type = PyType_FromModuleAndSpec(m, &shm_spec, NULL);
    if (!shm_type)
        return -1;
    r = PyModule_AddType(m, (PyTypeObject *)shm_type);
    Py_DECREF(shm_type);
    return r;
}
