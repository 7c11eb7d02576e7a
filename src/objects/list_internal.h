/*
 * list_internal.h - the ShareableList handle and what list.c shares with
 * list_lock.c, the tests and the fuzzer.
 */
#ifndef SHMKIT_LIST_INTERNAL_H
#define SHMKIT_LIST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include "core/internal.h"
#include "kinds.h"

/* Largest n in an 8-character "<n>s" format record. */
#define SHMKIT__LIST_SLOT_MAX 9999999u

/* The 8 bytes of a format record as a word in memory order (compilers
 * fold this to a constant for a literal). */
static inline uint64_t shmkit__word8(const char s[8])
{
    uint64_t w;

    memcpy(&w, s, 8);
    return w;
}

/* A list handle. Process-local. Everything the accessors use to bound
 * their reads (count, slot offsets, region offsets) is a private copy made
 * and validated at attach; only format records, codes and data are read
 * from shared memory at use time, and re-validated there. */
struct shmkit_list {
    unsigned char *base;   /* start of the mapping (8-byte aligned) */
    size_t size;           /* exact block size, equal to the layout size */
    size_t n;              /* item count */
    size_t fmt_off;        /* offset of the format records */
    size_t code_off;       /* offset of the back-transform codes */
    size_t *slot;          /* n + 1 absolute slot offsets; slot[n] == fmt_off */
    shmkit_block *block;   /* the block, or NULL for a memory view */
    bool own_block;        /* close the block with the list */
    bool rdonly;
    shmkit_block *lockb;   /* "<name>.lock", opened on first lock */
    bool locked;           /* this handle holds the lock */
};

/*
 * Validates data[0..size) as a complete list (every check attach makes)
 * and, if slots is not NULL, returns a malloc'd copy of the n + 1 absolute
 * slot offsets in *slots (caller frees). Returns 0, SHMKIT_ETRUNCATED,
 * SHMKIT_ECORRUPT, -EINVAL (data not 8-byte aligned) or -ENOMEM. Sets no
 * error message (probe and fuzzer call it in bulk).
 */
SHMKIT__HIDDEN int shmkit__list_validate(const void *data, size_t size,
                                         size_t **slots, size_t *n,
                                         const char **why);

/*
 * Opens a list handle over caller memory (a copy of a block, for tests and
 * the fuzzer), after full validation. The memory must outlive the handle;
 * shmkit_list_close() frees only the handle. Locking is unavailable
 * (-EINVAL). Returns 0 or the errors of shmkit__list_validate.
 */
SHMKIT__HIDDEN int shmkit__list_view(shmkit_list **out, void *data,
                                     size_t size, bool rdonly);

/* list_lock.c: releases the lock if held and closes the lock block. */
SHMKIT__HIDDEN void shmkit__list_lock_close(shmkit_list *l);

#endif
