/*
 * list.c - _shmkit.ShareableListBase: CPython's ShareableList over the C
 * list API (shmkit/list.h), byte for byte CPython's layout.
 *
 * The hot paths (item get and set, len, count, index, format) are here; the
 * Python subclass shmkit.ShareableList adds what is not hot (shm, repr,
 * pickling). The list handle belongs to a Mapping (kind EXT_MAP_LIST), which
 * is also what `shm` wraps, so shm.close() closes the list for this process
 * and the memory stays mapped while anything still uses it.
 */
#include "ext.h"

#include <errno.h>
#include <structmember.h>

typedef struct ListObject {
    PyObject_HEAD
    shmkit_list *list;        /* owned by mapping */
    MappingObject *mapping;   /* NULL until __init__ succeeded */
    Py_ssize_t len;
    int track;
    ext_state *st;            /* the module's state, looked up once */
    PyObject *shm;            /* the subclass's SharedMemory, made on first
                                 use (None until then: no exception to
                                 raise and catch on the attach path) */
} ListObject;

/* The list, or NULL with ValueError when it is not (or no longer) open. */
static shmkit_list *list_of(ListObject *self)
{
    if (!self->mapping) {
        PyErr_SetString(PyExc_ValueError, "ShareableList is not initialised");
        return NULL;
    }
    if (self->mapping->closing) {
        PyErr_SetString(PyExc_ValueError,
                        "ShareableList's shared memory is closed");
        return NULL;
    }
    return self->list;
}

/* An int beyond 64 bits: CPython's struct.pack_into raises struct.error;
 * ours is also an OverflowError. */
static int int_range_error(ext_state *st)
{
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        PyErr_SetString(st->ItemRangeError, "argument out of range");
    }
    return -1;
}

/* Converts a Python value to an item. The item may point into `v` (str,
 * bytes): keep v alive while the item is used. Returns 0, or -1 with
 * ItemTypeError (unsupported type: a TypeError and, as CPython raises, a
 * KeyError) or ItemRangeError (int beyond 64 bits). */
static int item_from_object(ext_state *st, PyObject *v, shmkit_item *it)
{
    if (PyLong_CheckExact(v)) {         /* the common case first */
        long long x = PyLong_AsLongLong(v);
        if (x == -1 && PyErr_Occurred())
            return int_range_error(st);
        *it = shmkit_item_int(x);
    } else if (PyFloat_CheckExact(v)) {
        *it = shmkit_item_float(PyFloat_AS_DOUBLE(v));
    } else if (v == Py_None) {
        *it = shmkit_item_none();
    } else if (PyBool_Check(v)) {
        *it = shmkit_item_bool(v == Py_True);
    } else if (PyLong_Check(v)) {
        long long x = PyLong_AsLongLong(v);
        if (x == -1 && PyErr_Occurred())
            return int_range_error(st);
        *it = shmkit_item_int(x);
    } else if (PyFloat_Check(v)) {
        *it = shmkit_item_float(PyFloat_AS_DOUBLE(v));
    } else if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(v, &n);
        if (!p)
            return -1;
        *it = shmkit_item_strn(p, (size_t)n);
    } else if (PyBytes_Check(v)) {
        *it = shmkit_item_bytes(PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
    } else if (PyIndex_Check(v)) {
        /* NumPy integers and other integer-likes are stored as int. */
        PyObject *i = PyNumber_Index(v);
        long long x;
        if (!i)
            return -1;
        x = PyLong_AsLongLong(i);
        Py_DECREF(i);
        if (x == -1 && PyErr_Occurred())
            return int_range_error(st);
        *it = shmkit_item_int(x);
    } else {
        PyErr_Format(st->ItemTypeError,
                     "ShareableList items must be int, float, bool, str, "
                     "bytes or None, not %.100s", Py_TYPE(v)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *item_to_object(const shmkit_item *it)
{
    switch (it->type) {
    case SHMKIT_NONE:
        Py_RETURN_NONE;
    case SHMKIT_INT:
        return PyLong_FromLongLong(it->v.i);
    case SHMKIT_FLOAT:
        return PyFloat_FromDouble(it->v.f);
    case SHMKIT_BOOL:
        return PyBool_FromLong(it->v.b);
    case SHMKIT_STR:
        return PyUnicode_DecodeUTF8(it->v.s.ptr, (Py_ssize_t)it->v.s.len, "strict");
    case SHMKIT_BYTES:
        return PyBytes_FromStringAndSize(it->v.s.ptr, (Py_ssize_t)it->v.s.len);
    }
    PyErr_SetString(PyExc_ValueError, "ShareableList item of unknown type");
    return NULL;
}

static ext_state *list_state(ListObject *self)
{
    if (!self->st)
        self->st = ext_state_of_type(Py_TYPE(self));
    return self->st;
}

static const char *list_name(ListObject *self)
{
    return self->mapping ? PyUnicode_AsUTF8(self->mapping->name) : NULL;
}

/* Reads item i (negative from the end) as a Python object. */
static PyObject *list_get(ListObject *self, Py_ssize_t i)
{
    shmkit_list *l = list_of(self);
    shmkit_item it;
    int r;

    if (!l)
        return NULL;
    r = shmkit_list_get(l, i, &it);
    if (r < 0) {
        if (r == SHMKIT_EINDEX) {
            PyErr_SetString(PyExc_IndexError, "index out of range");
            return NULL;
        }
        return ext_error(list_state(self), r, list_name(self));
    }
    return item_to_object(&it);
}

static int list_set(ListObject *self, Py_ssize_t i, PyObject *v)
{
    shmkit_list *l = list_of(self);
    shmkit_item it;
    int r;

    if (!l)
        return -1;
    if (item_from_object(list_state(self), v, &it) < 0)
        return -1;
    r = shmkit_list_set(l, i, &it);
    if (r == 0)
        return 0;
    if (r == SHMKIT_EINDEX)
        PyErr_SetString(PyExc_IndexError, "assignment index out of range");
    else if (r == SHMKIT_ESTORAGE)
        PyErr_Format(PyExc_ValueError,
                     "exceeds available storage for existing %s",
                     it.type == SHMKIT_STR ? "str" : "bytes");
    else
        ext_error(list_state(self), r, list_name(self));
    return -1;
}

static Py_ssize_t list_length(ListObject *self)
{
    if (!list_of(self))
        return -1;
    return self->len;
}

static PyObject *list_item(ListObject *self, Py_ssize_t i)
{
    /* sq_item: CPython already added len to a negative index. */
    if (i < 0 || i >= self->len) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return list_get(self, i);
}

static PyObject *list_slice(ListObject *self, PyObject *key)
{
    Py_ssize_t start, stop, step, n, k;
    PyObject *out;

    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    n = PySlice_AdjustIndices(self->len, &start, &stop, step);
    out = PyList_New(n);
    if (!out)
        return NULL;
    for (k = 0; k < n; k++, start += step) {
        PyObject *v = list_get(self, start);
        if (!v) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, v);
    }
    return out;
}

static PyObject *list_subscript(ListObject *self, PyObject *key)
{
    Py_ssize_t i;

    if (PyIndex_Check(key)) {
        i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_IndexError))
                PyErr_SetString(PyExc_IndexError, "index out of range");
            return NULL;
        }
        return list_get(self, i);
    }
    if (PySlice_Check(key))
        return list_slice(self, key);
    PyErr_Format(PyExc_TypeError,
                 "ShareableList indices must be integers or slices, not %.100s",
                 Py_TYPE(key)->tp_name);
    return NULL;
}

static int list_ass_subscript(ListObject *self, PyObject *key, PyObject *v)
{
    Py_ssize_t i;

    if (!v) {
        PyErr_SetString(PyExc_TypeError,
                        "ShareableList items cannot be deleted");
        return -1;
    }
    if (!PyIndex_Check(key)) {
        PyErr_Format(PyExc_TypeError,
                     "ShareableList indices must be integers, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_IndexError))
            PyErr_SetString(PyExc_IndexError, "assignment index out of range");
        return -1;
    }
    return list_set(self, i, v);
}

/* The items of range r, computed without making an int object for each:
 * 1 if done, 0 if some item does not fit 64 bits (then the generic path
 * raises for the first that does not, as CPython would), -1 on error. */
static int items_of_range(PyObject *r, Py_ssize_t *n_out, shmkit_item **items)
{
    PyObject *o;
    long long start, step, last;
    Py_ssize_t n, i;
    int overflow;

    n = PyObject_Length(r);         /* OverflowError beyond Py_ssize_t */
    if (n < 0)
        return -1;
    o = PyObject_GetAttrString(r, "start");
    if (!o)
        return -1;
    start = PyLong_AsLongLongAndOverflow(o, &overflow);
    Py_DECREF(o);
    if (overflow)
        return 0;
    o = PyObject_GetAttrString(r, "step");
    if (!o)
        return -1;
    step = PyLong_AsLongLongAndOverflow(o, &overflow);
    Py_DECREF(o);
    if (overflow || PyErr_Occurred())
        return PyErr_Occurred() ? -1 : 0;
    if (n > 0 && (__builtin_mul_overflow((long long)(n - 1), step, &last) ||
                  __builtin_add_overflow(start, last, &last)))
        return 0;
    *items = PyMem_New(shmkit_item, n ? n : 1);
    if (!*items) {
        PyErr_NoMemory();
        return -1;
    }
    /* start + i * step stays between start and last: no overflow */
    for (i = 0; i < n; i++)
        (*items)[i] = shmkit_item_int(start + (long long)i * step);
    *n_out = n;
    return 1;
}

Py_ssize_t ext_items_of_sequence(ext_state *st, PyObject *seq,
                                 PyObject **keep, shmkit_item **items)
{
    Py_ssize_t n, i;
    int r;

    *items = NULL;
    *keep = NULL;
    if (PyRange_Check(seq)) {
        r = items_of_range(seq, &n, items);
        if (r != 0)
            return r < 0 ? -1 : n;
    }
    /* A tuple cannot change while the GIL is released; copy anything else. */
    *keep = PyTuple_Check(seq) ? Py_NewRef(seq) : PySequence_Tuple(seq);
    if (!*keep)
        return -1;
    n = PyTuple_GET_SIZE(*keep);
    *items = PyMem_New(shmkit_item, n ? n : 1);
    if (!*items) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++)
        if (item_from_object(st, PyTuple_GET_ITEM(*keep, i), &(*items)[i]) < 0)
            return -1;
    return n;
}

static int list_create(ListObject *self, PyObject *seq, const char *name,
                       unsigned flags, shmkit_list **out)
{
    PyObject *keep = NULL;
    shmkit_item *items = NULL;
    Py_ssize_t n;
    int r = 0;

    n = seq == Py_None ? 0
                       : ext_items_of_sequence(list_state(self), seq, &keep, &items);
    if (n >= 0) {
        Py_BEGIN_ALLOW_THREADS
        r = shmkit_list_create(out, name, items, (size_t)n, flags);
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(items);
    Py_XDECREF(keep);
    if (n < 0)
        return -1;
    if (r == SHMKIT_ESTORAGE) {
        PyErr_SetString(PyExc_ValueError,
                        "a str or bytes item exceeds available storage");
        return -1;
    }
    if (r < 0) {
        ext_error(list_state(self), r, name);
        return -1;
    }
    return 0;
}

static int list_init(ListObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"sequence", "name", "track", NULL};
    PyObject *seq = Py_None, *nameobj = Py_None, *given, *m;
    const char *name;
    int track = 1, r;
    shmkit_list *l;

    /* The common calls, ShareableList(seq) and ShareableList(name=...),
     * [with seq], skip the general parser (a third of an attach's Python
     * time). */
    if (PyTuple_GET_SIZE(args) <= 1 && kw && PyDict_GET_SIZE(kw) == 1 &&
        (given = PyDict_GetItemWithError(kw, ext_str_name()))) {
        nameobj = given;
        if (PyTuple_GET_SIZE(args) == 1)
            seq = PyTuple_GET_ITEM(args, 0);
    } else if (PyErr_Occurred() ||
               !PyArg_ParseTupleAndKeywords(args, kw, "|O$Op:ShareableList",
                                            kwlist, &seq, &nameobj, &track))
        return -1;
    if (self->mapping) {
        PyErr_SetString(PyExc_RuntimeError, "ShareableList already initialised");
        return -1;
    }
    if (ext_name_arg(nameobj, &name) < 0)
        return -1;
    if (!name || seq != Py_None) {
        if (list_create(self, seq, name, track ? SHMKIT_TRACK : 0, &l) < 0)
            return -1;
    } else {
        track = 0;
        Py_BEGIN_ALLOW_THREADS
        r = shmkit_list_attach(&l, name, 0);
        Py_END_ALLOW_THREADS
        if (r < 0) {
            ext_error(list_state(self), r, name);
            return -1;
        }
    }
    m = ext_mapping_new(list_state(self), EXT_MAP_LIST, l, shmkit_list_block(l));
    if (!m)
        return -1;
    self->mapping = (MappingObject *)m;
    self->list = l;
    self->len = (Py_ssize_t)shmkit_list_len(l);
    self->track = track;
    return 0;
}

/* Python's `value == item` over the list, for values that are no item. */
static PyObject *list_scan(ListObject *self, PyObject *value, int first)
{
    Py_ssize_t i, count = 0;

    for (i = 0; i < self->len; i++) {
        PyObject *v = list_get(self, i);
        int eq;
        if (!v)
            return NULL;
        eq = PyObject_RichCompareBool(value, v, Py_EQ);
        Py_DECREF(v);
        if (eq < 0)
            return NULL;
        if (eq && first)
            return PyLong_FromSsize_t(i);
        count += eq;
    }
    if (first) {
        PyErr_Format(PyExc_ValueError, "%R not in this container", value);
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* True if count/index can search for `value` in C, as the item *it. A
 * value no item can hold, or an int subclass (which may define its own
 * ==), is compared in Python instead (list_scan). */
static bool item_for_search(ListObject *self, PyObject *value, shmkit_item *it)
{
    if (item_from_object(list_state(self), value, it) < 0) {
        PyErr_Clear();
        return false;
    }
    return !(PyLong_Check(value) && !PyBool_Check(value) &&
             !PyLong_CheckExact(value));
}

PyDoc_STRVAR(count_doc,
"count(value)\n--\n\nReturn the number of occurrences of value.");

static PyObject *list_count(ListObject *self, PyObject *value)
{
    shmkit_list *l = list_of(self);
    shmkit_item it;
    size_t count;
    int r;

    if (!l)
        return NULL;
    if (!item_for_search(self, value, &it))
        return list_scan(self, value, 0);
    r = shmkit_list_count(l, &it, &count);
    if (r < 0)
        return ext_error(list_state(self), r, list_name(self));
    return PyLong_FromSize_t(count);
}

PyDoc_STRVAR(index_doc,
"index(value)\n--\n\n"
"Return first index position of value. Raise ValueError if not present.");

static PyObject *list_index(ListObject *self, PyObject *value)
{
    shmkit_list *l = list_of(self);
    shmkit_item it;
    size_t idx;
    int r;

    if (!l)
        return NULL;
    if (!item_for_search(self, value, &it))
        return list_scan(self, value, 1);
    r = shmkit_list_index(l, &it, &idx);
    if (r == SHMKIT_ENOTFOUND) {
        PyErr_Format(PyExc_ValueError, "%R not in this container", value);
        return NULL;
    }
    if (r < 0)
        return ext_error(list_state(self), r, list_name(self));
    return PyLong_FromSize_t(idx);
}

/* The SharedMemory over this list's block, made on first use: what
 * SharedMemory._from_mapping(mapping, track) makes, in C (the class is
 * the subclass's _shm_class). The Python it replaces cost about a tenth
 * of an attach. */
static PyObject *list_get_shm(ListObject *self, void *c)
{
    if (self->shm)
        return Py_NewRef(self->shm);
    if (!self->mapping) {
        PyErr_SetString(PyExc_ValueError, "ShareableList is not initialised");
        return NULL;
    }
    self->shm = ext_shm_over(Py_TYPE(self), (PyObject *)self->mapping,
                             self->track);
    return Py_XNewRef(self->shm);
}

static PyObject *list_format(ListObject *self, void *c)
{
    shmkit_list *l = list_of(self);
    size_t size, len = 0;
    PyObject *out;
    char *buf;
    int r;

    if (!l)
        return NULL;
    size = 8 * (size_t)self->len + 1;
    buf = PyMem_Malloc(size);
    if (!buf)
        return PyErr_NoMemory();
    r = shmkit_list_format(l, buf, size, &len);
    out = r < 0 ? ext_error(list_state(self), r, list_name(self))
                : PyUnicode_FromStringAndSize(buf, (Py_ssize_t)len);
    PyMem_Free(buf);
    return out;
}

PyDoc_STRVAR(lock_doc,
"_lock()\n--\n\n"
"Take the list's process-shared lock (block '<name>.lock'); returns True\n"
"if its previous holder died holding it: re-set what it was writing, then\n"
"call _consistent() before _unlock(), or the lock is not recoverable.");

static PyObject *list_lock(ListObject *self, PyObject *unused)
{
    shmkit_list *l = list_of(self);
    int r;

    if (!l)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_list_lock(l);
    Py_END_ALLOW_THREADS
    if (r == SHMKIT_EOWNERDEAD)
        Py_RETURN_TRUE;
    if (r < 0)
        return ext_error(list_state(self), r, list_name(self));
    Py_RETURN_FALSE;
}

static PyObject *list_consistent(ListObject *self, PyObject *unused)
{
    shmkit_list *l = list_of(self);
    int r;

    if (!l)
        return NULL;
    r = shmkit_list_consistent(l);
    if (r < 0)
        return ext_error(list_state(self), r, list_name(self));
    Py_RETURN_NONE;
}

static PyObject *list_unlock(ListObject *self, PyObject *unused)
{
    shmkit_list *l = list_of(self);
    int r;

    if (!l)
        return NULL;
    r = shmkit_list_unlock(l);
    if (r < 0)
        return ext_error(list_state(self), r, list_name(self));
    Py_RETURN_NONE;
}

static int list_traverse(ListObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->mapping);
    Py_VISIT(self->shm);
    return 0;
}

static int list_clear(ListObject *self)
{
    self->list = NULL;
    Py_CLEAR(self->mapping);
    Py_CLEAR(self->shm);
    return 0;
}

static void list_dealloc(ListObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    list_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef list_methods[] = {
    {"count", (PyCFunction)list_count, METH_O, count_doc},
    {"index", (PyCFunction)list_index, METH_O, index_doc},
    {"_lock", (PyCFunction)list_lock, METH_NOARGS, lock_doc},
    {"_unlock", (PyCFunction)list_unlock, METH_NOARGS, NULL},
    {"_consistent", (PyCFunction)list_consistent, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef list_members[] = {
    {"_mapping", T_OBJECT, offsetof(ListObject, mapping), READONLY, NULL},
    {"_track", T_INT, offsetof(ListObject, track), READONLY, NULL},
    {"_shm", T_OBJECT, offsetof(ListObject, shm), 0, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyGetSetDef list_getset[] = {
    {"format", (getter)list_format, NULL,
     "The struct packing format used by all currently stored items.", NULL},
    {"shm", (getter)list_get_shm, NULL,
     "The SharedMemory instance where the values are stored.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot list_slots[] = {
    {Py_tp_init, list_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, list_dealloc},
    {Py_tp_traverse, list_traverse},
    {Py_tp_clear, list_clear},
    {Py_tp_methods, list_methods},
    {Py_tp_members, list_members},
    {Py_tp_getset, list_getset},
    {Py_sq_length, list_length},
    {Py_sq_item, list_item},
    {Py_mp_length, list_length},
    {Py_mp_subscript, list_subscript},
    {Py_mp_ass_subscript, list_ass_subscript},
    {Py_tp_doc, (void *)"C core of shmkit.ShareableList."},
    {0, NULL}
};

static PyType_Spec list_spec = {
    .name = "shmkit._shmkit.ShareableListBase",
    .basicsize = sizeof(ListObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = list_slots,
};

int ext_list_init_type(PyObject *m, ext_state *st)
{
    st->list_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &list_spec, NULL);
    if (!st->list_type)
        return -1;
    return PyModule_AddType(m, st->list_type);
}
