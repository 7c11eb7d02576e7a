/*
 * queue_hdr.h - a queue's header as the tests see it, byte by byte.
 * Header-only and free of the test framework.
 */
#ifndef SHMKIT_TEST_QUEUE_HDR_H
#define SHMKIT_TEST_QUEUE_HDR_H

#include <stdint.h>
#include <string.h>

#include "shmkit.h"
#include "shmkit/queue.h"
#include "objects/queue_internal.h"

/* The 64-bit header field at byte off of q's block (head is at 128,
 * tail at 136). */
static inline uint64_t queue_hdr64(shmkit_queue *q, size_t off)
{
    uint64_t v;

    memcpy(&v, (unsigned char *)shmkit_block_data(shmkit_queue_block(q)) + off,
           8);
    return v;
}

/* A queue of layout version 1 (the previous library's: the ring right
 * after the 256-byte header, no liveness slots), for the tests of how this
 * library still serves one (test_queue_live, test_queue_owners): a new
 * 4 KiB queue's header rewritten by hand before any record, closed, and
 * attached again into *out. Returns the create's, the close's or the
 * attach's result. */
static inline int queue_make_v1(const char *name, shmkit_queue **out)
{
    shmkit_queue *made;
    unsigned char *p;
    uint16_t v1 = 1;
    uint64_t ring = SHMKIT_QUEUE_HEADER;
    uint32_t zero = 0;
    int r = shmkit_queue_create(&made, name, 4096, 0, 0);

    if (r)
        return r;
    p = shmkit_block_data(shmkit_queue_block(made));
    memcpy(p + 4, &v1, 2);    /* version */
    memcpy(p + 16, &ring, 8); /* ring_offset */
    memcpy(p + 40, &zero, 4); /* slots_offset */
    memcpy(p + 44, &zero, 4); /* nslots */
    r = shmkit_queue_close(made);
    return r ? r : shmkit_queue_attach(out, name, 0);
}

/* How this process's queue waits have ended so far (src/objects/queue.c
 * counts them): compared before and after a wait. */
static inline struct shmkit__queue_wait_stats queue_waits_now(void)
{
    struct shmkit__queue_wait_stats s;

    s.deaths = __atomic_load_n(&shmkit__queue_waits.deaths, __ATOMIC_SEQ_CST);
    s.slices = __atomic_load_n(&shmkit__queue_waits.slices, __ATOMIC_SEQ_CST);
    s.rechecks = __atomic_load_n(&shmkit__queue_waits.rechecks,
                                 __ATOMIC_SEQ_CST);
    return s;
}

#endif
