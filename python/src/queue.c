/*
 * queue.c - _shmkit.QueueBase and _shmkit.QueueSlot over shmkit_queue
 * (shmkit/queue.h); shmkit.Queue, SimpleQueue and JoinableQueue are thin
 * Python classes above them (python/shmkit/queues.py).
 *
 * put writes one of two kinds of message, told apart by their first 4
 * bytes: a plain value (magic "SKV1", the codec below), or a frame: a
 * 16-byte-aligned header (magic "SKP5", part count, each part's length)
 * and then each part at a 16-byte boundary: part 0 is a pickle (protocol
 * 5), the rest its out-of-band buffers, copied straight from the object's
 * memory into the ring. get and get_many decode every message that starts
 * with "SKV1" or "SKP5" and is well formed, whoever put it (a C producer,
 * the CLI, put_bytes, loan); any other message (not starting with either
 * magic, or malformed) comes back as bytes. So a C producer whose
 * messages must reach Python as bytes must not start one with "SKV1" or
 * "SKP5" (or the consumer reads them raw with peek). A consumer built
 * before the plain codec gets plain values as bytes (SKV1 messages).
 *
 * A message taken by get is read in place in the ring, where a peer may
 * change any byte at any time: every byte is read once and each check and
 * its use take the same copy (frame_parts, dec_value), never the ring
 * again.
 *
 * Blocking calls release the GIL, make the handle interruptible, and on
 * EINTR run the signal handlers (Ctrl-C raises KeyboardInterrupt) before
 * waiting again for the same deadline. close() wakes this object's
 * waiters (shmkit_queue_shutdown) and frees the handle once the last call
 * in progress and the last slot are done.
 */
#include "ext.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define FRAME_MAGIC 0x35504b53u /* "SKP5" */
#define FRAME_MAX_PARTS 4096
#define SCRATCH_MIN (256 * 1024)
#define SCRATCH_MAX (4 * 1024 * 1024)
#define ENCBUF_MAX (1024 * 1024) /* put_many keeps a buffer up to this */

typedef struct QueueObject {
    PyObject_HEAD
    shmkit_queue *q;
    PyObject *name;      /* str */
    int closed;          /* close() was called: no more records */
    int left;            /* closed, and the liveness slot given back */
    int put_called;      /* a put, put_many or reserve was called */
    Py_ssize_t busy;     /* record calls without the GIL, live slots */
    unsigned char *scratch; /* get_many's buffer (PyMem), NULL while used */
    size_t scratch_len;
    unsigned char *encbuf; /* put_many's (PyMem), NULL while used */
    size_t encbuf_len;
    PyObject *dumps;     /* obj -> frame parts, for what is not plain */
    PyObject *loads;     /* frame parts -> obj */
    PyObject *empty;     /* queue.Empty, raised by get */
    PyObject *full;      /* queue.Full, raised by put */
    PyObject *pend_objs; /* what a failed get_many left (see pending_take) */
    PyObject *pend_raw;
    pid_t pend_pid;
    int get_lend;        /* get lends: the last message was too big to copy */
    ext_state *st;
} QueueObject;

typedef struct SlotObject {
    PyObject_HEAD
    QueueObject *queue;  /* strong reference while open */
    unsigned char *ptr;
    Py_ssize_t len;
    int writable;        /* a reservation (else a loan) */
    int done;            /* committed, cancelled or released */
    Py_ssize_t exports;
} SlotObject;

/* ---- helpers ------------------------------------------------------------ */

static inline size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static const char *qname(QueueObject *self)
{
    return self->name ? PyUnicode_AsUTF8(self->name) : NULL;
}

/* For the calls that make records (put, get, reserve, peek...): none
 * once closed. */
static int check_open(QueueObject *self)
{
    if (!self->q || self->closed) {
        PyErr_SetString(PyExc_ValueError, "Queue is closed");
        return -1;
    }
    return 0;
}

/* check_open for the calls that put. CPython's close() takes effect once
 * a put has started the feeder thread; before, empty() still answers
 * (see queues.py: empty). */
static int check_open_put(QueueObject *self)
{
    if (check_open(self) < 0)
        return -1;
    self->put_called = 1;
    return 0;
}

/* For the calls that only count or look (task_done, join, stat): they
 * work after close(), as CPython's (its semaphores outlive the pipe). */
static int check_mapped(QueueObject *self)
{
    if (!self->q) {
        PyErr_SetString(PyExc_ValueError, "Queue is closed");
        return -1;
    }
    return 0;
}

/* Once closed and no record of the handle is in flight (no call making
 * one, no loan), the liveness slot is given back (so the next fork stops
 * "shmkit-live" if it was the process's last); the mapping stays for the
 * counting calls until the object is freed. */
static void maybe_finish(QueueObject *self)
{
    if (self->closed && self->busy == 0 && self->q && !self->left) {
        shmkit_queue_leave(self->q);
        self->left = 1;
    }
}

static PyObject *queue_error(QueueObject *self, int r, size_t len)
{
    if (r == -EMSGSIZE) {
        PyErr_Format(PyExc_ValueError,
                     "message of %zu bytes is larger than the queue's "
                     "largest message of %zu bytes", len,
                     self->q ? shmkit_queue_max_message(self->q) : (size_t)0);
        return NULL;
    }
    if (r == SHMKIT_ECLOSED) {
        PyErr_SetString(PyExc_ValueError, "Queue is closed");
        return NULL;
    }
    if (r == -EOVERFLOW) {
        PyErr_SetString(PyExc_ValueError,
                        "task_done() called too many times");
        return NULL;
    }
    return ext_error(self->st, r, qname(self));
}

/* How long to wait: block False never sleeps; timeout None waits for ever. */
struct deadline {
    struct timespec ts;
    const struct timespec *p;
};

static int deadline_of(int block, PyObject *timeout, struct deadline *d)
{
    double t;

    if (!block) {
        d->p = SHMKIT_NOWAIT;
        return 0;
    }
    if (!timeout || timeout == Py_None) {
        d->p = NULL;
        return 0;
    }
    t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a number");
        return -1;
    }
    /* multiprocessing's queues take a negative timeout as 0 (one try, then
     * Empty or Full: their semaphores' acquire does so), where queue.Queue
     * raises ValueError; e.g. q.get(timeout=deadline - time.monotonic()). */
    if (t < 0)
        t = 0;
    shmkit_deadline(&d->ts, t);
    d->p = &d->ts;
    return 0;
}

/* One blocking operation of the C API, run without the GIL. */
typedef int (*blocking_fn)(shmkit_queue *q, void *arg,
                           const struct timespec *deadline);

/* A call that may sleep sleeps in slices (EXT_WAIT_SLICE) and looks for
 * signals (PyErr_CheckSignals) between them. A signal that ends the sleep
 * does so at once (-EINTR); one that came just before it - while the call
 * was looking, or spinning before its sleep, where the C handler ran and
 * set Python's flag but nothing ended - would otherwise wait for the next
 * message or the deadline (review s21 finding 3: the spin's yield made
 * that window up to a time slice). */

/* Runs fn until it does not end by a signal. Returns its result, or
 * INT_MIN with a Python exception set (a signal handler raised). A call
 * that makes records (records != 0) counts in busy, and ends with
 * SHMKIT_ECLOSED at the end of a slice once close() was called (by
 * another thread: close wakes none, so within a slice). */
static int run_blocking(QueueObject *self, blocking_fn fn, void *arg,
                        const struct deadline *d, int records)
{
    shmkit_queue *q = self->q;
    struct timespec slice;
    const struct timespec *until;
    int r;

    for (;;) {
        until = d->p;
        if (d->p != SHMKIT_NOWAIT && !ext_next_slice(&slice, d->p))
            until = &slice;
        self->busy += records;
        Py_BEGIN_ALLOW_THREADS
        r = fn(q, arg, until);
        Py_END_ALLOW_THREADS
        self->busy -= records;
        /* A slice that had passed when the call began (this thread not
         * run for a slice) is -EAGAIN, not -ETIMEDOUT: a slice all the same
         * (review s21 finding 8: else a get() without timeout raised
         * Empty). */
        if ((r == -ETIMEDOUT || r == -EAGAIN) && until == &slice) {
            if (PyErr_CheckSignals() < 0) {
                r = -EINTR;
                break;
            }
            if (records && self->closed) {
                r = SHMKIT_ECLOSED;
                break;
            }
            continue;
        }
        if (r != -EINTR || PyErr_CheckSignals() < 0)
            break;
    }
    maybe_finish(self);
    if (r == -EINTR)
        return INT_MIN;
    return r;
}

/* ---- frames ---------------------------------------------------------------- */

struct frame {
    Py_ssize_t n;        /* parts */
    Py_buffer *views;
    size_t header, total;
};

static void frame_free(struct frame *f)
{
    Py_ssize_t i;

    for (i = 0; i < f->n; i++)
        PyBuffer_Release(&f->views[i]);
    PyMem_Free(f->views);
    f->views = NULL;
    f->n = 0;
}

/* Gets the buffers of the sequence `parts` and the frame's size. Walks a
 * tuple of its own: getting a buffer can run Python code (__buffer__,
 * Python 3.12) that could change a list the hook handed back. */
static int frame_of(PyObject *parts, struct frame *f)
{
    PyObject *seq = PySequence_Tuple(parts);
    Py_ssize_t n, i;
    size_t total;

    memset(f, 0, sizeof *f);
    if (!seq)
        return -1;
    n = PyTuple_GET_SIZE(seq);
    if (n < 1 || n > FRAME_MAX_PARTS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "a message has 1 to %d parts",
                     FRAME_MAX_PARTS);
        return -1;
    }
    f->views = PyMem_Calloc((size_t)n, sizeof *f->views);
    if (!f->views) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    f->header = round16(8 + 8 * (size_t)n);
    total = f->header;
    for (i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(seq, i), &f->views[i],
                               PyBUF_C_CONTIGUOUS) < 0) {
            Py_DECREF(seq);
            frame_free(f);
            return -1;
        }
        f->n = i + 1;
        total = round16(total) + (size_t)f->views[i].len;
    }
    Py_DECREF(seq);
    f->total = total;
    return 0;
}

/* Writes the frame into dst (f->total bytes); no GIL needed. */
static void frame_write(const struct frame *f, unsigned char *dst)
{
    uint32_t head[2] = {FRAME_MAGIC, (uint32_t)f->n};
    size_t off = f->header;
    Py_ssize_t i;

    memcpy(dst, head, sizeof head);
    for (i = 0; i < f->n; i++) {
        uint64_t len = (uint64_t)f->views[i].len;

        memcpy(dst + 8 + 8 * (size_t)i, &len, sizeof len);
        memcpy(dst + off, f->views[i].buf, (size_t)f->views[i].len);
        off = round16(off + (size_t)f->views[i].len);
    }
}

/* A frame's parts as checked: each part's offset and length, read from
 * the message once. A loaned message is in shared memory, where a peer can
 * change any byte at any time: nothing is read from it again after the
 * check, every later use takes these. */
#define PARTS_SMALL 8
struct parts {
    Py_ssize_t n;
    size_t *off, *len;   /* n each */
    size_t small[2 * PARTS_SMALL];
    size_t *heap;        /* PyMem, past PARTS_SMALL parts */
};

static void parts_free(struct parts *fp)
{
    PyMem_Free(fp->heap);
    fp->heap = NULL;
    fp->n = 0;
}

/* Checks a frame in [p, p + len), reading every byte of its header once,
 * into fp: the number of parts, 0 if it is not a frame (plain bytes), -1
 * with an exception (no memory). Free fp with parts_free. */
static Py_ssize_t frame_parts(const unsigned char *p, size_t len,
                              struct parts *fp)
{
    uint32_t head[2];
    size_t off, i, n;

    fp->n = 0;
    fp->heap = NULL;
    if (len < 8)
        return 0;
    memcpy(head, p, sizeof head);
    if (head[0] != FRAME_MAGIC || head[1] < 1 || head[1] > FRAME_MAX_PARTS)
        return 0;
    n = head[1];
    off = round16(8 + 8 * n);
    if (off > len)
        return 0;
    if (n <= PARTS_SMALL) {
        fp->off = fp->small;
    } else {
        fp->heap = PyMem_Malloc(2 * n * sizeof *fp->heap);
        if (!fp->heap) {
            PyErr_NoMemory();
            return -1;
        }
        fp->off = fp->heap;
    }
    fp->len = fp->off + n;
    for (i = 0; i < n; i++) {
        uint64_t plen;

        memcpy(&plen, p + 8 + 8 * i, sizeof plen);
        if (plen > len - off) {
            parts_free(fp);
            return 0;
        }
        fp->off[i] = off;
        fp->len[i] = (size_t)plen;
        off += (size_t)plen;
        if (i + 1 < n)
            off = off + 15 > len ? len + 1 : round16(off);
        if (off > len) {
            parts_free(fp);
            return 0;
        }
    }
    fp->n = (Py_ssize_t)n;
    return fp->n;
}

/* Turns a frame's parts (checked by frame_parts) into Python: a list,
 * part 0 bytes, the others bytearrays (writable, as NumPy wants). The
 * copies of big parts run without the GIL. */
static PyObject *message_to_python(const unsigned char *p,
                                   const struct parts *fp)
{
    Py_ssize_t i;
    PyObject *list = PyList_New(fp->n);

    if (!list)
        return NULL;
    for (i = 0; i < fp->n; i++) {
        const unsigned char *src = p + fp->off[i];
        size_t plen = fp->len[i];
        PyObject *o;

        if (i == 0) {
            o = PyBytes_FromStringAndSize((const char *)src,
                                          (Py_ssize_t)plen);
        } else {
            o = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)plen);
            if (o && plen >= 65536) {
                char *dst = PyByteArray_AS_STRING(o);
                Py_BEGIN_ALLOW_THREADS
                memcpy(dst, src, plen);
                Py_END_ALLOW_THREADS
            } else if (o) {
                memcpy(PyByteArray_AS_STRING(o), src, plen);
            }
        }
        if (!o) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, o);
    }
    return list;
}

/* ---- plain values: a codec much cheaper than pickle --------------------------- */

/*
 * put, put_many and get encode plain values themselves instead of
 * pickling them: None, bool, int (64 bits), float, str, bytes, tuples of
 * these (nested), and at the top a list or dict of them. Exact types only
 * (a subclass goes through pickle, which keeps it); a list or dict is
 * never inside another value, so no two places of one message can share a
 * mutable object (pickle keeps such sharing, this codec would split it).
 * Anything else goes through pickle (the queue's dumps/loads hooks).
 *
 * A message is the magic "SKV1" (u32), then one value, a tag byte then:
 *   'N' 'T' 'F'                      None, True, False
 *   'i' i64, 'f' f64                 int, float
 *   's' u8 kind, u32 n, n*kind bytes str, its code units (kind 1, 2 or 4)
 *   'y' u32 n, n bytes               bytes
 *   't' / 'l' u32 n, n values        tuple, list
 *   'd' u32 n, 2n values             dict: key, value, key, value ...
 * numbers in the machine's byte order, unaligned. A message that does not
 * decode to exactly its length comes out as bytes, as other non-frames.
 */
#define VAL_MAGIC 0x31564b53u /* "SKV1" read as little-endian */
#define VAL_MAX_DEPTH 32

/* An output buffer: writes past cap are counted, not made (off tells the
 * size needed); it starts on the caller's stack and grows on the heap. */
struct enc {
    unsigned char *buf;
    size_t cap, off;
    unsigned char *heap; /* buf when on the heap (PyMem) */
};

/* Room for n bytes at e->off, moving off past them: where to write them,
 * or NULL when they do not fit (only counted). The values are written
 * straight there: staged in a small array first, the bytes of the tag and
 * of the value, stored apart, were read back as one (a failed store
 * forwarding: in a profile of put_many of (int, str) tuples, over half
 * of enc_value's samples sat on those two loads). */
static inline unsigned char *enc_at(struct enc *e, size_t n)
{
    unsigned char *p = e->off <= e->cap && n <= e->cap - e->off
                           ? e->buf + e->off : NULL;

    e->off += n;
    return p;
}

static inline void enc_raw(struct enc *e, const void *src, size_t n)
{
    unsigned char *p = enc_at(e, n);

    if (p)
        memcpy(p, src, n);
}

static inline void enc_tag_u32(struct enc *e, unsigned char tag, uint32_t n)
{
    unsigned char *p = enc_at(e, 5);

    if (p) {
        p[0] = tag;
        memcpy(p + 1, &n, 4);
    }
}

/* Appends o; -1 if it is not a plain value (no exception set). */
static int enc_value(struct enc *e, PyObject *o, int depth)
{
    PyTypeObject *t = Py_TYPE(o);
    unsigned char *p;
    Py_ssize_t n, i;

    if (o == Py_None || o == Py_True || o == Py_False) {
        p = enc_at(e, 1);
        if (p)
            p[0] = o == Py_None ? 'N' : o == Py_True ? 'T' : 'F';
    } else if (t == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow)
            return -1;
        p = enc_at(e, 9);
        if (p) {
            p[0] = 'i';
            memcpy(p + 1, &v, 8);
        }
    } else if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        p = enc_at(e, 9);
        if (p) {
            p[0] = 'f';
            memcpy(p + 1, &d, 8);
        }
    } else if (t == &PyUnicode_Type) {
        uint32_t u;
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(o) < 0) {
            PyErr_Clear();
            return -1;
        }
#endif
        n = PyUnicode_GET_LENGTH(o);
        if ((uint64_t)n > UINT32_MAX)
            return -1;
        u = (uint32_t)n;
        p = enc_at(e, 6);
        if (p) {
            p[0] = 's';
            p[1] = (unsigned char)PyUnicode_KIND(o);
            memcpy(p + 2, &u, 4);
        }
        enc_raw(e, PyUnicode_DATA(o), (size_t)n * PyUnicode_KIND(o));
    } else if (t == &PyBytes_Type) {
        n = PyBytes_GET_SIZE(o);
        if ((uint64_t)n > UINT32_MAX)
            return -1;
        enc_tag_u32(e, 'y', (uint32_t)n);
        enc_raw(e, PyBytes_AS_STRING(o), (size_t)n);
    } else if (depth >= VAL_MAX_DEPTH) {
        return -1;
    } else if (t == &PyTuple_Type || (depth == 0 && t == &PyList_Type)) {
        n = Py_SIZE(o);
        if ((uint64_t)n > UINT32_MAX)
            return -1;
        enc_tag_u32(e, t == &PyTuple_Type ? 't' : 'l', (uint32_t)n);
        for (i = 0; i < n; i++) {
            PyObject *x = t == &PyTuple_Type ? PyTuple_GET_ITEM(o, i)
                                             : PyList_GET_ITEM(o, i);
            if (enc_value(e, x, depth + 1) < 0)
                return -1;
        }
    } else if (depth == 0 && t == &PyDict_Type) {
        PyObject *k, *v;
        n = PyDict_GET_SIZE(o);
        if ((uint64_t)n > UINT32_MAX)
            return -1;
        enc_tag_u32(e, 'd', (uint32_t)n);
        i = 0;
        while (PyDict_Next(o, &i, &k, &v))
            if (enc_value(e, k, 1) < 0 || enc_value(e, v, 1) < 0)
                return -1;
    } else {
        return -1;
    }
    return 0;
}

/* Appends obj as one plain message at e->off, growing the buffer as
 * needed. 1 done, 0 not a plain value (e->off back where it was), -1 with
 * an exception (no memory). Runs no Python code, so obj cannot change. */
static int enc_message(struct enc *e, PyObject *obj)
{
    size_t start = e->off;
    uint32_t magic = VAL_MAGIC;

    for (;;) {
        enc_raw(e, &magic, 4);
        if (enc_value(e, obj, 0) < 0) {
            e->off = start;
            return 0;
        }
        if (e->off <= e->cap)
            return 1;
        {
            size_t cap = e->cap * 2 > e->off ? e->cap * 2 : e->off;
            unsigned char *p = PyMem_Malloc(cap);
            if (!p) {
                PyErr_NoMemory();
                return -1;
            }
            memcpy(p, e->buf, start);
            PyMem_Free(e->heap);
            e->heap = e->buf = p;
            e->cap = cap;
            e->off = start;
        }
    }
}

/* Appends n bytes at e->off (growing); NULL with an exception. */
static unsigned char *enc_room(struct enc *e, size_t n)
{
    if (n > e->cap - e->off) {
        size_t cap = e->cap * 2 > e->off + n ? e->cap * 2 : e->off + n;
        unsigned char *p = PyMem_Malloc(cap);
        if (!p) {
            PyErr_NoMemory();
            return NULL;
        }
        memcpy(p, e->buf, e->off);
        PyMem_Free(e->heap);
        e->heap = e->buf = p;
        e->cap = cap;
    }
    e->off += n;
    return e->buf + e->off - n;
}

struct dec {
    const unsigned char *p, *end;
    int shared; /* in shared memory: never read a byte twice */
};

static int dec_u32(struct dec *d, uint32_t *n)
{
    if (d->end - d->p < 4)
        return -1;
    memcpy(n, d->p, 4);
    d->p += 4;
    return 0;
}

static PyObject *dec_bad(void)
{
    PyErr_SetString(PyExc_ValueError, "malformed plain message");
    return NULL;
}

static PyObject *dec_value(struct dec *d, int depth);

/* A tuple, list or dict of n entries (each at least one byte). */
static PyObject *dec_container(struct dec *d, unsigned char tag, int depth)
{
    PyObject *o, *k, *v;
    uint32_t n, i;

    if (depth >= VAL_MAX_DEPTH || dec_u32(d, &n) < 0 ||
        (uint64_t)n * (tag == 'd' ? 2 : 1) > (uint64_t)(d->end - d->p))
        return dec_bad();
    o = tag == 't' ? PyTuple_New(n) : tag == 'l' ? PyList_New(n) : PyDict_New();
    for (i = 0; o && i < n; i++) {
        if (tag == 'd') {
            k = dec_value(d, depth + 1);
            v = k ? dec_value(d, depth + 1) : NULL;
            if (!v || PyDict_SetItem(o, k, v) < 0)
                Py_CLEAR(o);
            Py_XDECREF(k);
            Py_XDECREF(v);
            continue;
        }
        v = dec_value(d, depth + 1);
        if (!v)
            Py_CLEAR(o);
        else if (tag == 't')
            PyTuple_SET_ITEM(o, i, v);
        else
            PyList_SET_ITEM(o, i, v);
    }
    return o;
}

/* The value at d->p (moved past it); NULL with an exception. */
static PyObject *dec_value(struct dec *d, int depth)
{
    unsigned char tag;
    uint32_t n;

    if (d->p >= d->end)
        return dec_bad();
    tag = *d->p++;
    switch (tag) {
    case 'N': Py_RETURN_NONE;
    case 'T': Py_RETURN_TRUE;
    case 'F': Py_RETURN_FALSE;
    case 'i':
    case 'f': {
        unsigned char b[8];
        if (d->end - d->p < 8)
            return dec_bad();
        memcpy(b, d->p, 8);
        d->p += 8;
        if (tag == 'i') {
            long long v;
            memcpy(&v, b, 8);
            return PyLong_FromLongLong(v);
        } else {
            double v;
            memcpy(&v, b, 8);
            return PyFloat_FromDouble(v);
        }
    }
    case 's': {
        const unsigned char *s;
        int kind;
        if (d->p >= d->end)
            return dec_bad();
        kind = *d->p++;
        if ((kind != 1 && kind != 2 && kind != 4) || dec_u32(d, &n) < 0 ||
            (uint64_t)n * (unsigned)kind > (uint64_t)(d->end - d->p))
            return dec_bad();
        s = d->p;
        d->p += (size_t)n * (unsigned)kind;
        /* Checks the code units (a kind-4 value past U+10FFFF is an
         * error), and gives the most compact str. It reads them twice
         * (the widest, then the copy): from shared memory, where a peer
         * could change them in between (an "ASCII" str holding other
         * bytes, a code point past U+10FFFF), it reads a private copy. */
        if (d->shared && n) {
            size_t nb = (size_t)n * (unsigned)kind;
            unsigned char stack[256], *buf = nb <= sizeof stack ? stack
                                                 : PyMem_Malloc(nb);
            PyObject *o;
            if (!buf)
                return PyErr_NoMemory();
            memcpy(buf, s, nb);
            o = PyUnicode_FromKindAndData(kind, buf, n);
            if (buf != stack)
                PyMem_Free(buf);
            return o;
        }
        return PyUnicode_FromKindAndData(kind, s, n);
    }
    case 'y': {
        const unsigned char *s;
        if (dec_u32(d, &n) < 0 || n > (uint64_t)(d->end - d->p))
            return dec_bad();
        s = d->p;
        d->p += n;
        return PyBytes_FromStringAndSize((const char *)s, n);
    }
    case 't':
    case 'l':
    case 'd':
        return dec_container(d, tag, depth);
    default:
        return dec_bad();
    }
}

/* The value of a plain message [p, p + len) whose magic the caller read;
 * NULL with no exception if it is not one (malformed, or refused by a
 * constructor), NULL with MemoryError. shared: p is in shared memory. */
static PyObject *dec_message(const unsigned char *p, size_t len, int shared)
{
    struct dec d = {p + 4, p + len, shared};
    PyObject *o;

    if (len < 5)
        return NULL;
    o = dec_value(&d, 0);
    if (o && d.p != d.end)
        Py_CLEAR(o);
    if (!o && !PyErr_ExceptionMatches(PyExc_MemoryError))
        PyErr_Clear();
    return o;
}

/* ---- put ------------------------------------------------------------------ */

struct put_arg {
    const struct frame *f;
    const void *raw;
    size_t len;
};

static int do_put(shmkit_queue *q, void *arg, const struct timespec *d)
{
    struct put_arg *a = arg;
    void *w;
    int r;

    if (!a->f)
        return shmkit_queue_put(q, a->raw, a->len, d);
    r = shmkit_queue_reserve(q, a->f->total, &w, d);
    if (r)
        return r;
    frame_write(a->f, w);
    return shmkit_queue_commit(q, w, a->f->total);
}

/* put_bytes(data, block=True, timeout=None) -> bool: data as one message,
 * as a C producer would put it; False if full. get gives it back as bytes
 * unless it starts with "SKV1" or "SKP5" and decodes (see the top). */
static PyObject *Queue_put_bytes(QueueObject *self, PyObject *args,
                                 PyObject *kw)
{
    static char *kwlist[] = {"data", "block", "timeout", NULL};
    PyObject *timeout = Py_None;
    struct put_arg a = {NULL, NULL, 0};
    struct deadline d;
    Py_buffer v;
    int block = 1, r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|pO", kwlist, &v, &block,
                                     &timeout))
        return NULL;
    if (check_open_put(self) < 0 || deadline_of(block, timeout, &d) < 0) {
        PyBuffer_Release(&v);
        return NULL;
    }
    a.raw = v.buf;
    a.len = (size_t)v.len;
    r = run_blocking(self, do_put, &a, &d, 1);
    PyBuffer_Release(&v);
    if (r == INT_MIN)
        return NULL;
    if (r == -EAGAIN || r == -ETIMEDOUT)
        Py_RETURN_FALSE;
    if (r)
        return queue_error(self, r, a.len);
    Py_RETURN_TRUE;
}

/* put_many: each message is framed into one contiguous buffer first (the
 * batch is for small messages), then one shmkit_queue_put_many. */
struct put_many_arg {
    struct iovec *v;
    size_t n, done;
};

static int do_put_many(shmkit_queue *q, void *arg, const struct timespec *d)
{
    struct put_many_arg *a = arg;
    size_t done = 0;
    int r = shmkit_queue_put_many(q, a->v + a->done, a->n - a->done, &done, d);

    a->done += done;
    return r;
}

/* ---- get ------------------------------------------------------------------ */

struct peek_arg {
    const void *p;
    size_t len;
};

/* get's take (copy=True): a message of up to GET_COPY bytes is copied
 * into the caller's buffer under the mutex (shmkit_queue_get), its record
 * freed there and then; a larger one is lent (peek) and given back once
 * decoded. One locked pass and no loan instead of a take (the record
 * marked TAKEN) and a release (its compare-and-swap to DONE, and head
 * moved past it by a later locker): fewer cache lines go between the
 * processes per message, and a second consumer's take no longer walks past
 * this one's loan. After a message too big for the buffer (-EMSGSIZE: it
 * stays queued), the handle lends until a small one comes again, so a
 * stream of big messages does not pay two locked passes each. */
#define GET_COPY 2048

struct take_arg {
    struct peek_arg a;
    unsigned char *buf; /* GET_COPY bytes, or NULL: lend */
    int *lend;          /* atomic: the handle's hint, the last was too big */
    int copied;
};

static int do_take(shmkit_queue *q, void *arg, const struct timespec *d)
{
    struct take_arg *t = arg;
    int r;

    t->copied = 0;
    if (t->buf && !__atomic_load_n(t->lend, __ATOMIC_RELAXED)) {
        r = shmkit_queue_get(q, t->buf, GET_COPY, &t->a.len, d);
        if (r != -EMSGSIZE) {
            t->copied = r == 0;
            t->a.p = t->buf;
            return r;
        }
        __atomic_store_n(t->lend, 1, __ATOMIC_RELAXED);
    }
    r = shmkit_queue_peek(q, &t->a.p, &t->a.len, d);
    if (r == 0 && t->buf && t->a.len <= GET_COPY)
        __atomic_store_n(t->lend, 0, __ATOMIC_RELAXED);
    return r;
}

static int do_peek(shmkit_queue *q, void *arg, const struct timespec *d)
{
    struct peek_arg *a = arg;

    return shmkit_queue_peek(q, &a->p, &a->len, d);
}

struct get_many_arg {
    unsigned char *buf;
    size_t buflen, max, got;
    struct iovec *v;
};

static int do_get_many(shmkit_queue *q, void *arg, const struct timespec *d)
{
    struct get_many_arg *a = arg;

    return shmkit_queue_get_many(q, a->buf, a->buflen, a->v, a->max, &a->got,
                                 d);
}

/* ---- zero copy: slots ------------------------------------------------------ */

static PyTypeObject *slot_type_of(QueueObject *self);

struct reserve_arg {
    size_t len;
    void *p;
};

static int do_reserve(shmkit_queue *q, void *arg, const struct timespec *d)
{
    struct reserve_arg *a = arg;

    return shmkit_queue_reserve(q, a->len, &a->p, d);
}

static PyObject *slot_new(QueueObject *self, void *p, size_t len, int writable)
{
    SlotObject *s = PyObject_New(SlotObject, slot_type_of(self));

    if (!s)
        return NULL;
    Py_INCREF(self);
    s->queue = self;
    s->ptr = p;
    s->len = (Py_ssize_t)len;
    s->writable = writable;
    s->done = 0;
    s->exports = 0;
    self->busy++;
    return (PyObject *)s;
}

static PyObject *Queue_reserve(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"nbytes", "block", "timeout", NULL};
    PyObject *timeout = Py_None, *s;
    struct reserve_arg a = {0, NULL};
    struct deadline d;
    Py_ssize_t n;
    int block = 1, r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|pO", kwlist, &n, &block,
                                     &timeout) ||
        check_open_put(self) < 0 || deadline_of(block, timeout, &d) < 0)
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes must not be negative");
        return NULL;
    }
    a.len = (size_t)n;
    r = run_blocking(self, do_reserve, &a, &d, 1);
    if (r == INT_MIN)
        return NULL;
    if (r == -EAGAIN || r == -ETIMEDOUT)
        Py_RETURN_NONE;
    if (r)
        return queue_error(self, r, a.len);
    s = slot_new(self, a.p, a.len, 1);
    if (!s)
        shmkit_queue_cancel(self->q, a.p);
    return s;
}

static PyObject *Queue_peek(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    PyObject *timeout = Py_None, *s;
    struct peek_arg a = {NULL, 0};
    struct deadline d;
    int block = 1, r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pO", kwlist, &block, &timeout) ||
        check_open(self) < 0 || deadline_of(block, timeout, &d) < 0)
        return NULL;
    r = run_blocking(self, do_peek, &a, &d, 1);
    if (r == INT_MIN)
        return NULL;
    if (r == -EAGAIN || r == -ETIMEDOUT)
        Py_RETURN_NONE;
    if (r)
        return queue_error(self, r, 0);
    s = slot_new(self, (void *)a.p, a.len, 0);
    if (!s)
        shmkit_queue_release(self->q, a.p);
    return s;
}

/* Ends a slot: commit (n bytes), cancel, or release. */
static PyObject *slot_finish(SlotObject *s, int commit, Py_ssize_t n)
{
    QueueObject *q = s->queue;
    int r;

    if (s->done) {
        PyErr_SetString(PyExc_ValueError, "slot already committed or released");
        return NULL;
    }
    if (s->exports) {
        PyErr_SetString(PyExc_BufferError,
                        "release the memoryviews of the slot first");
        return NULL;
    }
    if (s->writable && commit)
        r = shmkit_queue_commit(q->q, s->ptr, (size_t)n);
    else if (s->writable)
        r = shmkit_queue_cancel(q->q, s->ptr);
    else
        r = shmkit_queue_release(q->q, s->ptr);
    s->done = 1;
    q->busy--;
    if (r) {
        queue_error(q, r, (size_t)n);
        maybe_finish(q);
        return NULL;
    }
    maybe_finish(q);
    Py_RETURN_NONE;
}

static PyObject *Slot_commit(SlotObject *s, PyObject *args)
{
    Py_ssize_t n = s->len;

    if (!PyArg_ParseTuple(args, "|n", &n))
        return NULL;
    if (!s->writable) {
        PyErr_SetString(PyExc_TypeError, "a loan is released, not committed");
        return NULL;
    }
    if (n < 0 || n > s->len) {
        PyErr_Format(PyExc_ValueError, "commit of %zd bytes into a slot of %zd",
                     n, s->len);
        return NULL;
    }
    return slot_finish(s, 1, n);
}

static PyObject *Slot_cancel(SlotObject *s, PyObject *unused)
{
    if (!s->writable) {
        PyErr_SetString(PyExc_TypeError, "a loan is released, not cancelled");
        return NULL;
    }
    return slot_finish(s, 0, 0);
}

static PyObject *Slot_release(SlotObject *s, PyObject *unused)
{
    if (s->writable) {
        PyErr_SetString(PyExc_TypeError, "a reservation is committed or cancelled");
        return NULL;
    }
    return slot_finish(s, 0, 0);
}

static int Slot_getbuffer(SlotObject *s, Py_buffer *view, int flags)
{
    if (s->done) {
        PyErr_SetString(PyExc_ValueError, "slot already committed or released");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)s, s->ptr, s->len, !s->writable,
                          flags) < 0)
        return -1;
    s->exports++;
    return 0;
}

static void Slot_releasebuffer(SlotObject *s, Py_buffer *view)
{
    s->exports--;
}

static void Slot_dealloc(SlotObject *s)
{
    PyTypeObject *tp = Py_TYPE(s);

    /* Dropped without an ending: a reservation is cancelled, a loan
     * released (nothing may still view it: exports hold a reference). */
    if (!s->done && s->queue && s->queue->q) {
        if (s->writable)
            shmkit_queue_cancel(s->queue->q, s->ptr);
        else
            shmkit_queue_release(s->queue->q, s->ptr);
        s->queue->busy--;
        maybe_finish(s->queue);
    }
    Py_XDECREF(s->queue);
    tp->tp_free(s);
    Py_DECREF(tp);
}

static Py_ssize_t Slot_len(SlotObject *s)
{
    return s->len;
}

static PyObject *Slot_get_done(SlotObject *s, void *unused)
{
    return PyBool_FromLong(s->done);
}

static PyMethodDef slot_methods[] = {
    {"commit", (PyCFunction)Slot_commit, METH_VARARGS,
     "commit([nbytes]): publish the message (its first nbytes bytes)."},
    {"cancel", (PyCFunction)Slot_cancel, METH_NOARGS,
     "cancel(): drop the reservation unpublished."},
    {"release", (PyCFunction)Slot_release, METH_NOARGS,
     "release(): free the loaned message."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef slot_getset[] = {
    {"done", (getter)Slot_get_done, NULL, "committed, cancelled or released",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot slot_slots[] = {
    {Py_tp_dealloc, Slot_dealloc},
    {Py_tp_methods, slot_methods},
    {Py_tp_getset, slot_getset},
    {Py_sq_length, Slot_len},
    {Py_bf_getbuffer, Slot_getbuffer},
    {Py_bf_releasebuffer, Slot_releasebuffer},
    {Py_tp_doc, "A message in the ring, lent without a copy: a reservation "
                "(writable; commit or cancel) or a loan (read-only; release)."},
    {0, NULL}
};

static PyType_Spec slot_spec = {
    .name = "shmkit._shmkit.QueueSlot",
    .basicsize = sizeof(SlotObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = slot_slots,
};

/* ---- put, get, put_many, get_many: whole objects ---------------------------- */

/* Parses (obj?, block=True, timeout=None[, third]) given positionally or by
 * keyword. names: the keywords in order; nobj: 1 if the first is required. */
static int parse_args(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, int nobj,
                      PyObject **out, int nout)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, k;
    int i;

    if (nargs > nout) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", fn,
                     nout);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[i] = args[i];
    for (k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        for (i = 0; i < nout; i++)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                break;
        if (i == nout || out[i]) {
            PyErr_Format(PyExc_TypeError, i == nout ?
                         "%s() got an unexpected keyword argument %R" :
                         "%s() got multiple values for argument %R", fn, key);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    if (nobj && !out[0]) {
        PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'",
                     fn, names[0]);
        return -1;
    }
    return 0;
}

/* block (a truth value, default True) and timeout into a deadline. */
static int deadline_args(PyObject *blockobj, PyObject *timeout,
                         struct deadline *d)
{
    int block = 1;

    if (blockobj && (block = PyObject_IsTrue(blockobj)) < 0)
        return -1;
    return deadline_of(block, timeout, d);
}

static PyObject *hook(QueueObject *self, PyObject *h, const char *what)
{
    if (!h)
        PyErr_Format(PyExc_RuntimeError, "QueueBase: no %s hook set "
                     "(set_hooks)", what);
    return h;
}

/* A first attempt with the GIL held (SHMKIT_QUEUE_TRY), then, only if it
 * would have to wait, the blocking call without the GIL. Small messages
 * only: a big copy runs without the GIL. */
static int run_try_first(QueueObject *self, blocking_fn fn, void *arg,
                         const struct deadline *d, int try_first)
{
    int r;

    if (try_first) {
        r = fn(self->q, arg, SHMKIT_QUEUE_TRY);
        if (r != -EAGAIN)
            return r;
    }
    return run_blocking(self, fn, arg, d, 1);
}

#define TRY_MAX (64 * 1024) /* larger messages copy without the GIL */

/* The frame of obj (not a plain value) through the dumps hook: 0, or -1
 * with an exception (also when it can never fit). Free with frame_free. */
static int frame_obj(QueueObject *self, PyObject *obj, struct frame *f)
{
    PyObject *parts;
    int r;

    if (!hook(self, self->dumps, "dumps"))
        return -1;
    parts = PyObject_CallOneArg(self->dumps, obj);
    if (!parts)
        return -1;
    r = frame_of(parts, f);
    Py_DECREF(parts);
    if (r < 0)
        return -1;
    if (f->total > shmkit_queue_max_message(self->q)) {
        queue_error(self, -EMSGSIZE, f->total);
        frame_free(f);
        return -1;
    }
    return 0;
}

/* Appends obj to e as one message: plain, else its frame (for batches:
 * put writes a frame straight into the ring). 0 or -1 with an exception. */
static int encode_one(QueueObject *self, struct enc *e, PyObject *obj)
{
    struct frame f;
    unsigned char *p;
    int r = enc_message(e, obj);

    if (r)
        return r < 0 ? -1 : 0;
    if (frame_obj(self, obj, &f) < 0)
        return -1;
    p = enc_room(e, f.total);
    if (p)
        frame_write(&f, p);
    frame_free(&f);
    return p ? 0 : -1;
}

static PyObject *raise_full(QueueObject *self)
{
    if (hook(self, self->full, "Full"))
        PyErr_SetNone(self->full);
    return NULL;
}

static PyObject *Queue_put(QueueObject *self, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"obj", "block", "timeout"};
    PyObject *a3[3] = {NULL, NULL, NULL};
    unsigned char stack[512];
    struct enc e = {stack, sizeof stack, 0, NULL};
    struct put_arg a = {NULL, NULL, 0};
    struct deadline d;
    struct frame f;
    PyObject *res = NULL;
    size_t len;
    int r;

    if (parse_args("put", args, nargs, kwnames, names, 1, a3, 3) < 0 ||
        check_open_put(self) < 0 || deadline_args(a3[1], a3[2], &d) < 0 ||
        (r = enc_message(&e, a3[0])) < 0)
        goto out;
    if (r == 0) { /* not plain: its frame goes straight into the ring */
        if (frame_obj(self, a3[0], &f) < 0)
            goto out;
        a.f = &f;
        len = f.total;
    } else if ((len = e.off) > shmkit_queue_max_message(self->q)) {
        queue_error(self, -EMSGSIZE, len);
        goto out;
    }
    a.raw = e.buf;
    a.len = e.off;
    r = run_try_first(self, do_put, &a, &d, len <= TRY_MAX);
    if (r == -EAGAIN || r == -ETIMEDOUT)
        raise_full(self);
    else if (r != INT_MIN && r)
        queue_error(self, r, len);
    else if (r == 0)
        res = Py_NewRef(Py_None);
out:
    if (a.f)
        frame_free(&f);
    PyMem_Free(e.heap);
    return res;
}

/* put_many(objs, block=True, timeout=None) -> how many were put: every
 * message encoded into one buffer, then one shmkit_queue_put_many. The
 * objects are those of objs when called: it walks a tuple of its own
 * (a tuple given is already one), since pickling an object runs Python code
 * (__reduce__) that can change the caller's list. */
static PyObject *Queue_put_many(QueueObject *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"objs", "block", "timeout"};
    PyObject *a3[3] = {NULL, NULL, NULL}, *seq = NULL, *res = NULL;
    unsigned char stack[4096];
    struct enc e = {stack, sizeof stack, 0, NULL};
    struct put_many_arg a = {NULL, 0, 0};
    size_t i, maxm;
    struct deadline d;
    int r;

    if (parse_args("put_many", args, nargs, kwnames, names, 1, a3, 3) < 0 ||
        check_open_put(self) < 0 || deadline_args(a3[1], a3[2], &d) < 0)
        return NULL;
    seq = PySequence_Tuple(a3[0]);
    if (!seq)
        return NULL;
    a.n = (size_t)PyTuple_GET_SIZE(seq);
    a.v = PyMem_Malloc((a.n ? a.n : 1) * sizeof *a.v);
    if (!a.v) {
        PyErr_NoMemory();
        goto out;
    }
    if (self->encbuf) { /* the last call's buffer, taken for this one */
        e.buf = e.heap = self->encbuf;
        e.cap = self->encbuf_len;
        self->encbuf = NULL;
    }
    maxm = shmkit_queue_max_message(self->q);
    for (i = 0; i < a.n; i++) {
        size_t start = e.off;
        if (encode_one(self, &e, PyTuple_GET_ITEM(seq, i)) < 0)
            goto out;
        if (e.off - start > maxm) {
            queue_error(self, -EMSGSIZE, e.off - start);
            goto out;
        }
        a.v[i].iov_base = (void *)(uintptr_t)start; /* an offset for now */
        a.v[i].iov_len = e.off - start;
    }
    for (i = 0; i < a.n; i++) /* the buffer may have moved: bases last */
        a.v[i].iov_base = e.buf + (uintptr_t)a.v[i].iov_base;
    r = run_try_first(self, do_put_many, &a, &d, e.off <= TRY_MAX);
    if (r == INT_MIN)
        goto out;
    if (r && r != -EAGAIN && r != -ETIMEDOUT) {
        queue_error(self, r, 0);
        goto out;
    }
    res = PyLong_FromSize_t(a.done);
out:
    PyMem_Free(a.v);
    if (e.heap && !self->encbuf && e.cap <= ENCBUF_MAX) {
        self->encbuf = e.heap; /* kept for the next call */
        self->encbuf_len = e.cap;
    } else {
        PyMem_Free(e.heap);
    }
    Py_DECREF(seq);
    return res;
}

/* The out-of-band parts of a frame as read-only views of a loan of the
 * message (no copy): the record stays taken until every view is gone. */
static PyObject *frame_views(QueueObject *self, const unsigned char *p,
                             size_t len, const struct parts *fp, int *kept)
{
    PyObject *slot = slot_new(self, (void *)p, len, 0), *whole, *list;
    Py_ssize_t i;

    if (!slot)
        return NULL;
    *kept = 1; /* from here on the slot releases the message */
    whole = PyMemoryView_FromObject(slot);
    Py_DECREF(slot); /* the views keep it, and it keeps the record */
    if (!whole)
        return NULL;
    list = PyList_New(fp->n);
    for (i = 0; list && i < fp->n; i++) {
        size_t off = fp->off[i], plen = fp->len[i];
        PyObject *o;

        o = i == 0 ? PyBytes_FromStringAndSize((const char *)p + off,
                                               (Py_ssize_t)plen)
                   : PySequence_GetSlice(whole, (Py_ssize_t)off,
                                         (Py_ssize_t)(off + plen));
        if (!o)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, o);
    }
    Py_DECREF(whole);
    return list;
}

/* The object a message holds: a plain value (magic "SKV1"), a frame
 * (magic "SKP5") through the loads hook, else bytes (also a message with
 * either magic that does not decode). shared: [p, p + len) is a loan in
 * the ring, which a peer may change while we read: each byte is read once,
 * decisions and copies use what was read (the magic, each part's length),
 * never the ring again. *kept: 1, a view of the message lives on (copy
 * False), so the caller must not release it; 2, p was a loan of get's
 * (rel not NULL) and is given back here, *rel the release's result, once
 * the frame's parts are copied out and before the loads hook runs, so no
 * Python code runs while the record is held (other consumers' takes walk
 * past a held record); 0, the caller releases it. */
static PyObject *message_object(QueueObject *self, const unsigned char *p,
                                size_t len, int shared, int copy, int *kept,
                                int *rel)
{
    PyObject *o, *parts;
    struct parts fp;
    uint32_t magic = 0;
    Py_ssize_t n;

    *kept = 0;
    if (len >= 4)
        memcpy(&magic, p, 4);
    if (magic == VAL_MAGIC) {
        o = dec_message(p, len, shared);
        if (o || PyErr_Occurred())
            return o;
        return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
    }
    n = frame_parts(p, len, &fp);
    if (n < 0)
        return NULL;
    if (n == 0)
        return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
    if (!hook(self, self->loads, "loads")) {
        parts_free(&fp);
        return NULL;
    }
    if (!copy && n > 1)
        parts = frame_views(self, p, len, &fp, kept);
    else
        parts = message_to_python(p, &fp);
    parts_free(&fp);
    if (!parts)
        return NULL;
    if (rel && !*kept) { /* the parts are copies: the record can go */
        *rel = shmkit_queue_release(self->q, p);
        *kept = 2;
    }
    o = PyObject_CallOneArg(self->loads, parts);
    Py_DECREF(parts);
    return o;
}

static PyObject *raise_empty(QueueObject *self)
{
    if (hook(self, self->empty, "Empty"))
        PyErr_SetNone(self->empty);
    return NULL;
}

/* ---- what a failed get_many left ------------------------------------------ */

/*
 * get_many copies its batch out and gives the records back before it
 * decodes them. When one fails to decode (the loads hook raised, no
 * memory, Ctrl-C in the hook), the call raises for that message alone, as
 * get would, and the rest of its batch waits here, in order: the objects
 * decoded before it (pend_objs), then copies of the messages after it
 * (pend_raw, bytes, decoded when delivered). This handle's next get or
 * get_many delivers them before it takes anything more from the ring, so
 * nothing else is lost. They belong to the process that took them: a
 * forked child's copy of the handle does not deliver them again; they go
 * with the handle (close, then the object's end).
 */
/* The exception being raised, taken out and put back (3.12 has calls
 * for this; older versions the three-part ones). */
static PyObject *exc_save(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;

    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v && tb)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

static void exc_restore(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc)
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                      PyException_GetTraceback(exc));
#endif
}

static Py_ssize_t pending_count(QueueObject *self)
{
    Py_ssize_t n = 0;

    if (!self->pend_objs && !self->pend_raw) /* the usual case: no call */
        return 0;
    if (self->pend_pid != getpid()) {
        Py_CLEAR(self->pend_objs);
        Py_CLEAR(self->pend_raw);
        return 0;
    }
    if (self->pend_objs)
        n += PyList_GET_SIZE(self->pend_objs);
    if (self->pend_raw)
        n += PyList_GET_SIZE(self->pend_raw);
    return n;
}

/* Appends o (a new reference, stolen) to *list, made if NULL; -1 with an
 * exception. */
static int pending_add(PyObject **list, PyObject *o)
{
    int r;

    if (!o)
        return -1;
    if (!*list && !(*list = PyList_New(0))) {
        Py_DECREF(o);
        return -1;
    }
    r = PyList_Append(*list, o);
    Py_DECREF(o);
    return r;
}

/* Keeps what a get_many took but could not deliver: objs[0..i) decoded,
 * v[i] the message that failed (gone, as a get's), v[i+1..n) still to
 * decode. The exception being raised stays as it is; if keeping them
 * fails for want of memory, they are lost, as before. */
static void pending_keep(QueueObject *self, PyObject **objs, size_t i,
                         const struct iovec *v, size_t n)
{
    PyObject *exc = exc_save();
    size_t j;
    int ok = 1;

    if (self->pend_pid != getpid()) {
        Py_CLEAR(self->pend_objs);
        Py_CLEAR(self->pend_raw);
        self->pend_pid = getpid();
    }
    for (j = 0; j < i; j++) { /* each stolen, kept or dropped */
        if (ok)
            ok = pending_add(&self->pend_objs, objs[j]) == 0;
        else
            Py_DECREF(objs[j]);
    }
    for (j = i + 1; ok && j < n; j++)
        ok = pending_add(&self->pend_raw,
                         PyBytes_FromStringAndSize(v[j].iov_base,
                                                   (Py_ssize_t)v[j].iov_len)) == 0;
    if (!ok)
        PyErr_Clear();
    exc_restore(exc);
}

/* Up to max of the kept messages, oldest first, as a new list; NULL with
 * an exception if one fails to decode (that one is gone; the ones this
 * call decoded before it stay kept, first). */
static PyObject *pending_take(QueueObject *self, Py_ssize_t max)
{
    PyObject *out = PyList_New(0), *o, *b;
    int kept;

    while (out && PyList_GET_SIZE(out) < max) {
        if (self->pend_objs && PyList_GET_SIZE(self->pend_objs)) {
            o = Py_NewRef(PyList_GET_ITEM(self->pend_objs, 0));
            if (PyList_SetSlice(self->pend_objs, 0, 1, NULL) < 0) {
                Py_DECREF(o);
                Py_CLEAR(out);
                break;
            }
        } else if (self->pend_raw && PyList_GET_SIZE(self->pend_raw)) {
            b = Py_NewRef(PyList_GET_ITEM(self->pend_raw, 0));
            if (PyList_SetSlice(self->pend_raw, 0, 1, NULL) < 0) {
                Py_DECREF(b);
                Py_CLEAR(out);
                break;
            }
            o = message_object(self, (const unsigned char *)PyBytes_AS_STRING(b),
                               (size_t)PyBytes_GET_SIZE(b), 0, 1, &kept, NULL);
            Py_DECREF(b);
            if (!o) {
                if (PyList_GET_SIZE(out)) {
                    PyObject *exc = exc_save();
                    if (!self->pend_objs)
                        self->pend_objs = PyList_New(0);
                    if (!self->pend_objs ||
                        PyList_SetSlice(self->pend_objs, 0, 0, out) < 0)
                        PyErr_Clear();
                    exc_restore(exc);
                }
                Py_CLEAR(out);
                break;
            }
        } else {
            break;
        }
        if (PyList_Append(out, o) < 0)
            Py_CLEAR(out);
        Py_DECREF(o);
    }
    return out;
}

static PyObject *Queue_get(QueueObject *self, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"block", "timeout", "copy"};
    PyObject *a3[3] = {NULL, NULL, NULL}, *res;
    unsigned char buf[GET_COPY];
    struct take_arg t = {{NULL, 0}, NULL, NULL, 0};
    struct peek_arg a;
    struct deadline d;
    int r, copy = 1, kept;

    if (parse_args("get", args, nargs, kwnames, names, 0, a3, 3) < 0 ||
        check_open(self) < 0 || deadline_args(a3[0], a3[1], &d) < 0 ||
        (a3[2] && (copy = PyObject_IsTrue(a3[2])) < 0))
        return NULL;
    if (pending_count(self) > 0) {
        PyObject *l = pending_take(self, 1);

        if (!l)
            return NULL;
        res = PyList_GET_SIZE(l) ? Py_NewRef(PyList_GET_ITEM(l, 0)) : NULL;
        Py_DECREF(l);
        if (res)
            return res;
    }
    t.buf = copy ? buf : NULL;
    t.lend = &self->get_lend;
    r = run_try_first(self, do_take, &t, &d, 1);
    if (r == INT_MIN)
        return NULL;
    if (r == -EAGAIN || r == -ETIMEDOUT)
        return raise_empty(self);
    if (r)
        return queue_error(self, r, 0);
    if (t.copied)
        return message_object(self, buf, t.a.len, 0, 1, &kept, NULL);
    a = t.a;
    self->busy++; /* the loan keeps the handle */
    res = message_object(self, a.p, a.len, 1, copy, &kept, &r);
    if (kept != 2)
        r = kept ? 0 : shmkit_queue_release(self->q, a.p);
    self->busy--;
    maybe_finish(self);
    if (r && res) {
        Py_DECREF(res);
        return queue_error(self, r, 0);
    }
    return res;
}

/* get_many(max=64, block=True, timeout=None) -> list: waits only for the
 * first; [] if there is none; at most SHMKIT_QUEUE_BATCH (256) a call.
 * The messages are copied into the queue's scratch buffer (taken for the
 * call: another thread makes its own) and given back at once, then
 * decoded from the copy. Decoding them in place in the ring instead (a
 * peek_many, then a release_many) saved the copy but held the batch's
 * records for the whole decoding, and another consumer's take walked
 * past them every time (its walk starts at head, which stops at the
 * first record still taken): 2 producers -> 2 consumers, batches of
 * 100, the consumers' CPU went from ~80 to ~125-195 ns a message. */
static PyObject *Queue_get_many(QueueObject *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"max", "block", "timeout"};
    PyObject *a3[3] = {NULL, NULL, NULL}, *list = NULL, *objs[SHMKIT_QUEUE_BATCH];
    struct get_many_arg a = {NULL, 0, SHMKIT_QUEUE_BATCH, 0, NULL};
    struct iovec v[SHMKIT_QUEUE_BATCH];
    struct deadline d;
    Py_ssize_t max = 64;
    int r, kept;
    size_t i;

    if (parse_args("get_many", args, nargs, kwnames, names, 0, a3, 3) < 0 ||
        check_open(self) < 0 || deadline_args(a3[1], a3[2], &d) < 0)
        return NULL;
    if (a3[0] && (max = PyNumber_AsSsize_t(a3[0], PyExc_OverflowError)) == -1 &&
        PyErr_Occurred())
        return NULL;
    if (max < 1) {
        PyErr_SetString(PyExc_ValueError, "max must be at least 1");
        return NULL;
    }
    if (pending_count(self) > 0) /* what a failed call left comes first */
        return pending_take(self, max);
    a.max = max < SHMKIT_QUEUE_BATCH ? (size_t)max : SHMKIT_QUEUE_BATCH;
    a.v = v;
    a.buf = self->scratch;
    a.buflen = self->scratch_len;
    self->scratch = NULL;
    for (;;) {
        if (!a.buf) {
            a.buflen = a.buflen > SCRATCH_MIN ? a.buflen : SCRATCH_MIN;
            a.buf = PyMem_Malloc(a.buflen);
            if (!a.buf)
                return PyErr_NoMemory();
        }
        r = run_try_first(self, do_get_many, &a, &d, a.buflen <= SCRATCH_MIN);
        if (r != -EMSGSIZE)
            break;
        /* The first message is bigger than the buffer: grow to fit it. */
        PyMem_Free(a.buf);
        a.buf = NULL;
        a.buflen = round16(v[0].iov_len);
    }
    if (r == -EAGAIN || r == -ETIMEDOUT)
        list = PyList_New(0);
    else if (r && r != INT_MIN)
        queue_error(self, r, 0);
    /* The objects first, the list after: the loads hook runs Python code,
     * which must never reach a list with empty slots (gc.get_objects). */
    for (i = 0; r == 0 && i < a.got; i++) {
        objs[i] = message_object(self, v[i].iov_base, v[i].iov_len, 0, 1,
                                 &kept, NULL);
        if (!objs[i])
            break;
    }
    if (r == 0 && i == a.got)
        list = PyList_New((Py_ssize_t)a.got);
    if (r == 0 && !list) /* message i failed (or the list): keep the rest */
        pending_keep(self, objs, i, v, a.got);
    else if (r == 0) {
        size_t j;
        for (j = 0; j < i; j++)
            PyList_SET_ITEM(list, (Py_ssize_t)j, objs[j]);
    }
    /* A batch cut short by the buffer (C get_many stops at the room left)
     * makes the next call's buffer big enough for max messages of this
     * call's mean size (up to SCRATCH_MAX): get_many(256) of 2,000-byte
     * messages took 130 a call, of 4,000-byte ones 65. */
    if (r == 0 && a.got && a.got < a.max) {
        size_t used = (size_t)((unsigned char *)v[a.got - 1].iov_base - a.buf) +
                      round16(v[a.got - 1].iov_len);
        size_t mean = used / a.got, want = mean * a.max;

        want = want < SCRATCH_MAX ? want : SCRATCH_MAX;
        if (used + mean > a.buflen && want > a.buflen) {
            PyMem_Free(a.buf);
            a.buf = NULL; /* the next call allocates it */
            a.buflen = want;
        }
    }
    if (!self->scratch) {
        self->scratch = a.buf;
        self->scratch_len = a.buflen;
    } else {
        PyMem_Free(a.buf);
    }
    return list;
}

/* set_hooks(dumps, loads, Empty, Full): how objects that are not plain
 * values become frames and back, and what put and get raise. */
static PyObject *Queue_set_hooks(QueueObject *self, PyObject *args)
{
    PyObject *dumps, *loads, *empty, *full;

    if (!PyArg_ParseTuple(args, "OOOO:set_hooks", &dumps, &loads, &empty,
                          &full))
        return NULL;
    Py_XSETREF(self->dumps, Py_NewRef(dumps));
    Py_XSETREF(self->loads, Py_NewRef(loads));
    Py_XSETREF(self->empty, Py_NewRef(empty));
    Py_XSETREF(self->full, Py_NewRef(full));
    Py_RETURN_NONE;
}

/* ---- the rest of QueueBase --------------------------------------------------- */

struct join_arg {
    int unused;
};

static int do_join(shmkit_queue *q, void *arg, const struct timespec *d)
{
    (void)arg;
    return shmkit_queue_join(q, d);
}

static PyObject *Queue_join(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    struct join_arg a = {0};
    struct deadline d;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &timeout) ||
        check_mapped(self) < 0 || deadline_of(1, timeout, &d) < 0)
        return NULL;
    r = run_blocking(self, do_join, &a, &d, 0);
    if (r == INT_MIN)
        return NULL;
    if (r == -EAGAIN || r == -ETIMEDOUT)
        Py_RETURN_FALSE;
    if (r)
        return queue_error(self, r, 0);
    Py_RETURN_TRUE;
}

static PyObject *Queue_task_add(QueueObject *self, PyObject *args)
{
    Py_ssize_t n = 1;

    if (!PyArg_ParseTuple(args, "|n", &n) || check_open(self) < 0)
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must not be negative");
        return NULL;
    }
    shmkit_queue_task_add(self->q, (size_t)n);
    Py_RETURN_NONE;
}

static PyObject *Queue_task_done(QueueObject *self, PyObject *unused)
{
    int r;

    if (check_mapped(self) < 0)
        return NULL;
    r = shmkit_queue_task_done(self->q);
    if (r)
        return queue_error(self, r, 0);
    Py_RETURN_NONE;
}

static PyObject *Queue_stat(QueueObject *self, PyObject *unused)
{
    shmkit_queue_info in;
    int r;

    if (check_mapped(self) < 0)
        return NULL;
    r = shmkit_queue_stat(self->q, &in);
    if (r)
        return queue_error(self, r, 0);
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:I,s:I,s:K,s:I,s:I,s:I,s:n}",
        "capacity", (Py_ssize_t)in.capacity, "max_message",
        (Py_ssize_t)in.max_message, "max_messages", (Py_ssize_t)in.max_messages,
        "depth", (Py_ssize_t)in.depth, "reserved", (Py_ssize_t)in.reserved,
        "loaned", (Py_ssize_t)in.loaned, "bytes_used",
        (Py_ssize_t)in.bytes_used, "version", (Py_ssize_t)in.version,
        "waiting_producers", in.waiting_producers, "waiting_consumers",
        in.waiting_consumers, "unfinished", (unsigned long long)in.unfinished,
        "slots", in.slots, "slots_held", in.slots_held, "attached",
        in.attached, "pending", pending_count(self));
}

static PyObject *Queue_close(QueueObject *self, PyObject *unused)
{
    if (!self->q || self->closed)
        Py_RETURN_NONE;
    /* No shutdown: join and task counting go on (as CPython's); this
     * object's callers blocked in a put or get end at their slice's end
     * (run_blocking). The handle is closed when the object is freed. */
    self->closed = 1;
    maybe_finish(self);
    Py_RETURN_NONE;
}

static PyObject *Queue_unlink(QueueObject *self, PyObject *unused)
{
    int r;

    if (check_open(self) < 0)
        return NULL;
    r = shmkit_queue_unlink(self->q);
    if (r)
        return ext_error(self->st, r, qname(self));
    Py_RETURN_NONE;
}

static PyObject *Queue_get_name(QueueObject *self, void *unused)
{
    return Py_NewRef(self->name);
}

static PyObject *Queue_get_closed(QueueObject *self, void *unused)
{
    return PyBool_FromLong(self->closed || !self->q);
}

static PyObject *Queue_get_put_called(QueueObject *self, void *unused)
{
    return PyBool_FromLong(self->put_called);
}

static PyObject *Queue_get_max_message(QueueObject *self, void *unused)
{
    if (check_open(self) < 0)
        return NULL;
    return PyLong_FromSize_t(shmkit_queue_max_message(self->q));
}

static int Queue_init(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "create", "capacity", "max_messages",
                             "flags", NULL};
    PyObject *nameobj = Py_None;
    Py_ssize_t capacity = 0, maxmsgs = 0;
    unsigned int flags = 0;
    const char *name;
    shmkit_queue *q;
    int create = 0, r;

    if (self->q) {
        PyErr_SetString(PyExc_RuntimeError, "QueueBase already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OpnnI", kwlist, &nameobj,
                                     &create, &capacity, &maxmsgs, &flags) ||
        ext_name_arg(nameobj, &name) < 0)
        return -1;
    if (!create && !name) {
        PyErr_SetString(PyExc_ValueError, "attaching needs a name");
        return -1;
    }
    if (capacity < 0 || maxmsgs < 0) {
        PyErr_SetString(PyExc_ValueError, "capacity and max_messages must "
                                          "not be negative");
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    r = create ? shmkit_queue_create(&q, name, (size_t)capacity,
                                     (size_t)maxmsgs, flags)
               : shmkit_queue_attach(&q, name, flags);
    Py_END_ALLOW_THREADS
    if (r)
        return ext_error(self->st, r, name), -1;
    self->q = q;
    shmkit_queue_set_interruptible(q, true);
    self->name = PyUnicode_FromString(
        shmkit_block_name(shmkit_queue_block(q)));
    return self->name ? 0 : -1;
}

static PyObject *Queue_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    QueueObject *self = (QueueObject *)tp->tp_alloc(tp, 0);

    if (self)
        self->st = ext_state_of_type(tp);
    return (PyObject *)self;
}

static void Queue_dealloc(QueueObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->q)
        shmkit_queue_close(self->q);
    PyMem_Free(self->scratch);
    PyMem_Free(self->encbuf);
    Py_CLEAR(self->name);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->empty);
    Py_CLEAR(self->full);
    Py_CLEAR(self->pend_objs);
    Py_CLEAR(self->pend_raw);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int Queue_traverse(QueueObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dumps);
    Py_VISIT(self->loads);
    Py_VISIT(self->empty);
    Py_VISIT(self->full);
    Py_VISIT(self->pend_objs);
    return 0;
}

/* Kept objects may refer back to the queue: the cycle is broken here. */
static int Queue_clear(QueueObject *self)
{
    Py_CLEAR(self->pend_objs);
    Py_CLEAR(self->pend_raw);
    return 0;
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Queue_put,
     METH_FASTCALL | METH_KEYWORDS,
     "put(obj, block=True, timeout=None): one object (queue.Full if full)."},
    {"get", (PyCFunction)(void (*)(void))Queue_get,
     METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None, copy=True): the next object (queue.Empty "
     "if none); copy=False leaves out-of-band buffers in the ring. A message "
     "starting with b'SKV1' or b'SKP5' that decodes is a value, whoever put "
     "it; any other comes back as bytes."},
    {"put_many", (PyCFunction)(void (*)(void))Queue_put_many,
     METH_FASTCALL | METH_KEYWORDS,
     "put_many(objs, block=True, timeout=None) -> int put."},
    {"get_many", (PyCFunction)(void (*)(void))Queue_get_many,
     METH_FASTCALL | METH_KEYWORDS,
     "get_many(max=64, block=True, timeout=None) -> list of up to max "
     "objects, at most 256 (waits only for the first; [] if empty)."},
    {"put_bytes", (PyCFunction)(void (*)(void))Queue_put_bytes,
     METH_VARARGS | METH_KEYWORDS,
     "put_bytes(data, block=True, timeout=None) -> bool: data as one raw "
     "message, as a C producer puts it. get returns it as bytes unless it "
     "starts with b'SKV1' (a plain value) or b'SKP5' (a pickle frame) and "
     "decodes as one; peek always gives the raw bytes."},
    {"set_hooks", (PyCFunction)Queue_set_hooks, METH_VARARGS,
     "set_hooks(dumps, loads, Empty, Full)."},
    {"reserve", (PyCFunction)(void (*)(void))Queue_reserve,
     METH_VARARGS | METH_KEYWORDS,
     "reserve(nbytes, block=True, timeout=None) -> QueueSlot or None."},
    {"peek", (PyCFunction)(void (*)(void))Queue_peek,
     METH_VARARGS | METH_KEYWORDS,
     "peek(block=True, timeout=None) -> QueueSlot (read-only) or None."},
    {"join", (PyCFunction)(void (*)(void))Queue_join,
     METH_VARARGS | METH_KEYWORDS,
     "join(timeout=None) -> bool: wait until every task is done."},
    {"task_add", (PyCFunction)Queue_task_add, METH_VARARGS,
     "task_add(n=1): count n more unfinished tasks."},
    {"task_done", (PyCFunction)Queue_task_done, METH_NOARGS,
     "task_done(): one task less."},
    {"stat", (PyCFunction)Queue_stat, METH_NOARGS, "stat() -> dict"},
    {"close", (PyCFunction)Queue_close, METH_NOARGS,
     "close(): wake this object's waiters; free the handle when unused."},
    {"unlink", (PyCFunction)Queue_unlink, METH_NOARGS,
     "unlink(): remove the queue's name."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef queue_getset[] = {
    {"name", (getter)Queue_get_name, NULL, "the block's name", NULL},
    {"closed", (getter)Queue_get_closed, NULL, "close() was called", NULL},
    {"put_called", (getter)Queue_get_put_called, NULL,
     "a put, put_many or reserve was called on this object", NULL},
    {"max_message", (getter)Queue_get_max_message, NULL,
     "largest message in bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot queue_slots[] = {
    {Py_tp_new, Queue_new},
    {Py_tp_init, Queue_init},
    {Py_tp_dealloc, Queue_dealloc},
    {Py_tp_traverse, Queue_traverse},
    {Py_tp_clear, Queue_clear},
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {Py_tp_doc, "QueueBase(name=None, create=False, capacity=0, "
                "max_messages=0, flags=0): a shmkit queue (shmkit/queue.h)."},
    {0, NULL}
};

static PyType_Spec queue_spec = {
    .name = "shmkit._shmkit.QueueBase",
    .basicsize = sizeof(QueueObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = queue_slots,
};

static PyTypeObject *slot_type_of(QueueObject *self)
{
    return self->st->queue_slot_type;
}

int ext_queue_init_type(PyObject *m, ext_state *st)
{
    PyObject *q = PyType_FromModuleAndSpec(m, &queue_spec, NULL);
    PyObject *s = PyType_FromModuleAndSpec(m, &slot_spec, NULL);

    if (!q || !s || PyModule_AddObjectRef(m, "QueueBase", q) < 0 ||
        PyModule_AddObjectRef(m, "QueueSlot", s) < 0) {
        Py_XDECREF(q);
        Py_XDECREF(s);
        return -1;
    }
    st->queue_type = (PyTypeObject *)q;
    st->queue_slot_type = (PyTypeObject *)s;
    return 0;
}
