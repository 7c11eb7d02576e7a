/*
 * queue_internal.h - what the queue's fuzz target and tests reach below
 * the public API.
 */
#ifndef SHMKIT_QUEUE_INTERNAL_H
#define SHMKIT_QUEUE_INTERNAL_H

#include "core/internal.h"

/* Wraps an in-memory queue image (a header and ring in [data, data +
 * size), no block) after the same validation as attach, so the fuzz
 * target runs the real code over bytes without /dev/shm. Free with
 * shmkit__queue_view_free (never shmkit_queue_close). */
SHMKIT__HIDDEN int shmkit__queue_view(shmkit_queue **out, void *data,
                                      size_t size);
SHMKIT__HIDDEN void shmkit__queue_view_free(shmkit_queue *q);

/* Lets a view of a version-2 image arm the image's liveness slots when a
 * blocking call waits behind another process's record, as a handle does
 * (the fuzz target's hostile slots). A view never takes a slot: it has no
 * block, and its memory is freed without a close. */
SHMKIT__HIDDEN void shmkit__queue_view_arm(shmkit_queue *q);

/* How this process's blocking queue calls ended waits that a record of
 * another process was in the way of (for tests and the torture): `deaths`
 * waits ended by an owner's liveness slot announcing its death (woken by
 * it, or finding it marked before sleeping; not a sleep the caller's
 * deadline ended), `slices` capped sleeps that ran out (owners without a
 * usable slot), `rechecks` armed sleeps that the once-a-second look at
 * the owners ended. Relaxed atomic counters, never reset. */
struct shmkit__queue_wait_stats {
    uint64_t deaths;
    uint64_t slices;
    uint64_t rechecks; /* armed sleeps ended by ARMED_RECHECK_S (queue.c) */
};
SHMKIT__HIDDEN extern struct shmkit__queue_wait_stats shmkit__queue_waits;

#endif
