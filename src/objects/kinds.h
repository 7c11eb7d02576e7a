/*
 * kinds.h - what each kind of object offers the layers above it.
 *
 * The kinds of this layer (ShareableList and its lock, typed Value/Array,
 * named locks, the queue) each know how to recognise their layout in a
 * block's bytes and what they keep beside themselves under another name.
 * The one module that answers "what is this name" (src/life/kind.c) lists
 * them in its table; a new kind adds its functions here and a row there.
 */
#ifndef SHMKIT_OBJECTS_KINDS_H
#define SHMKIT_OBJECTS_KINDS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/internal.h"

/* typed.c: SHMKIT_KIND_VALUE, _ARRAY or _LOCK if data[0..size) holds a
 * valid typed header or named lock, else SHMKIT_KIND_RAW. */
SHMKIT__HIDDEN shmkit_kind shmkit__typed_probe(const void *data, size_t size);

/* queue.c: SHMKIT_KIND_QUEUE for a queue's header, else SHMKIT_KIND_RAW. */
SHMKIT__HIDDEN shmkit_kind shmkit__queue_probe(const void *data, size_t size);

/* list.c: true if data[0..size) is a valid ShareableList (CPython layout). */
SHMKIT__HIDDEN bool shmkit__list_probe(const void *data, size_t size);
/* A sparse image of block b (core/internal.h, shmkit__block_image) with its
 * first `head` bytes and every part of a ShareableList that validation
 * reads, all read with pread: probe or validate it instead of the mapping,
 * and a peer truncating the block cannot SIGBUS the caller. 0 and *img,
 * or SHMKIT_ETRUNCATED / -errno. */
SHMKIT__HIDDEN int shmkit__list_image(const shmkit_block *b, size_t head,
                                      unsigned char **img);

/* list_lock.c: true if data[0..size) is a list's lock block (magic,
 * version, size): a sidecar. */
SHMKIT__HIDDEN bool shmkit__list_lock_probe(const void *data, size_t size);

/* list_lock.c: removes the lock a ShareableList called `list` keeps beside
 * itself ("<list>.lock"), if one of ours is there. Called once `list` has
 * been removed by name (shmkit_unlink, and every lifetime's unlink:
 * tracker, manager, refcount, gc), so the lock does not outlive its list. */
SHMKIT__HIDDEN void shmkit__list_lock_drop(const char *list);

/* list_lock.c: true if `name` is a list's lock ("<list>.lock", of our
 * layout) whose list is gone, for gc to collect. */
SHMKIT__HIDDEN bool shmkit__list_lock_orphaned(const char *name);

#endif
