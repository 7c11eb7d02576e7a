/*
 * typed.c - self-describing Value and Array blocks: a fixed header (type,
 * item size, shape, data offset, a recursive lock), then aligned data.
 *
 * The header is written once, under a temporary name, and never changes
 * after the block is renamed into place; every reader copies it out of
 * shared memory and validates the copy before trusting a byte of it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "kinds.h"
#include "sync/sync_internal.h"

#define TYPED_MAGIC 0x41544b53u /* "SKTA" read as little-endian */
#define TYPED_VERSION 1

/*
 * The header at the start of a typed block. All fields but `lock` are
 * written before the block has its name and are read-only afterwards;
 * `lock` guards the data (for callers that use it), never the header.
 */
struct typed_header {
    uint32_t magic;        /* TYPED_MAGIC */
    uint16_t version;      /* TYPED_VERSION */
    uint16_t reserved0;    /* zero */
    uint8_t typecode;      /* ASCII, one of the sharedctypes codes */
    uint8_t ndim;          /* 0 (a Value) .. SHMKIT_ARRAY_MAXDIM */
    uint16_t itemsize;     /* bytes per item, as the creator's C type */
    uint32_t flags;        /* none yet: zero */
    uint64_t data_offset;  /* multiple of SHMKIT_ARRAY_ALIGN, >= header */
    uint64_t nbytes;       /* product(shape) * itemsize */
    uint64_t pid_ns;       /* creator's PID namespace inode, 0 unknown */
    uint8_t reserved[24];  /* zero */
    shmkit_mutex lock;     /* at 64, its own cache line: recursive */
    uint64_t shape[SHMKIT_ARRAY_MAXDIM]; /* at 128; unused ones zero */
};
_Static_assert(offsetof(struct typed_header, typecode) == 8, "typecode");
_Static_assert(offsetof(struct typed_header, data_offset) == 16, "offset");
_Static_assert(offsetof(struct typed_header, pid_ns) == 32, "pid_ns");
_Static_assert(offsetof(struct typed_header, lock) == 64, "lock");
_Static_assert(offsetof(struct typed_header, shape) == 128, "shape");
_Static_assert(sizeof(struct typed_header) == SHMKIT_ARRAY_HEADER, "size");
_Static_assert(SHMKIT_ARRAY_HEADER % SHMKIT_ARRAY_ALIGN == 0, "alignment");

/* A process-local handle. */
struct shmkit_array {
    struct shmkit__array_fast fast; /* first: the inline atomics read it */
    shmkit_block *block;
    bool borrowed;           /* made by _view: the block is not ours */
    bool writable;
    unsigned char *data;     /* first item */
    struct typed_header *hdr;
    shmkit_array_info info;  /* validated copy */
    bool is_int, is_signed;
};
_Static_assert(offsetof(struct shmkit_array, fast) == 0,
               "typed.h's inline atomics read a handle's first bytes");


/* ---- type codes ----------------------------------------------------- */

struct type_def {
    char code;
    uint8_t size;
    bool is_int, is_signed;
    const char *format;
};

static const struct type_def types[] = {
    {'c', sizeof(char), false, false, "c"},
    {'u', sizeof(wchar_t), false, false, "w"},
    {'b', sizeof(signed char), true, true, "b"},
    {'B', sizeof(unsigned char), true, false, "B"},
    {'h', sizeof(short), true, true, "h"},
    {'H', sizeof(unsigned short), true, false, "H"},
    {'i', sizeof(int), true, true, "i"},
    {'I', sizeof(unsigned int), true, false, "I"},
    {'l', sizeof(long), true, true, "l"},
    {'L', sizeof(unsigned long), true, false, "L"},
    {'q', sizeof(long long), true, true, "q"},
    {'Q', sizeof(unsigned long long), true, false, "Q"},
    {'f', sizeof(float), false, false, "f"},
    {'d', sizeof(double), false, false, "d"},
    {'?', sizeof(_Bool), false, false, "?"},
};

static const struct type_def *type_find(char code)
{
    size_t i;

    for (i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].code == code && code)
            return &types[i];
    return NULL;
}

size_t shmkit_typecode_size(char typecode)
{
    const struct type_def *t = type_find(typecode);

    return t ? t->size : 0;
}

bool shmkit_typecode_is_integer(char typecode)
{
    const struct type_def *t = type_find(typecode);

    return t && t->is_int;
}

const char *shmkit_typecode_format(char typecode)
{
    const struct type_def *t = type_find(typecode);

    return t ? t->format : NULL;
}

/* ---- validation ----------------------------------------------------- */

/* Multiplies the extents into *length; false on overflow. */
static bool shape_length(const uint64_t *shape, unsigned ndim, size_t *length)
{
    size_t n = 1;
    unsigned i;

    for (i = 0; i < ndim; i++) {
        if (shape[i] > SIZE_MAX || shmkit__mul_overflow(n, shape[i], &n))
            return false;
    }
    *length = n;
    return true;
}

/* Checks the type fields of a header copy. */
static int check_type(const struct typed_header *h)
{
    const struct type_def *t = type_find((char)h->typecode);

    if (!t || h->itemsize != t->size)
        return SHMKIT_ETYPE;
    return 0;
}

/* Checks the shape and bounds of a header copy against `size` and fills
 * the sizes of *info. */
static int check_extent(const struct typed_header *h, size_t size,
                        shmkit_array_info *info)
{
    size_t length, nbytes, end;
    unsigned i;

    if (h->ndim > SHMKIT_ARRAY_MAXDIM)
        return SHMKIT_ESHAPE;
    for (i = h->ndim; i < SHMKIT_ARRAY_MAXDIM; i++)
        if (h->shape[i] != 0)
            return SHMKIT_ECORRUPT;
    if (!shape_length(h->shape, h->ndim, &length) ||
        shmkit__mul_overflow(length, h->itemsize, &nbytes) ||
        nbytes != h->nbytes)
        return SHMKIT_ECORRUPT;
    if (h->data_offset < SHMKIT_ARRAY_HEADER || h->data_offset > SIZE_MAX ||
        h->data_offset % SHMKIT_ARRAY_ALIGN != 0 ||
        shmkit__add_overflow((size_t)h->data_offset, nbytes, &end))
        return SHMKIT_ECORRUPT;
    if (end > size)
        return SHMKIT_ETRUNCATED;
    info->length = length;
    info->nbytes = nbytes;
    info->data_offset = (size_t)h->data_offset;
    return 0;
}

/* Copies what a valid header says into *info (sizes already there). */
static void info_fill(const struct typed_header *h, shmkit_array_info *info)
{
    unsigned i;

    info->typecode = (char)h->typecode;
    info->ndim = h->ndim;
    info->itemsize = h->itemsize;
    for (i = 0; i < SHMKIT_ARRAY_MAXDIM; i++)
        info->shape[i] = i < h->ndim ? (size_t)h->shape[i] : 0;
    info->version = h->version;
    info->pid_ns = h->pid_ns;
}

int shmkit_array_parse(const void *data, size_t size, shmkit_array_info *info)
{
    static const uint8_t zero[24];
    struct typed_header h;
    shmkit_array_info tmp;
    int r;

    if (!data || size < sizeof h.magic)
        return SHMKIT_EKIND;
    memcpy(&h.magic, data, sizeof h.magic);
    if (h.magic != TYPED_MAGIC)
        return SHMKIT_EKIND;
    if (size < sizeof h)
        return SHMKIT_ETRUNCATED;
    /* Copy, then validate the copy only: a peer may be scribbling. */
    memcpy(&h, data, sizeof h);
    if (h.version != TYPED_VERSION)
        return SHMKIT_EVERSION;
    r = check_type(&h);
    if (r)
        return r;
    memset(&tmp, 0, sizeof tmp);
    r = check_extent(&h, size, &tmp);
    if (r)
        return r;
    if (h.reserved0 || h.flags || memcmp(h.reserved, zero, sizeof zero))
        return SHMKIT_ECORRUPT;
    /* A lock of another layout version is SHMKIT_EVERSION (sync.h). */
    r = shmkit__mutex_header(&h.lock);
    if (r)
        return r;
    if (!shmkit_mutex_is_recursive(&h.lock))
        return SHMKIT_ECORRUPT;
    info_fill(&h, &tmp);
    if (info)
        *info = tmp;
    return 0;
}

shmkit_kind shmkit__typed_probe(const void *data, size_t size)
{
    shmkit_array_info info;

    if (shmkit_array_parse(data, size, &info) == 0)
        return info.ndim == 0 ? SHMKIT_KIND_VALUE : SHMKIT_KIND_ARRAY;
    if (shmkit_lock_parse(data, size, NULL) == 0)
        return SHMKIT_KIND_LOCK;
    return SHMKIT_KIND_RAW;
}

/* ---- create, attach, close ------------------------------------------ */

struct typed_spec {
    char typecode;
    unsigned ndim;
    const size_t *shape;
    size_t itemsize, nbytes;
};

/* Checks what create was asked for and computes the sizes. */
static int spec_check(struct typed_spec *s)
{
    size_t length = 1;
    unsigned i;

    s->itemsize = shmkit_typecode_size(s->typecode);
    if (!s->itemsize)
        return SHMKIT_ETYPE;
    if (s->ndim > SHMKIT_ARRAY_MAXDIM || (s->ndim && !s->shape))
        return SHMKIT_ESHAPE;
    for (i = 0; i < s->ndim; i++)
        if (shmkit__mul_overflow(length, s->shape[i], &length))
            return SHMKIT_ESHAPE;
    if (shmkit__mul_overflow(length, s->itemsize, &s->nbytes) ||
        s->nbytes > (size_t)INT64_MAX - SHMKIT_ARRAY_HEADER)
        return SHMKIT_ESHAPE;
    return 0;
}

/* Builds the header in a new, zero-filled block (see shmkit__publish). */
static int typed_fill(void *data, size_t size, void *arg)
{
    const struct typed_spec *s = arg;
    struct typed_header *h = data;
    unsigned i;
    int r;

    (void)size;
    h->version = TYPED_VERSION;
    h->typecode = (uint8_t)s->typecode;
    h->ndim = (uint8_t)s->ndim;
    h->itemsize = (uint16_t)s->itemsize;
    h->data_offset = SHMKIT_ARRAY_HEADER;
    h->nbytes = s->nbytes;
    h->pid_ns = shmkit__pid_ns();
    for (i = 0; i < s->ndim; i++)
        h->shape[i] = s->shape[i];
    /* Recursive, like the RLock CPython gives a Value by default. */
    r = shmkit_mutex_init(&h->lock, SHMKIT_MUTEX_RECURSIVE);
    if (r == 0)
        __atomic_store_n(&h->magic, TYPED_MAGIC, __ATOMIC_RELEASE);
    return r;
}

/* Makes a handle over a validated block. */
static int array_wrap(shmkit_array **out, shmkit_block *b, bool borrowed,
                      const shmkit_array_info *info)
{
    const struct type_def *t = type_find(info->typecode);
    shmkit_array *a = calloc(1, sizeof *a);

    if (!a)
        return -ENOMEM;
    a->block = b;
    a->borrowed = borrowed;
    a->writable = !(shmkit_block_flags(b) & SHMKIT_RDONLY);
    a->hdr = shmkit_block_data(b);
    a->data = (unsigned char *)a->hdr + info->data_offset;
    a->info = *info;
    a->is_int = t->is_int;
    a->is_signed = t->is_signed;
    a->fast.data = a->data;
    a->fast.read_length = t->is_int && info->itemsize == 8 ? info->length : 0;
    a->fast.write_length = a->writable ? a->fast.read_length : 0;
    *out = a;
    return 0;
}

int shmkit_array_create(shmkit_array **out, const char *name, char typecode,
                        unsigned ndim, const size_t *shape, unsigned flags)
{
    struct typed_spec s = {typecode, ndim, shape, 0, 0};
    shmkit_array_info info;
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_array_create: out is NULL");
    *out = NULL;
    r = spec_check(&s);
    if (r == 0 && (flags & SHMKIT_RDONLY))
        r = -EINVAL;
    if (r)
        return shmkit__fail(NULL, r, "shmkit_array_create(\"%s\", '%c', %u)",
                            name ? name : "(generated)", typecode ? typecode : '0',
                            ndim);
    r = shmkit__publish(&b, name, SHMKIT_ARRAY_HEADER + s.nbytes, flags,
                        typed_fill, &s, "shmkit_array_create");
    if (r < 0)
        return r;
    r = shmkit_array_parse(shmkit_block_data(b), shmkit_block_size(b), &info);
    if (r == 0)
        r = array_wrap(out, b, false, &info);
    if (r < 0) {
        shmkit_block_unlink(b);
        shmkit_block_close(b);
        return shmkit__fail(NULL, r, "shmkit_array_create");
    }
    return 0;
}

int shmkit_value_create(shmkit_array **out, const char *name, char typecode,
                        unsigned flags)
{
    return shmkit_array_create(out, name, typecode, 0, NULL, flags);
}

/* Refuses a block made in another PID namespace, unless it is mapped
 * read-only: the danger is only in taking its lock, which a read-only
 * handle cannot. */
static int namespace_check(const shmkit_block *b, const shmkit_array_info *in)
{
    if (shmkit_block_flags(b) & SHMKIT_RDONLY)
        return 0;
    return shmkit__pid_ns_check(in->pid_ns);
}

/* Parses the header of block b from a pread copy, not the mapping: a peer
 * truncating the block makes this SHMKIT_ETRUNCATED, never SIGBUS. */
static int header_pread(const shmkit_block *b, shmkit_array_info *info)
{
    unsigned char h[sizeof(struct typed_header)];
    size_t size = shmkit_block_size(b);
    int r;

    /* shmkit_array_parse reads the whole header only when size allows. */
    r = shmkit__block_pread(b, 0, h, size < sizeof h ? size : sizeof h);
    return r < 0 ? r : shmkit_array_parse(h, size, info);
}

/* Checks a validated header against what the caller expects. */
static int expect_check(const shmkit_array_info *info, char typecode,
                        unsigned ndim, const size_t *shape)
{
    unsigned i;

    if (typecode && typecode != info->typecode)
        return SHMKIT_ETYPE;
    if (!shape)
        return 0;
    if (ndim != info->ndim)
        return SHMKIT_ESHAPE;
    for (i = 0; i < ndim; i++)
        if (shape[i] != info->shape[i])
            return SHMKIT_ESHAPE;
    return 0;
}

int shmkit_array_attach_as(shmkit_array **out, const char *name,
                           char typecode, unsigned ndim, const size_t *shape,
                           unsigned flags)
{
    shmkit_array_info info;
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_array_attach: out is NULL");
    *out = NULL;
    r = shmkit_block_attach(&b, name, flags);
    if (r < 0)
        return r;
    r = header_pread(b, &info);
    if (r == 0)
        r = namespace_check(b, &info);
    if (r == 0)
        r = expect_check(&info, typecode, ndim, shape);
    if (r == 0)
        r = array_wrap(out, b, false, &info);
    if (r < 0) {
        shmkit_block_close(b);
        return shmkit__fail(NULL, r, "shmkit_array_attach(\"%s\")", name);
    }
    return 0;
}

int shmkit_array_attach(shmkit_array **out, const char *name, unsigned flags)
{
    return shmkit_array_attach_as(out, name, 0, 0, NULL, flags);
}

int shmkit_array_view(shmkit_array **out, shmkit_block *b)
{
    shmkit_array_info info;
    int r;

    if (!out || !b)
        return shmkit__fail(NULL, -EINVAL, "shmkit_array_view: NULL");
    *out = NULL;
    r = shmkit_array_parse(shmkit_block_data(b), shmkit_block_size(b), &info);
    if (r == 0)
        r = namespace_check(b, &info);
    if (r == 0)
        r = array_wrap(out, b, true, &info);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_array_view(\"%s\")",
                            shmkit_block_name(b));
    return 0;
}

int shmkit_array_close(shmkit_array *a)
{
    int r;

    if (!a)
        return 0;
    if (a->borrowed) {
        if (shmkit__locks_held_in(&a->hdr->lock, sizeof a->hdr->lock))
            return shmkit__fail(a->block, SHMKIT_ELOCKHELD,
                                "shmkit_array_close(\"%s\")",
                                shmkit_block_name(a->block));
    } else {
        r = shmkit_block_close(a->block);
        if (r < 0)
            return r;
    }
    free(a);
    return 0;
}

int shmkit_array_unlink(shmkit_array *a)
{
    return shmkit_block_unlink(a->block);
}

/* ---- accessors ------------------------------------------------------ */

void *shmkit_array_data(const shmkit_array *a)
{
    return a->data;
}

/* The items as integers of `size` bytes and signedness `sig`, or NULL. */
static void *typed_items(shmkit_array *a, size_t size, bool sig)
{
    if (!a || !a->writable || !a->is_int || a->info.itemsize != size ||
        a->is_signed != sig || ((uintptr_t)a->data % size) != 0)
        return NULL;
    return a->data;
}

int64_t *shmkit_array_i64(shmkit_array *a)
{
    return typed_items(a, sizeof(int64_t), true);
}

uint64_t *shmkit_array_u64(shmkit_array *a)
{
    return typed_items(a, sizeof(uint64_t), false);
}

int32_t *shmkit_array_i32(shmkit_array *a)
{
    return typed_items(a, sizeof(int32_t), true);
}

uint32_t *shmkit_array_u32(shmkit_array *a)
{
    return typed_items(a, sizeof(uint32_t), false);
}

char shmkit_array_typecode(const shmkit_array *a)
{
    return a->info.typecode;
}

unsigned shmkit_array_ndim(const shmkit_array *a)
{
    return a->info.ndim;
}

const size_t *shmkit_array_shape(const shmkit_array *a)
{
    return a->info.shape;
}

size_t shmkit_array_itemsize(const shmkit_array *a)
{
    return a->info.itemsize;
}

size_t shmkit_array_length(const shmkit_array *a)
{
    return a->info.length;
}

size_t shmkit_array_nbytes(const shmkit_array *a)
{
    return a->info.nbytes;
}

const shmkit_array_info *shmkit_array_info_of(const shmkit_array *a)
{
    return &a->info;
}

shmkit_mutex *shmkit_array_lock(shmkit_array *a)
{
    return a->writable ? &a->hdr->lock : NULL;
}

shmkit_block *shmkit_array_block(shmkit_array *a)
{
    return a->block;
}

/* ---- atomics -------------------------------------------------------- */

/* The address of integer item i, after the checks every atomic makes. */
static inline int atomic_item(const shmkit_array *a, size_t i, bool write,
                              void **p)
{
    if (__builtin_expect(!a->is_int, 0))
        return SHMKIT_ETYPE;
    if (__builtin_expect(i >= a->info.length, 0))
        return SHMKIT_EINDEX;
    if (__builtin_expect(write && !a->writable, 0))
        return -EBADF;
    *p = a->data + i * a->info.itemsize;
    return 0;
}

static int atomic_fail(const shmkit_array *a, int r, const char *op, size_t i)
{
    return shmkit__fail(NULL, r, "shmkit_array_%s(\"%s\", %zu)", op,
                        shmkit_block_name(a->block), i);
}

/* Widens an item's bits to int64_t: sign-extends signed types. */
static inline int64_t widen(const shmkit_array *a, uint64_t v)
{
    unsigned bits = (unsigned)a->info.itemsize * 8;

    if (bits == 64 || !a->is_signed)
        return (int64_t)v;
    v &= (UINT64_C(1) << bits) - 1;
    if (v & (UINT64_C(1) << (bits - 1)))
        v |= ~((UINT64_C(1) << bits) - 1);
    return (int64_t)v;
}

/* The operations at the item's width, on unsigned types so overflow
 * wraps instead of being undefined. */
static inline uint64_t raw_load(const void *p, size_t size)
{
    switch (size) {
    case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_SEQ_CST);
    case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_SEQ_CST);
    case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST);
    default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST);
    }
}

static inline void raw_store(void *p, size_t size, uint64_t v)
{
    switch (size) {
    case 1: __atomic_store_n((uint8_t *)p, (uint8_t)v, __ATOMIC_SEQ_CST); break;
    case 2: __atomic_store_n((uint16_t *)p, (uint16_t)v, __ATOMIC_SEQ_CST); break;
    case 4: __atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST); break;
    default: __atomic_store_n((uint64_t *)p, v, __ATOMIC_SEQ_CST); break;
    }
}

static inline uint64_t raw_fetch_add(void *p, size_t size, uint64_t d)
{
    switch (size) {
    case 1: return __atomic_fetch_add((uint8_t *)p, (uint8_t)d, __ATOMIC_SEQ_CST);
    case 2: return __atomic_fetch_add((uint16_t *)p, (uint16_t)d, __ATOMIC_SEQ_CST);
    case 4: return __atomic_fetch_add((uint32_t *)p, (uint32_t)d, __ATOMIC_SEQ_CST);
    default: return __atomic_fetch_add((uint64_t *)p, d, __ATOMIC_SEQ_CST);
    }
}

#define CAS(T, p, e, d)                                                     \
    __atomic_compare_exchange_n((T *)(p), (T *)(e), (T)(d), false,          \
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

/* Compare-exchange at the width; *e (that width's bits, in a uint64_t's
 * low end) receives the current value on failure. */
static inline bool raw_cas(void *p, size_t size, uint64_t *e, uint64_t d)
{
    uint8_t e1 = (uint8_t)*e;
    uint16_t e2 = (uint16_t)*e;
    uint32_t e4 = (uint32_t)*e;
    bool ok;

    switch (size) {
    case 1: ok = CAS(uint8_t, p, &e1, d); *e = e1; return ok;
    case 2: ok = CAS(uint16_t, p, &e2, d); *e = e2; return ok;
    case 4: ok = CAS(uint32_t, p, &e4, d); *e = e4; return ok;
    default: return CAS(uint64_t, p, e, d);
    }
}

/* The called forms of the atomics. typed.h makes the same names macros
 * over inline forms, which come here for every width but 8 bytes and for
 * every failing check: the parentheses keep the macros out. */
int (shmkit_array_load)(const shmkit_array *a, size_t i, int64_t *out)
{
    void *p;
    int r = out ? atomic_item(a, i, false, &p) : -EINVAL;

    if (r)
        return atomic_fail(a, r, "load", i);
    *out = widen(a, raw_load(p, a->info.itemsize));
    return 0;
}

int (shmkit_array_store)(shmkit_array *a, size_t i, int64_t v)
{
    void *p;
    int r = atomic_item(a, i, true, &p);

    if (r)
        return atomic_fail(a, r, "store", i);
    raw_store(p, a->info.itemsize, (uint64_t)v);
    return 0;
}

int (shmkit_array_fetch_add)(shmkit_array *a, size_t i, int64_t delta,
                           int64_t *old)
{
    uint64_t v;
    void *p;
    int r = atomic_item(a, i, true, &p);

    if (r)
        return atomic_fail(a, r, "fetch_add", i);
    v = raw_fetch_add(p, a->info.itemsize, (uint64_t)delta);
    if (old)
        *old = widen(a, v);
    return 0;
}

int (shmkit_array_compare_exchange)(shmkit_array *a, size_t i,
                                  int64_t *expected, int64_t desired)
{
    uint64_t e;
    void *p;
    int r = expected ? atomic_item(a, i, true, &p) : -EINVAL;

    if (r)
        return atomic_fail(a, r, "compare_exchange", i);
    e = (uint64_t)*expected;
    if (raw_cas(p, a->info.itemsize, &e, (uint64_t)desired))
        return 1;
    *expected = widen(a, e);
    return 0;
}
