/*
 * create_kind.h - creates one tracked object of a kind named by a string
 * ("block", "refblock", "list", "array", "value", "lock", "queue"), for
 * the tests that kill a creator part way: test_create_kill and the
 * torture's create attack. `bytes` sizes a block and a queue, `items` an
 * array. The handle is left open: the caller is a child about to exit or
 * be killed. Returns the create's result, -EINVAL for an unknown kind.
 * Header-only and free of the test framework (the torture has none).
 */
#ifndef SHMKIT_TEST_CREATE_KIND_H
#define SHMKIT_TEST_CREATE_KIND_H

#include <errno.h>
#include <string.h>

#include "shmkit.h"
#include "shmkit/queue.h"

static inline int create_kind(const char *kind, const char *name,
                              size_t bytes, size_t items)
{
    if (strcmp(kind, "block") == 0 || strcmp(kind, "refblock") == 0) {
        shmkit_block *b;
        return shmkit_block_create(&b, name, bytes,
                                   kind[0] == 'r' ? SHMKIT_REFCOUNT
                                                  : SHMKIT_TRACK);
    }
    if (strcmp(kind, "list") == 0) {
        shmkit_list *l;
        shmkit_item it[3] = {shmkit_item_int(1), shmkit_item_str("two"),
                             shmkit_item_float(3.0)};
        return shmkit_list_create(&l, name, it, 3, SHMKIT_TRACK);
    }
    if (strcmp(kind, "array") == 0) {
        shmkit_array *a;
        size_t shape[1] = {items};
        return shmkit_array_create(&a, name, 'q', 1, shape, SHMKIT_TRACK);
    }
    if (strcmp(kind, "value") == 0) {
        shmkit_array *a;
        return shmkit_value_create(&a, name, 'i', SHMKIT_TRACK);
    }
    if (strcmp(kind, "lock") == 0) {
        shmkit_lock *l;
        return shmkit_lock_create(&l, name, 0, SHMKIT_TRACK);
    }
    if (strcmp(kind, "queue") == 0) {
        shmkit_queue *q;
        return shmkit_queue_create(&q, name, bytes, 0, SHMKIT_TRACK);
    }
    return -EINVAL;
}

#endif
