/*
 * kind.c - what kind of object a name holds, and what goes with it.
 *
 * This module stands above every kind of object (src/objects: lists and
 * their locks, typed Value/Array, named locks, queues; src/life: refcount
 * sidecars) and is the one place that lists them all. `shmkit ls`/`show`
 * (shmkit_block_kind), gc (orphaned companions) and unlinking by name
 * (shmkit_unlink) ask it instead of knowing the kinds themselves.
 *
 * A new kind of object adds one row to `kinds` below: how to recognise it,
 * what it keeps beside itself under another name, and how gc tells such a
 * companion whose owner is gone.
 */

#include <stdlib.h>

#include "life.h"
#include "objects/kinds.h"

struct kind_row {
    /* The kind this row recognises in a block's bytes: returns it, or
     * SHMKIT_KIND_RAW if the bytes are not of this row's kind. */
    shmkit_kind (*probe)(const void *data, size_t size);
    /* The object `name` of this (or an unknown) kind was just removed:
     * remove what it keeps beside itself, if that is there. May be NULL. */
    void (*unlinked)(const char *name);
    /* True if `name` is a companion of this row's kind whose owner is
     * gone (gc removes it). May be NULL. */
    bool (*orphaned)(const char *name);
};

static shmkit_kind list_kind(const void *data, size_t size)
{
    return shmkit__list_probe(data, size) ? SHMKIT_KIND_LIST : SHMKIT_KIND_RAW;
}

static shmkit_kind list_lock_kind(const void *data, size_t size)
{
    return shmkit__list_lock_probe(data, size) ? SHMKIT_KIND_SIDECAR
                                               : SHMKIT_KIND_RAW;
}

static shmkit_kind refcount_kind(const void *data, size_t size)
{
    return shmkit__life_probe(data, size) ? SHMKIT_KIND_SIDECAR
                                          : SHMKIT_KIND_RAW;
}

/* Probed in this order; the first that recognises the bytes wins. Typed
 * headers come first: they carry a magic, a list has none. */
static const struct kind_row kinds[] = {
    {shmkit__typed_probe, NULL, NULL},          /* value, array, lock */
    {list_kind, shmkit__list_lock_drop, NULL},  /* ShareableList */
    {shmkit__queue_probe, NULL, NULL},          /* queue */
    {list_lock_kind, NULL, shmkit__list_lock_orphaned}, /* "<list>.lock" */
    {refcount_kind, NULL, NULL},  /* refcount sidecar (gc reaps by prefix) */
};

#define NKINDS (sizeof kinds / sizeof kinds[0])

/* Header bytes the probes read: every kind's header fits. */
#define PROBE_HEAD 65536

shmkit_kind shmkit_block_kind(const shmkit_block *b)
{
    shmkit_kind k = SHMKIT_KIND_RAW;
    unsigned char *img;
    size_t i;

    if (!b->data)
        return SHMKIT_KIND_RAW;
    /* Probe a pread copy, never the mapping: a peer may truncate the
     * block while we look (then the answer is "raw", not SIGBUS). */
    if (shmkit__list_image(b, PROBE_HEAD, &img) < 0)
        return SHMKIT_KIND_RAW;
    for (i = 0; i < NKINDS && k == SHMKIT_KIND_RAW; i++)
        k = kinds[i].probe(img, b->size);
    free(img);
    return k;
}

const char *shmkit_kind_name(shmkit_kind k)
{
    static const char *const names[] = {"raw",   "list", "array",
                                        "value", "lock", "sidecar",
                                        "queue"};

    if ((unsigned)k >= sizeof names / sizeof names[0])
        return "raw";
    return names[k];
}

void shmkit__kind_unlinked(const char *name)
{
    size_t i;

    /* The object is gone, so its kind cannot be read any more: every kind
     * checks for its own companions (each checks their layout first). */
    for (i = 0; i < NKINDS; i++)
        if (kinds[i].unlinked)
            kinds[i].unlinked(name);
}

bool shmkit__kind_orphaned(const char *name)
{
    size_t i;

    for (i = 0; i < NKINDS; i++)
        if (kinds[i].orphaned && kinds[i].orphaned(name))
            return true;
    return false;
}

int shmkit_unlink(const char *name)
{
    char n[SHMKIT_NAME_MAX + 1];
    int r = shmkit__unlink_name(name, n, "shmkit_unlink");

    /* What the object's kind keeps beside it (a list's lock) goes too. */
    if (r == 0)
        shmkit__kind_unlinked(n);
    return r;
}
