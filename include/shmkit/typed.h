/* shmkit/typed.h - part of shmkit.h; include <shmkit.h>, not this file.
 *
 * Self-describing Value and Array blocks.
 *
 * A typed block holds a header and then the data:
 *
 *   offset 0    header: magic "SKTA", version, type code, item size,
 *               number of dimensions, data offset, data size, the
 *               creator's PID namespace
 *   offset 64   a recursive shmkit_mutex (like CPython's RLock default)
 *   offset 128  the shape: SHMKIT_ARRAY_MAXDIM little 64-bit extents
 *   offset 256  the data, C order (row-major), 64-byte aligned so NumPy
 *               and SIMD loads are happy
 *
 * The header never changes after creation; the lock protects only the
 * data (and only when callers use it). Type codes are CPython's
 * sharedctypes codes, with the same C types on this platform:
 *
 *   c char   u wchar_t   b signed char   B unsigned char   h short
 *   H unsigned short   i int   I unsigned int   l long   L unsigned long
 *   q long long   Q unsigned long long   f float   d double   ? _Bool
 *
 * A Value is an Array with ndim 0 (one item). Blocks are published whole
 * (built under a temporary name, then renamed into place), so an attacher
 * never sees a half-made object; attach copies the header out of shared
 * memory and validates it (magic, version, type, item size against this
 * platform's, shape, bounds, overflow-safe) before using a byte of it.
 */
#ifndef SHMKIT_TYPED_H
#define SHMKIT_TYPED_H

#include "../shmkit.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHMKIT_ARRAY_MAXDIM 16     /* most dimensions an Array may have */
#define SHMKIT_ARRAY_ALIGN 64      /* alignment of the data */
#define SHMKIT_ARRAY_HEADER 256    /* data offset of every version-1 block */

typedef struct shmkit_array shmkit_array;

/* Everything the header says, copied out and validated. */
typedef struct shmkit_array_info {
    char typecode;                     /* one of the codes above */
    unsigned ndim;                     /* 0 (Value) .. SHMKIT_ARRAY_MAXDIM */
    size_t itemsize;                   /* bytes per item */
    size_t shape[SHMKIT_ARRAY_MAXDIM]; /* extents; unused ones are 0 */
    size_t length;                     /* items: product of the shape */
    size_t nbytes;                     /* length * itemsize */
    size_t data_offset;                /* where the data starts */
    unsigned version;                  /* layout version */
    uint64_t pid_ns;                   /* creator's PID namespace, or 0 */
} shmkit_array_info;

/* Item size of a type code, or 0 if shmkit does not know the code. */
SHMKIT_API size_t shmkit_typecode_size(char typecode);

/* True for the integer codes (b B h H i I l L q Q) the atomic operations
 * accept. */
SHMKIT_API bool shmkit_typecode_is_integer(char typecode);

/* The item's format for the buffer protocol / struct module ("i", "d",
 * "?", ...; "w" for 'u', a UCS-4 wchar_t), or NULL for an unknown code.
 * Static string. */
SHMKIT_API const char *shmkit_typecode_format(char typecode);

/*
 * Creates the typed block `name` (NULL: a generated "psm_" name) for
 * `ndim` dimensions of extents `shape` (NULL allowed when ndim is 0) of
 * type `typecode`, zero-filled, with block `flags` (as for
 * shmkit_block_create). Returns 0, or -EEXIST (name taken), SHMKIT_ETYPE
 * (unknown code), SHMKIT_ESHAPE (ndim above SHMKIT_ARRAY_MAXDIM, or a size
 * that overflows), -EINVAL (bad name), or the block layer's errors. On
 * failure nothing is left behind. On success *out owns the handle.
 */
SHMKIT_API int shmkit_array_create(shmkit_array **out, const char *name,
                                   char typecode, unsigned ndim,
                                   const size_t *shape, unsigned flags);

/* shmkit_array_create with ndim 0. */
SHMKIT_API int shmkit_value_create(shmkit_array **out, const char *name,
                                   char typecode, unsigned flags);

/*
 * Attaches to the typed block `name`, whatever its type and shape.
 * SHMKIT_EKIND if the block is not a typed block (raw bytes, a list, a
 * named lock), SHMKIT_EVERSION for a layout this library does not know,
 * SHMKIT_ETYPE for an unknown code or an item size that does not match
 * this platform's, SHMKIT_ESHAPE for a bad dimension count,
 * SHMKIT_ECORRUPT for an inconsistent header, SHMKIT_ETRUNCATED if the
 * block is smaller than the header says, SHMKIT_ENAMESPACE if it was made
 * in another PID namespace (see shmkit/sync.h), and the block layer's
 * errors. With SHMKIT_RDONLY the data is read-only:
 * shmkit_array_lock() returns NULL and the atomic writes fail with -EBADF;
 * as the lock cannot be taken then, the namespace is not checked.
 */
SHMKIT_API int shmkit_array_attach(shmkit_array **out, const char *name,
                                   unsigned flags);

/*
 * As shmkit_array_attach, and also checks what the caller expects:
 * `typecode` (0: any) else SHMKIT_ETYPE; `ndim` and `shape` (shape NULL:
 * any) else SHMKIT_ESHAPE.
 */
SHMKIT_API int shmkit_array_attach_as(shmkit_array **out, const char *name,
                                      char typecode, unsigned ndim,
                                      const size_t *shape, unsigned flags);

/*
 * Wraps a block already attached (e.g. by a tool) as an Array after the
 * same validation as attach. The array borrows b: shmkit_array_close()
 * then frees only the array handle, and b must outlive it.
 */
SHMKIT_API int shmkit_array_view(shmkit_array **out, shmkit_block *b);

/*
 * Validates a typed header in the bytes [data, data + size) (a mapped
 * block, or any buffer) and fills *info. The same checks and codes as
 * attach, without the namespace check. Never reads outside the range;
 * copies the header before checking it, so a peer changing it meanwhile
 * cannot make it pass half-checked.
 */
SHMKIT_API int shmkit_array_parse(const void *data, size_t size,
                                  shmkit_array_info *info);

/* First item; SHMKIT_ARRAY_ALIGN-aligned. Valid until close. */
SHMKIT_API void *shmkit_array_data(const shmkit_array *a);
SHMKIT_API char shmkit_array_typecode(const shmkit_array *a);
SHMKIT_API unsigned shmkit_array_ndim(const shmkit_array *a);
/* The extents (ndim of them; a process-local copy). */
SHMKIT_API const size_t *shmkit_array_shape(const shmkit_array *a);
SHMKIT_API size_t shmkit_array_itemsize(const shmkit_array *a);
/* Number of items (1 for a Value). */
SHMKIT_API size_t shmkit_array_length(const shmkit_array *a);
/* Bytes of data: length * itemsize. */
SHMKIT_API size_t shmkit_array_nbytes(const shmkit_array *a);
/* The header as validated at attach or create. */
SHMKIT_API const shmkit_array_info *shmkit_array_info_of(const shmkit_array *a);

/* The embedded recursive lock (NULL on a read-only handle). Use it around
 * read-modify-write sequences that the atomics below do not cover. */
SHMKIT_API shmkit_mutex *shmkit_array_lock(shmkit_array *a);

/* The underlying block (owned by the array unless made by _view). */
SHMKIT_API shmkit_block *shmkit_array_block(shmkit_array *a);

/* Closes the handle (and its block unless borrowed). SHMKIT_ELOCKHELD,
 * leaving it open, while this process holds the embedded lock. NULL is
 * fine. Never unlinks (except as SHMKIT_REFCOUNT says). */
SHMKIT_API int shmkit_array_close(shmkit_array *a);

/* Removes the block's name (as shmkit_block_unlink). */
SHMKIT_API int shmkit_array_unlink(shmkit_array *a);

/*
 * Atomic operations on integer items (codes b B h H i I l L q Q), at flat
 * index `i` (C order), sequentially consistent, lock-free, with the item's
 * own width: values are truncated to it on the way in, and sign- or
 * zero-extended to int64_t on the way out (a 'Q' above INT64_MAX reads as
 * its two's-complement int64_t: cast to uint64_t). Arithmetic wraps.
 * They do not take the embedded lock. Return 0, or SHMKIT_ETYPE (not an
 * integer type), SHMKIT_EINDEX (i >= length), -EBADF (write to a
 * read-only handle), -EINVAL (NULL out pointer).
 */
SHMKIT_API int shmkit_array_load(const shmkit_array *a, size_t i,
                                 int64_t *out);
SHMKIT_API int shmkit_array_store(shmkit_array *a, size_t i, int64_t v);
/* Adds delta; *old (may be NULL) receives the value before. */
SHMKIT_API int shmkit_array_fetch_add(shmkit_array *a, size_t i,
                                      int64_t delta, int64_t *old);
/*
 * If item i equals *expected (compared at the item's width), stores
 * `desired` and returns 1; otherwise stores the current value into
 * *expected and returns 0. Negative codes as above.
 */
SHMKIT_API int shmkit_array_compare_exchange(shmkit_array *a, size_t i,
                                             int64_t *expected,
                                             int64_t desired);

/*
 * The items as a typed pointer, for plain access and for the inline
 * atomics of sync_inline.h (shmkit_atomic_fetch_add_i64(&p[i], d), ...),
 * which cost what the bare instruction costs: the checks the calls above
 * make on every operation are made here once. Each returns NULL unless the
 * handle is writable and the items are integers of exactly that width and
 * signedness ('q' and, where long has 64 bits, 'l' for i64; 'Q'/'L' for
 * u64; 'i' for i32; 'I' for u32). The pointer is valid until the handle is
 * closed; keeping indices below shmkit_array_length() is the caller's job.
 */
SHMKIT_API int64_t *shmkit_array_i64(shmkit_array *a);
SHMKIT_API uint64_t *shmkit_array_u64(shmkit_array *a);
SHMKIT_API int32_t *shmkit_array_i32(shmkit_array *a);
SHMKIT_API uint32_t *shmkit_array_u32(shmkit_array *a);

/*
 * The checked atomics above, inline. shmkit_array_load, _store,
 * _fetch_add and _compare_exchange are also macros over the static
 * inline functions below, which make the same checks in the caller's code
 * (the type, the width and the handle's mode are folded into one bound,
 * set when the handle is made) and then the atomic instruction, for
 * integer items of 8 bytes (q Q, and l L on LP64); any other width, and
 * every failing check, goes to the called function, so a caller gets
 * exactly the codes the function documents above, in its order (a NULL
 * `out` or `expected` is -EINVAL before any other check).
 * The functions stay exported (the ABI, and `&shmkit_array_load` or
 * `(shmkit_array_load)(...)`, reach them). Defining SHMKIT_NO_INLINE before
 * including shmkit.h leaves the macros out.
 *
 * struct shmkit__array_fast is the first member of every shmkit_array,
 * set when the handle is made and never changed after; it is part of the
 * ABI, not for use by callers.
 */
struct shmkit__array_fast {
    unsigned char *data; /* the first item */
    size_t read_length;  /* items if they are integers of 8 bytes, else 0 */
    size_t write_length; /* the same, and 0 unless the handle may write */
};

static inline const struct shmkit__array_fast *
shmkit__array_fast_of(const shmkit_array *a)
{
    return (const struct shmkit__array_fast *)(const void *)a;
}

static inline uint64_t *shmkit__array_item8(const struct shmkit__array_fast *f,
                                            size_t i)
{
    return (uint64_t *)(void *)f->data + i;
}

static inline int shmkit__array_load_inline(const shmkit_array *a, size_t i,
                                            int64_t *out)
{
    const struct shmkit__array_fast *f = shmkit__array_fast_of(a);

    if (__builtin_expect(i < f->read_length && out != NULL, 1)) {
        *out = (int64_t)__atomic_load_n(shmkit__array_item8(f, i),
                                        __ATOMIC_SEQ_CST);
        return 0;
    }
    return (shmkit_array_load)(a, i, out);
}

static inline int shmkit__array_store_inline(shmkit_array *a, size_t i,
                                             int64_t v)
{
    const struct shmkit__array_fast *f = shmkit__array_fast_of(a);

    if (__builtin_expect(i < f->write_length, 1)) {
        __atomic_store_n(shmkit__array_item8(f, i), (uint64_t)v,
                         __ATOMIC_SEQ_CST);
        return 0;
    }
    return (shmkit_array_store)(a, i, v);
}

static inline int shmkit__array_fetch_add_inline(shmkit_array *a, size_t i,
                                                 int64_t delta, int64_t *old)
{
    const struct shmkit__array_fast *f = shmkit__array_fast_of(a);

    if (__builtin_expect(i < f->write_length, 1)) {
        uint64_t was = __atomic_fetch_add(shmkit__array_item8(f, i),
                                          (uint64_t)delta, __ATOMIC_SEQ_CST);

        if (old)
            *old = (int64_t)was;
        return 0;
    }
    return (shmkit_array_fetch_add)(a, i, delta, old);
}

static inline int shmkit__array_compare_exchange_inline(shmkit_array *a,
                                                        size_t i,
                                                        int64_t *expected,
                                                        int64_t desired)
{
    const struct shmkit__array_fast *f = shmkit__array_fast_of(a);

    if (__builtin_expect(i < f->write_length && expected != NULL, 1)) {
        uint64_t e = (uint64_t)*expected;

        if (__atomic_compare_exchange_n(shmkit__array_item8(f, i), &e,
                                        (uint64_t)desired, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return 1;
        *expected = (int64_t)e;
        return 0;
    }
    return (shmkit_array_compare_exchange)(a, i, expected, desired);
}

#ifndef SHMKIT_NO_INLINE
#define shmkit_array_load(a, i, out) shmkit__array_load_inline(a, i, out)
#define shmkit_array_store(a, i, v) shmkit__array_store_inline(a, i, v)
#define shmkit_array_fetch_add(a, i, delta, old) \
    shmkit__array_fetch_add_inline(a, i, delta, old)
#define shmkit_array_compare_exchange(a, i, expected, desired) \
    shmkit__array_compare_exchange_inline(a, i, expected, desired)
#endif

#ifdef __cplusplus
}
#endif

#endif
