/*
 * typed.c - _shmkit.TypedBase: multiprocessing's Value and Array over
 * shmkit's self-describing typed blocks (shmkit/typed.h).
 *
 * Unlike CPython's, these attach by name from any process at any time,
 * export the buffer protocol with format and shape (numpy.asarray() is a
 * zero-copy view of the right dtype and shape), and offer atomic add and
 * compare-exchange on integer items. The hot paths (.value, items, the
 * embedded lock, atomics) are here; shmkit.Value and shmkit.Array are thin
 * Python subclasses.
 */
#include "ext.h"

#include <errno.h>
#include <string.h>
#include <wchar.h>
#include <structmember.h>

typedef struct TypedObject {
    PyObject_HEAD
    shmkit_array *arr;            /* owned by mapping */
    MappingObject *mapping;       /* NULL until made */
    char *data;
    char typecode;
    int ndim;
    Py_ssize_t itemsize;
    Py_ssize_t length;            /* items */
    Py_ssize_t shape[SHMKIT_ARRAY_MAXDIM];
    Py_ssize_t strides[SHMKIT_ARRAY_MAXDIM];
    char format[8];
    PyObject *lock;               /* lock object, or NULL (lock=False) */
    int track;
    ext_state *st;                /* the module's state, looked up once */
} TypedObject;

/* The lock object, or NULL for none (lock=False stores None). */
static PyObject *lock_of(TypedObject *t)
{
    return (t->lock && t->lock != Py_None) ? t->lock : NULL;
}

static ext_state *typed_state(TypedObject *t)
{
    return t->st ? t->st : ext_state_of_type(Py_TYPE(t));
}

static const char *typed_name(TypedObject *t)
{
    return t->mapping ? PyUnicode_AsUTF8(t->mapping->name) : NULL;
}

static int typed_check(TypedObject *t)
{
    if (!t->mapping) {
        PyErr_SetString(PyExc_ValueError, "typed object is not initialised");
        return -1;
    }
    if (t->mapping->closing) {
        PyErr_SetString(PyExc_ValueError, "typed object is closed");
        return -1;
    }
    return 0;
}

static int is_unsigned(char c)
{
    return c == 'B' || c == 'H' || c == 'I' || c == 'L' || c == 'Q';
}

/* ---- one item --------------------------------------------------------- */

static PyObject *get_at(TypedObject *t, Py_ssize_t i)
{
    const char *p = t->data + i * t->itemsize;

    switch (t->typecode) {
    case 'c': return PyBytes_FromStringAndSize(p, 1);
    case 'u': return PyUnicode_FromOrdinal((int)*(const wchar_t *)p);
    case 'b': return PyLong_FromLong(*(const signed char *)p);
    case 'B': return PyLong_FromLong(*(const unsigned char *)p);
    case 'h': return PyLong_FromLong(*(const short *)p);
    case 'H': return PyLong_FromLong(*(const unsigned short *)p);
    case 'i': return PyLong_FromLong(*(const int *)p);
    case 'I': return PyLong_FromUnsignedLong(*(const unsigned int *)p);
    case 'l': return PyLong_FromLong(*(const long *)p);
    case 'L': return PyLong_FromUnsignedLong(*(const unsigned long *)p);
    case 'q': return PyLong_FromLongLong(*(const long long *)p);
    case 'Q': return PyLong_FromUnsignedLongLong(*(const unsigned long long *)p);
    case 'f': return PyFloat_FromDouble(*(const float *)p);
    case 'd': return PyFloat_FromDouble(*(const double *)p);
    case '?': return PyBool_FromLong(*(const _Bool *)p);
    }
    PyErr_Format(PyExc_TypeError, "unknown type code %c", t->typecode);
    return NULL;
}

/* Integers are stored as ctypes stores them: truncated to the item's width. */
static int set_int(char *p, char c, PyObject *v)
{
    unsigned long long x;

    if (PyLong_CheckExact(v)) {   /* the common case: no __index__ to call */
        x = PyLong_AsUnsignedLongLongMask(v);
    } else {
        if (!PyIndex_Check(v)) {
            PyErr_Format(PyExc_TypeError, "an integer is required, not %.100s",
                         Py_TYPE(v)->tp_name);
            return -1;
        }
        v = PyNumber_Index(v);
        if (!v)
            return -1;
        x = PyLong_AsUnsignedLongLongMask(v);
        Py_DECREF(v);
    }
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    switch (c) {
    case 'b': case 'B': *(unsigned char *)p = (unsigned char)x; break;
    case 'h': case 'H': *(unsigned short *)p = (unsigned short)x; break;
    case 'i': case 'I': *(unsigned int *)p = (unsigned int)x; break;
    case 'l': case 'L': *(unsigned long *)p = (unsigned long)x; break;
    default: *(unsigned long long *)p = x; break;
    }
    return 0;
}

static int set_at(TypedObject *t, Py_ssize_t i, PyObject *v)
{
    char *p = t->data + i * t->itemsize;
    double d;
    int b;

    switch (t->typecode) {
    case 'c':
        if (PyBytes_Check(v) && PyBytes_GET_SIZE(v) == 1) {
            *p = PyBytes_AS_STRING(v)[0];
            return 0;
        }
        if (PyLong_Check(v)) {
            long x = PyLong_AsLong(v);
            if (x < 0 || x > 255) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "byte must be in range(0, 256)");
                return -1;
            }
            *p = (char)x;
            return 0;
        }
        PyErr_SetString(PyExc_TypeError, "one character bytes, bytearray or integer expected");
        return -1;
    case 'u':
        if (PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) == 1) {
            *(wchar_t *)p = (wchar_t)PyUnicode_READ_CHAR(v, 0);
            return 0;
        }
        PyErr_SetString(PyExc_TypeError, "unicode string of length 1 expected");
        return -1;
    case 'f':
    case 'd':
        d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        if (t->typecode == 'f')
            *(float *)p = (float)d;
        else
            *(double *)p = d;
        return 0;
    case '?':
        b = PyObject_IsTrue(v);
        if (b < 0)
            return -1;
        *(_Bool *)p = b;
        return 0;
    default:
        return set_int(p, t->typecode, v);
    }
}

/* ---- construction ------------------------------------------------------ */

static int typed_fill(TypedObject *t, shmkit_array *a)
{
    const size_t *shape = shmkit_array_shape(a);
    const char *fmt = shmkit_typecode_format(shmkit_array_typecode(a));
    PyObject *m;
    int k;

    m = ext_mapping_new(typed_state(t), EXT_MAP_ARRAY, a, shmkit_array_block(a));
    if (!m)
        return -1;
    t->mapping = (MappingObject *)m;
    t->arr = a;
    t->data = shmkit_array_data(a);
    t->typecode = shmkit_array_typecode(a);
    t->ndim = (int)shmkit_array_ndim(a);
    t->itemsize = (Py_ssize_t)shmkit_array_itemsize(a);
    t->length = (Py_ssize_t)shmkit_array_length(a);
    snprintf(t->format, sizeof t->format, "%s", fmt ? fmt : "B");
    for (k = t->ndim - 1; k >= 0; k--) {
        t->shape[k] = (Py_ssize_t)shape[k];
        t->strides[k] = k == t->ndim - 1 ? t->itemsize
                                          : t->strides[k + 1] * t->shape[k + 1];
    }
    return 0;
}

static PyObject *typed_alloc(PyTypeObject *tp, shmkit_array *a, int track)
{
    TypedObject *t = (TypedObject *)tp->tp_alloc(tp, 0);

    if (!t) {
        shmkit_array_close(a);
        return NULL;
    }
    t->st = ext_state_of_type(tp);
    if (typed_fill(t, a) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    t->track = track;
    return (PyObject *)t;
}

PyDoc_STRVAR(create_doc,
"_create(typecode, shape=(), name=None, track=True)\n--\n\n"
"Create a zero-filled typed block (shape () is a Value).");

static PyObject *typed_create(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"typecode", "shape", "name", "track", NULL};
    size_t shape[SHMKIT_ARRAY_MAXDIM];
    PyObject *shapeobj = NULL, *nameobj = Py_None, *fast;
    const char *tc, *name;
    Py_ssize_t ndim, k;
    int track = 1, r;
    shmkit_array *a;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|OOp:_create", kwlist, &tc,
                                     &shapeobj, &nameobj, &track))
        return NULL;
    if (strlen(tc) != 1 || !shmkit_typecode_size(tc[0])) {
        PyErr_Format(PyExc_TypeError, "bad type code %R for a shared Value/Array",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (ext_name_arg(nameobj, &name) < 0)
        return NULL;
    fast = shapeobj ? PySequence_Fast(shapeobj, "shape must be a sequence")
                    : PyTuple_New(0);
    if (!fast)
        return NULL;
    ndim = PySequence_Fast_GET_SIZE(fast);
    if (ndim > SHMKIT_ARRAY_MAXDIM) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "at most %d dimensions", SHMKIT_ARRAY_MAXDIM);
        return NULL;
    }
    for (k = 0; k < ndim; k++) {
        Py_ssize_t e = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(fast, k),
                                          PyExc_OverflowError);
        if (e < 0) {
            Py_DECREF(fast);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "negative dimension");
            return NULL;
        }
        shape[k] = (size_t)e;
    }
    Py_DECREF(fast);
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_array_create(&a, name, tc[0], (unsigned)ndim, shape,
                            track ? SHMKIT_TRACK : 0);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return typed_alloc(tp, a, track);
}

static PyObject *typed_attach(PyTypeObject *tp, PyObject *arg)
{
    const char *name;
    shmkit_array *a;
    int r;

    if (ext_required_name(arg, &name) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    r = shmkit_array_attach(&a, name, 0);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return ext_error(ext_state_of_type(tp), r, name);
    return typed_alloc(tp, a, 0);
}

static PyObject *typed_embedded_lock(TypedObject *t, PyObject *cls)
{
    shmkit_mutex *m;

    if (typed_check(t) < 0)
        return NULL;
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a LockBase subclass is required");
        return NULL;
    }
    m = shmkit_array_lock(t->arr);
    if (!m) {
        PyErr_SetString(PyExc_ValueError, "read-only typed object has no lock");
        return NULL;
    }
    return ext_lock_embedded((PyTypeObject *)cls, (PyObject *)t->mapping, m,
                             t->mapping->name);
}

/* ---- value, raw, items -------------------------------------------------- */

static PyObject *typed_get_value(TypedObject *t, void *c)
{
    if (typed_check(t) < 0)
        return NULL;
    if (t->ndim == 0)
        return get_at(t, 0);
    if (t->typecode == 'c')
        return PyBytes_FromStringAndSize(t->data, (Py_ssize_t)strnlen(t->data, (size_t)t->length));
    if (t->typecode == 'u')
        return PyUnicode_FromWideChar((const wchar_t *)t->data,
                                      (Py_ssize_t)wcsnlen((const wchar_t *)t->data, (size_t)t->length));
    PyErr_SetString(PyExc_AttributeError, "only a Value or a 'c'/'u' Array has .value");
    return NULL;
}

static int typed_set_value(TypedObject *t, PyObject *v, void *c)
{
    Py_ssize_t n;

    if (!v) {
        PyErr_SetString(PyExc_TypeError, "cannot delete value");
        return -1;
    }
    if (typed_check(t) < 0)
        return -1;
    if (t->ndim == 0)
        return set_at(t, 0, v);
    if (t->typecode == 'c') {
        Py_buffer view;
        if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0)
            return -1;
        n = view.len;
        if (n > t->length) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_ValueError, "byte string too long");
            return -1;
        }
        memcpy(t->data, view.buf, (size_t)n);
        if (n < t->length)
            t->data[n] = '\0';
        PyBuffer_Release(&view);
        return 0;
    }
    if (t->typecode == 'u' && PyUnicode_Check(v)) {
        n = PyUnicode_GetLength(v);
        if (n > t->length) {
            PyErr_SetString(PyExc_ValueError, "string too long");
            return -1;
        }
        if (PyUnicode_AsWideChar(v, (wchar_t *)t->data, t->length) < 0)
            return -1;
        return 0;
    }
    PyErr_SetString(PyExc_AttributeError, "only a Value or a 'c'/'u' Array has .value");
    return -1;
}

/*
 * `v.value = x` (and the store of `v.value += 1`) without the generic
 * attribute machinery: CPython does not specialise stores to a C getset,
 * so each went through the type's attribute lookup and the descriptor's
 * type check. A store to "value" goes straight to typed_set_value when
 * the object's type resolves "value" to TypedBase's own descriptor (a
 * subclass may define its own). That is checked once per type and
 * remembered with the type's version tag, which CPython changes whenever
 * the type or one of its bases changes.
 */
static int value_is_ours(ext_state *st, PyTypeObject *tp)
{
    PyObject *mro = tp->tp_mro, *found = NULL;
    Py_ssize_t k;

    if (tp == st->value_fast_type && tp->tp_version_tag == st->value_fast_tag &&
        st->value_fast_tag != 0)
        return 1;
    if (!mro || !PyTuple_Check(mro))
        return 0;
    for (k = 0; k < PyTuple_GET_SIZE(mro) && !found; k++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, k);
        if (base->tp_dict) {
            found = PyDict_GetItemWithError(base->tp_dict, st->str_value);
            if (!found && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
        }
    }
    if (found != st->typed_value_descr)
        return 0;
    if (tp->tp_version_tag != 0) {
        st->value_fast_type = tp;
        st->value_fast_tag = tp->tp_version_tag;
    }
    return 1;
}

static int typed_setattro(PyObject *self, PyObject *name, PyObject *v)
{
    TypedObject *t = (TypedObject *)self;
    ext_state *st = typed_state(t);

    if (name == st->str_value && value_is_ours(st, Py_TYPE(self)))
        return typed_set_value(t, v, NULL);
    return PyObject_GenericSetAttr(self, name, v);
}

static PyObject *typed_get_raw(TypedObject *t, void *c)
{
    if (typed_check(t) < 0)
        return NULL;
    if (t->typecode != 'c') {
        PyErr_SetString(PyExc_AttributeError, "only a 'c' Array has .raw");
        return NULL;
    }
    return PyBytes_FromStringAndSize(t->data, t->length);
}

static int typed_set_raw(TypedObject *t, PyObject *v, void *c)
{
    Py_buffer view;

    if (!v || typed_check(t) < 0) {
        if (!v)
            PyErr_SetString(PyExc_TypeError, "cannot delete raw");
        return -1;
    }
    if (t->typecode != 'c') {
        PyErr_SetString(PyExc_AttributeError, "only a 'c' Array has .raw");
        return -1;
    }
    if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view.len > t->length) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "byte string too long");
        return -1;
    }
    memcpy(t->data, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return 0;
}

static Py_ssize_t typed_length(TypedObject *t)
{
    if (typed_check(t) < 0)
        return -1;
    if (t->ndim == 0) {
        PyErr_SetString(PyExc_TypeError, "a Value has no len()");
        return -1;
    }
    return t->length;
}

static PyObject *typed_item(TypedObject *t, Py_ssize_t i)
{
    if (typed_check(t) < 0)
        return NULL;
    if (t->ndim == 0 || i < 0 || i >= t->length) {
        PyErr_SetString(PyExc_IndexError, "invalid index");
        return NULL;
    }
    return get_at(t, i);
}

static int typed_index(TypedObject *t, PyObject *key, Py_ssize_t *i)
{
    *i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (*i == -1 && PyErr_Occurred())
        return -1;
    if (*i < 0)
        *i += t->length;
    if (*i < 0 || *i >= t->length || t->ndim == 0) {
        PyErr_SetString(PyExc_IndexError, "invalid index");
        return -1;
    }
    return 0;
}

static PyObject *typed_subscript(TypedObject *t, PyObject *key)
{
    Py_ssize_t i, start, stop, step, n, k;
    PyObject *out;

    if (typed_check(t) < 0)
        return NULL;
    if (PyIndex_Check(key)) {
        if (typed_index(t, key, &i) < 0)
            return NULL;
        return get_at(t, i);
    }
    if (!PySlice_Check(key) || t->ndim == 0) {
        PyErr_SetString(PyExc_TypeError, "indices must be integers or slices");
        return NULL;
    }
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    n = PySlice_AdjustIndices(t->length, &start, &stop, step);
    if (t->typecode == 'c') {
        out = PyBytes_FromStringAndSize(NULL, n);
        for (k = 0; out && k < n; k++, start += step)
            PyBytes_AS_STRING(out)[k] = t->data[start];
        return out;
    }
    out = PyList_New(n);
    for (k = 0; out && k < n; k++, start += step) {
        PyObject *v = get_at(t, start);
        if (!v) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, v);
    }
    return out;
}

static int typed_ass_subscript(TypedObject *t, PyObject *key, PyObject *v)
{
    Py_ssize_t i, start, stop, step, n, k;
    PyObject *fast;

    if (!v) {
        PyErr_SetString(PyExc_TypeError, "items cannot be deleted");
        return -1;
    }
    if (typed_check(t) < 0)
        return -1;
    if (PyIndex_Check(key)) {
        if (typed_index(t, key, &i) < 0)
            return -1;
        return set_at(t, i, v);
    }
    if (!PySlice_Check(key) || t->ndim == 0) {
        PyErr_SetString(PyExc_TypeError, "indices must be integers or slices");
        return -1;
    }
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return -1;
    n = PySlice_AdjustIndices(t->length, &start, &stop, step);
    if (t->typecode == 'c' && PyBytes_Check(v)) {
        if (PyBytes_GET_SIZE(v) != n) {
            PyErr_SetString(PyExc_ValueError, "Can only assign sequence of same size");
            return -1;
        }
        for (k = 0; k < n; k++, start += step)
            t->data[start] = PyBytes_AS_STRING(v)[k];
        return 0;
    }
    fast = PySequence_Fast(v, "can only assign a sequence");
    if (!fast)
        return -1;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "Can only assign sequence of same size");
        return -1;
    }
    for (k = 0; k < n; k++, start += step)
        if (set_at(t, start, PySequence_Fast_GET_ITEM(fast, k)) < 0) {
            Py_DECREF(fast);
            return -1;
        }
    Py_DECREF(fast);
    return 0;
}

/* ---- the lock: get_lock, acquire, release, context manager -------------- */

static PyObject *typed_get_lock(TypedObject *t, PyObject *unused)
{
    if (!lock_of(t)) {
        PyErr_SetString(PyExc_AttributeError,
                        "this object was made with lock=False: it has no lock");
        return NULL;
    }
    return Py_NewRef(lock_of(t));
}

static PyObject *typed_get_obj(TypedObject *t, PyObject *unused)
{
    return Py_NewRef((PyObject *)t);
}

static PyObject *typed_do_acquire(TypedObject *t, int block, double timeout)
{
    if (!lock_of(t))
        return typed_get_lock(t, NULL);
    if (!ext_lock_mutex(typed_state(t), t->lock))
        return PyObject_CallMethod(t->lock, "acquire", "Od",
                                   block ? Py_True : Py_False, timeout);
    return ext_lock_acquire(t->lock, block, timeout);
}

static PyObject *typed_acquire(TypedObject *t, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *tobj;
    double timeout = -1.0;
    int block;

    if (ext_acquire_args(args, nargs, kwnames, &block, &tobj) < 0)
        return NULL;
    if (tobj != Py_None) {
        timeout = PyFloat_AsDouble(tobj);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        if (timeout < 0)
            timeout = 0;
    }
    if (lock_of(t) && !ext_lock_mutex(typed_state(t), t->lock)) {
        PyObject *meth = PyObject_GetAttrString(t->lock, "acquire"), *res;
        if (!meth)
            return NULL;
        res = PyObject_Vectorcall(meth, args, (size_t)nargs, kwnames);
        Py_DECREF(meth);
        return res;
    }
    return typed_do_acquire(t, block, timeout);
}

static PyObject *typed_enter(TypedObject *t, PyObject *unused)
{
    if (lock_of(t) && !ext_lock_mutex(typed_state(t), t->lock))
        return PyObject_CallMethod(t->lock, "__enter__", NULL);
    return typed_do_acquire(t, 1, -1.0);
}

static PyObject *typed_release(TypedObject *t, PyObject *unused)
{
    if (!lock_of(t))
        return typed_get_lock(t, NULL);
    if (!ext_lock_mutex(typed_state(t), t->lock))
        return PyObject_CallMethod(t->lock, "release", NULL);
    return ext_lock_release(t->lock);
}

static PyObject *typed_exit(TypedObject *t, PyObject *const *args,
                            Py_ssize_t nargs)
{
    if (lock_of(t) && !ext_lock_mutex(typed_state(t), t->lock))
        return PyObject_CallMethod(t->lock, "__exit__", "OOO", Py_None, Py_None, Py_None);
    return typed_release(t, NULL);
}

/* `with v:` takes v's lock through the lock's own gates (sync.c); a lock
 * that is not a shmkit one, or none (lock=False), gets the plain methods
 * above. */
static PyObject *typed_gate_of(PyObject *obj, int exit)
{
    TypedObject *t = (TypedObject *)obj;
    PyObject *lock = lock_of(t);

    return lock ? ext_lock_gate(typed_state(t), lock, exit) : NULL;
}

static PyMethodDef typed_entry_methods[2] = {
    {"__enter__", (PyCFunction)typed_enter, METH_NOARGS,
     "__enter__()\n--\n\nAcquire the lock."},
    {"__exit__", (PyCFunction)(void (*)(void))typed_exit, METH_FASTCALL,
     "__exit__(*exc_info)\n--\n\nRelease the lock."},
};

/* ---- atomics --------------------------------------------------------- */

static PyObject *atomic_result(TypedObject *t, int64_t v)
{
    if (is_unsigned(t->typecode))
        return PyLong_FromUnsignedLongLong((uint64_t)v);
    return PyLong_FromLongLong(v);
}

static int atomic_arg(PyObject *o, int64_t *out)
{
    unsigned long long x;

    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an integer is required, not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    x = PyLong_AsUnsignedLongLongMask(o);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (int64_t)x;
    return 0;
}

static int atomic_index(TypedObject *t, Py_ssize_t i, size_t *out)
{
    if (typed_check(t) < 0)
        return -1;
    if (i < 0)
        i += t->length;
    if (i < 0 || i >= t->length) {
        PyErr_SetString(PyExc_IndexError, "invalid index");
        return -1;
    }
    *out = (size_t)i;
    return 0;
}

static PyObject *atomic_fail(TypedObject *t, int r)
{
    if (r == SHMKIT_ETYPE) {
        PyErr_Format(PyExc_TypeError, "atomic operations need an integer type, not '%c'",
                     t->typecode);
        return NULL;
    }
    return ext_error(typed_state(t), r, typed_name(t));
}

/* add(delta=1, index=0) and fetch_add(): METH_FASTCALL, since they are
 * meant to be cheap. */
static int parse_delta_index(const char *fn, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames,
                             PyObject **dobj, Py_ssize_t *i)
{
    static const char *const names[2] = {"delta", "index"};
    PyObject *slot[2];

    if (ext_fastcall_args(fn, args, nargs, kwnames, names, 0, slot, 2) < 0)
        return -1;
    *dobj = slot[0];
    *i = 0;
    if (slot[1]) {
        *i = PyNumber_AsSsize_t(slot[1], PyExc_IndexError);
        if (*i == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static PyObject *typed_fetch_add_common(TypedObject *t, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames,
                                        int want_new)
{
    PyObject *dobj;
    Py_ssize_t i;
    int64_t delta = 1, old;
    size_t idx;
    int r;

    if (parse_delta_index(want_new ? "add" : "fetch_add", args, nargs,
                          kwnames, &dobj, &i) < 0)
        return NULL;
    if ((dobj && atomic_arg(dobj, &delta) < 0) || atomic_index(t, i, &idx) < 0)
        return NULL;
    r = shmkit_array_fetch_add(t->arr, idx, delta, &old);
    if (r < 0)
        return atomic_fail(t, r);
    if (!want_new)
        return atomic_result(t, old);
    /* The new value at the item's width: re-reading the item would race
     * with other writers, so compute it and truncate as the store did. */
    {
        int64_t nv = (int64_t)((uint64_t)old + (uint64_t)delta);
        int bits = (int)t->itemsize * 8;
        if (bits < 64) {
            uint64_t mask = ((uint64_t)1 << bits) - 1;
            uint64_t u = (uint64_t)nv & mask;
            if (!is_unsigned(t->typecode) && (u >> (bits - 1)))
                u |= ~mask;
            nv = (int64_t)u;
        }
        return atomic_result(t, nv);
    }
}

PyDoc_STRVAR(add_doc,
"add(delta=1, index=0)\n--\n\n"
"Atomically add delta to the integer item and return the new value\n"
"(wrapping at the item's width). Lock-free; does not take the lock.");

static PyObject *typed_add(TypedObject *t, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
    return typed_fetch_add_common(t, args, nargs, kwnames, 1);
}

PyDoc_STRVAR(fetch_add_doc,
"fetch_add(delta=1, index=0)\n--\n\n"
"Atomically add delta to the integer item; return the value before.");

static PyObject *typed_fetch_add(TypedObject *t, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *kwnames)
{
    return typed_fetch_add_common(t, args, nargs, kwnames, 0);
}

PyDoc_STRVAR(cas_doc,
"compare_exchange(expected, desired, index=0)\n--\n\n"
"Atomically: if the integer item equals expected, store desired. Returns\n"
"(True, expected) on success, (False, current value) otherwise.");

static PyObject *typed_compare_exchange(TypedObject *t, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"expected", "desired", "index", NULL};
    PyObject *eobj, *dobj, *cur;
    Py_ssize_t i = 0;
    int64_t expected, desired;
    size_t idx;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|n:compare_exchange", kwlist,
                                     &eobj, &dobj, &i))
        return NULL;
    if (atomic_arg(eobj, &expected) < 0 || atomic_arg(dobj, &desired) < 0 ||
        atomic_index(t, i, &idx) < 0)
        return NULL;
    r = shmkit_array_compare_exchange(t->arr, idx, &expected, desired);
    if (r < 0)
        return atomic_fail(t, r);
    cur = r ? Py_NewRef(eobj) : atomic_result(t, expected);
    if (!cur)
        return NULL;
    return Py_BuildValue("(ON)", r ? Py_True : Py_False, cur);
}

static PyObject *typed_load(TypedObject *t, PyObject *args)
{
    Py_ssize_t i = 0;
    int64_t v;
    size_t idx;
    int r;

    if (!PyArg_ParseTuple(args, "|n:load", &i) || atomic_index(t, i, &idx) < 0)
        return NULL;
    r = shmkit_array_load(t->arr, idx, &v);
    if (r < 0)
        return atomic_fail(t, r);
    return atomic_result(t, v);
}

static PyObject *typed_store(TypedObject *t, PyObject *args)
{
    PyObject *vobj;
    Py_ssize_t i = 0;
    int64_t v;
    size_t idx;
    int r;

    if (!PyArg_ParseTuple(args, "O|n:store", &vobj, &i) || atomic_arg(vobj, &v) < 0 ||
        atomic_index(t, i, &idx) < 0)
        return NULL;
    r = shmkit_array_store(t->arr, idx, v);
    if (r < 0)
        return atomic_fail(t, r);
    Py_RETURN_NONE;
}

/* ---- buffer protocol --------------------------------------------------- */

static int typed_getbuffer(TypedObject *t, Py_buffer *view, int flags)
{
    if (typed_check(t) < 0)
        return -1;
    if ((flags & PyBUF_WRITABLE) && t->mapping->readonly) {
        PyErr_SetString(PyExc_BufferError, "read-only typed object");
        return -1;
    }
    view->obj = Py_NewRef((PyObject *)t);
    view->buf = t->data;
    view->len = t->length * t->itemsize;
    view->readonly = t->mapping->readonly;
    view->itemsize = t->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? t->format : NULL;
    view->ndim = t->ndim;
    view->shape = (flags & PyBUF_ND) && t->ndim ? t->shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES && t->ndim ? t->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    if (!(flags & PyBUF_ND)) {
        /* A simple byte buffer is asked for: the data as bytes. */
        view->ndim = 1;
        view->itemsize = 1;
    }
    t->mapping->exports++;
    return 0;
}

static void typed_releasebuffer(TypedObject *t, Py_buffer *view)
{
    t->mapping->exports--;
}

/* ---- the rest ---------------------------------------------------------- */

static PyObject *typed_unlink(TypedObject *t, PyObject *unused)
{
    int r;

    if (!t->mapping) {
        PyErr_SetString(PyExc_ValueError, "typed object is not initialised");
        return NULL;
    }
    r = shmkit_unlink(typed_name(t));
    if (r < 0)
        return ext_error(typed_state(t), r, typed_name(t));
    Py_RETURN_NONE;
}

static PyObject *typed_close(TypedObject *t, PyObject *unused)
{
    if (t->mapping)
        t->mapping->closing = 1;
    Py_RETURN_NONE;
}

static PyObject *typed_get_name(TypedObject *t, void *c)
{
    if (!t->mapping)
        Py_RETURN_NONE;
    return Py_NewRef(t->mapping->name);
}

static PyObject *typed_get_typecode(TypedObject *t, void *c)
{
    return PyUnicode_FromStringAndSize(&t->typecode, 1);
}

static PyObject *typed_get_shape(TypedObject *t, void *c)
{
    PyObject *out = PyTuple_New(t->ndim);
    int k;

    for (k = 0; out && k < t->ndim; k++)
        PyTuple_SET_ITEM(out, k, PyLong_FromSsize_t(t->shape[k]));
    return out;
}

static PyObject *typed_get_nbytes(TypedObject *t, void *c)
{
    return PyLong_FromSsize_t(t->length * t->itemsize);
}

static int typed_traverse(TypedObject *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->mapping);
    Py_VISIT(t->lock);
    return 0;
}

static int typed_clear(TypedObject *t)
{
    Py_CLEAR(t->lock);
    Py_CLEAR(t->mapping);
    t->arr = NULL;
    return 0;
}

static void typed_dealloc(TypedObject *t)
{
    PyTypeObject *tp = Py_TYPE(t);

    PyObject_GC_UnTrack(t);
    typed_clear(t);
    tp->tp_free(t);
    Py_DECREF(tp);
}

static PyObject *typed_init_subclass(PyTypeObject *cls, PyObject *args, PyObject *kw);

static PyMethodDef typed_methods[] = {
    {"_create", (PyCFunction)(void (*)(void))typed_create,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, create_doc},
    {"_attach", (PyCFunction)typed_attach, METH_O | METH_CLASS, NULL},
    {"_embedded_lock", (PyCFunction)typed_embedded_lock, METH_O, NULL},
    {"get_lock", (PyCFunction)typed_get_lock, METH_NOARGS,
     "get_lock()\n--\n\nThe lock that protects this object."},
    {"get_obj", (PyCFunction)typed_get_obj, METH_NOARGS,
     "get_obj()\n--\n\nThe object itself (multiprocessing compatibility)."},
    {"acquire", (PyCFunction)(void (*)(void))typed_acquire,
     METH_FASTCALL | METH_KEYWORDS, "acquire(block=True, timeout=None)\n--\n\nAcquire the lock."},
    {"release", (PyCFunction)typed_release, METH_NOARGS, "release()\n--\n\nRelease the lock."},
    {"add", (PyCFunction)(void (*)(void))typed_add, METH_FASTCALL | METH_KEYWORDS, add_doc},
    {"fetch_add", (PyCFunction)(void (*)(void))typed_fetch_add,
     METH_FASTCALL | METH_KEYWORDS, fetch_add_doc},
    {"compare_exchange", (PyCFunction)(void (*)(void))typed_compare_exchange,
     METH_VARARGS | METH_KEYWORDS, cas_doc},
    {"load", (PyCFunction)typed_load, METH_VARARGS,
     "load(index=0)\n--\n\nAtomically read the integer item."},
    {"store", (PyCFunction)typed_store, METH_VARARGS,
     "store(value, index=0)\n--\n\nAtomically write the integer item."},
    {"unlink", (PyCFunction)typed_unlink, METH_NOARGS,
     "unlink()\n--\n\nRemove the block's name."},
    {"close", (PyCFunction)typed_close, METH_NOARGS,
     "close()\n--\n\nClose this handle (unmapped when no buffer uses it)."},
    {"__init_subclass__", (PyCFunction)(void (*)(void))typed_init_subclass,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL}
};

/* Subclasses (Value, Array, ...) get these methods bound to themselves,
 * so that CPython specialises their calls (sync.c: ext_bind_methods). */
static PyObject *typed_init_subclass(PyTypeObject *cls, PyObject *args, PyObject *kw)
{
    return ext_init_subclass(offsetof(ext_state, typed_type), cls, args, kw,
                             typed_methods);
}

static PyMemberDef typed_members[] = {
    {"_lock", T_OBJECT, offsetof(TypedObject, lock), 0, NULL},
    {"_mapping", T_OBJECT, offsetof(TypedObject, mapping), READONLY, NULL},
    {"_track", T_INT, offsetof(TypedObject, track), READONLY, NULL},
    {"ndim", T_INT, offsetof(TypedObject, ndim), READONLY, "number of dimensions"},
    {"itemsize", T_PYSSIZET, offsetof(TypedObject, itemsize), READONLY, "bytes per item"},
    {NULL, 0, 0, 0, NULL}
};

static PyGetSetDef typed_getset[] = {
    {"value", (getter)typed_get_value, (setter)typed_set_value,
     "the value (a Value), or the string of a 'c'/'u' Array", NULL},
    {"raw", (getter)typed_get_raw, (setter)typed_set_raw, "all bytes of a 'c' Array", NULL},
    {"name", (getter)typed_get_name, NULL, "name of the block", NULL},
    {"typecode", (getter)typed_get_typecode, NULL, "the type code", NULL},
    {"shape", (getter)typed_get_shape, NULL, "the shape (() for a Value)", NULL},
    {"nbytes", (getter)typed_get_nbytes, NULL, "bytes of data", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot typed_slots[] = {
    {Py_tp_dealloc, typed_dealloc},
    {Py_tp_traverse, typed_traverse},
    {Py_tp_clear, typed_clear},
    {Py_tp_methods, typed_methods},
    {Py_tp_members, typed_members},
    {Py_tp_getset, typed_getset},
    {Py_tp_setattro, typed_setattro},
    {Py_sq_length, typed_length},
    {Py_sq_item, typed_item},
    {Py_mp_length, typed_length},
    {Py_mp_subscript, typed_subscript},
    {Py_mp_ass_subscript, typed_ass_subscript},
    {Py_bf_getbuffer, typed_getbuffer},
    {Py_bf_releasebuffer, typed_releasebuffer},
    {Py_tp_doc, (void *)"C core of shmkit.Value and shmkit.Array."},
    {0, NULL}
};

static PyType_Spec typed_spec = {
    .name = "shmkit._shmkit.TypedBase",
    .basicsize = sizeof(TypedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = typed_slots,
};

int ext_typed_init_type(PyObject *m, ext_state *st)
{
    st->typed_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &typed_spec, NULL);
    if (!st->typed_type)
        return -1;
    st->str_value = PyUnicode_InternFromString("value");
    if (!st->str_value)
        return -1;
    st->typed_value_descr = PyDict_GetItemWithError(st->typed_type->tp_dict, st->str_value);
    if (!st->typed_value_descr) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "TypedBase has no 'value'");
        return -1;
    }
    Py_INCREF(st->typed_value_descr);
    if (ext_add_entries(st, st->typed_type, typed_entry_methods, typed_gate_of) < 0)
        return -1;
    return PyModule_AddType(m, st->typed_type);
}
