/*
 * internal.h - what the library's modules share and users never see.
 *
 * Names here are shmkit__*: visible inside libshmkit (and to the tests that
 * link the static library), hidden from the shared library's users.
 */
#ifndef SHMKIT_INTERNAL_H
#define SHMKIT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "shmkit.h"

#define SHMKIT__HIDDEN __attribute__((visibility("hidden")))
#define SHMKIT__MSG_MAX 256

/* A block handle. Process-local; nothing here is shared. */
struct shmkit_block {
    void *data;          /* start of the mapping */
    size_t size;         /* exact object size the mapping covers */
    int fd;              /* open object, close-on-exec */
    unsigned flags;      /* SHMKIT_* create/attach flags */
    bool created;        /* this handle created the object */
    void *life;          /* lifecycle state (refcount), owned by lifecycle */
    char name[SHMKIT_NAME_MAX + 1];
    char errmsg[SHMKIT__MSG_MAX];
};

/*
 * Records a failure: formats "what: reason (ERRNAME)" into the calling
 * thread's last-error buffer and, if b is not NULL, into the handle.
 * Returns `code` so callers can write `return shmkit__fail(...)`.
 */
SHMKIT__HIDDEN int shmkit__fail(shmkit_block *b, int code, const char *fmt,
                                ...) __attribute__((format(printf, 3, 4)));

/* Checks a name and stores it without the leading '/' into out (which has
 * room for SHMKIT_NAME_MAX + 1 bytes). Returns 0 or -EINVAL/-ENAMETOOLONG. */
SHMKIT__HIDDEN int shmkit__name_normalize(const char *name, char *out);

/* Objects being built before they are published under their real name
 * are called SHMKIT__TMP_PREFIX "<creator pid>-<8 hex>": gc can tell
 * whose they are and remove those of dead creators. */
#define SHMKIT__TMP_PREFIX "shmkit-tmp-"

/* Creates a block under a fresh temporary name (see SHMKIT__TMP_PREFIX),
 * to be filled and then published with shmkit_block_rename(NOREPLACE). */
SHMKIT__HIDDEN int shmkit__block_create_temp(shmkit_block **out, size_t size,
                                             unsigned flags);

/* Multiplication and addition of sizes that report overflow (true). */
static inline bool shmkit__mul_overflow(size_t a, size_t b, size_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}
static inline bool shmkit__add_overflow(size_t a, size_t b, size_t *r)
{
    return __builtin_add_overflow(a, b, r);
}

/* ---- hooks the block layer calls into other modules ---------------- */

/* lock.c: true if this process holds a shmkit lock in [p, p + len). */
SHMKIT__HIDDEN bool shmkit__locks_held_in(const void *p, size_t len);

/* tracker.c: family tracking of created blocks (SHMKIT_TRACK). */
SHMKIT__HIDDEN int shmkit__track_register(const char *name);
SHMKIT__HIDDEN void shmkit__track_unregister(const char *name);
SHMKIT__HIDDEN void shmkit__track_rename(const char *from, const char *to,
                                         bool exchange);

/* refcount.c: reference-counted lifetime (SHMKIT_REFCOUNT). attach is
 * called once the block is mapped; detach before it is unmapped and
 * returns true when this was the last attacher (the caller then unlinks).
 * rename moves the bookkeeping with the block. */
SHMKIT__HIDDEN int shmkit__ref_attach(shmkit_block *b);
SHMKIT__HIDDEN bool shmkit__ref_detach(shmkit_block *b);
SHMKIT__HIDDEN void shmkit__ref_rename(shmkit_block *b, const char *to,
                                       bool exchange);

/* life_util.c: unlinks object `name` only if it is a regular file owned by
 * this user and (ino != 0) still has inode ino. Returns 1 if it removed it
 * (or, with dry, would have), 0 if there was nothing to remove, or -errno.
 * A list's lock goes with it. */
SHMKIT__HIDDEN int shmkit__shm_unlink_if(const char *name, uint64_t ino,
                                         bool dry);

/* list.c / typed.c / lock.c: recognise a layout in a block's bytes. */
SHMKIT__HIDDEN bool shmkit__list_probe(const void *data, size_t size);
SHMKIT__HIDDEN bool shmkit__list_lock_probe(const void *data, size_t size);
/* list_lock.c: removes the lock a ShareableList called `list` keeps beside
 * itself ("<list>.lock"), if one of ours is there. Called where a name is
 * removed by name (shmkit_unlink, and every lifecycle unlink: tracker,
 * manager, refcount, gc), so the lock does not outlive its list; gc
 * collects what other paths leave. */
SHMKIT__HIDDEN void shmkit__list_lock_drop(const char *list);
/* refcount.c: shmkit's reference-count sidecar ("shmkit.ref.*"). */
SHMKIT__HIDDEN bool shmkit__life_probe(const void *data, size_t size);
SHMKIT__HIDDEN shmkit_kind shmkit__typed_probe(const void *data, size_t size);
/* queue.c: SHMKIT_KIND_QUEUE for a queue's header, else SHMKIT_KIND_RAW. */
SHMKIT__HIDDEN shmkit_kind shmkit__queue_probe(const void *data, size_t size);

#endif
