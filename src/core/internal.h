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
    bool unpublished;    /* made by shmkit__block_create_temp and not yet
                            named: nameless (name "") or, where the system
                            has no nameless objects, under a temporary
                            name (SHMKIT__TMP_PREFIX) */
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

/* Removes the name `name` (normalized into n) and tells the lifetime
 * layer; nothing else. fn names the public caller in the error message.
 * Returns 0 or -errno/SHMKIT_E*. */
SHMKIT__HIDDEN int shmkit__unlink_name(const char *name,
                                       char n[SHMKIT_NAME_MAX + 1],
                                       const char *fn);

/* Objects being built before they are published under their real name
 * are called SHMKIT__TMP_PREFIX "<creator pid>-<8 hex>": gc can tell
 * whose they are and remove those of dead creators. */
#define SHMKIT__TMP_PREFIX "shmkit-tmp-"

/* Creates a block that nobody can see yet, its memory reserved (so that
 * filling it cannot SIGBUS: -ENOSPC now instead): nameless where the
 * system allows (O_TMPFILE), else under a fresh temporary name (see
 * SHMKIT__TMP_PREFIX). Fill it, then publish it whole with
 * shmkit_block_rename(b, name, SHMKIT_NOREPLACE), which starts its
 * lifetime (SHMKIT_TRACK, SHMKIT_REFCOUNT) before the name appears, so a
 * creator killed at any instant leaves nothing, or something the tracker
 * or gc removes. shmkit_block_unlink() of an unpublished block removes
 * only a temporary name. */
SHMKIT__HIDDEN int shmkit__block_create_temp(shmkit_block **out, size_t size,
                                             unsigned flags);

/* As shmkit__block_create_temp, but the object is left empty (size 0)
 * and its memory unreserved (SHMKIT_RESERVE is ignored; with
 * SHMKIT_POPULATE it is sized first): the caller writes all `size` bytes
 * with shmkit__block_pwrite before anything touches the mapping (until
 * then a touch is SIGBUS). Those writes size the object and allocate its
 * memory as fallocate would (a full file system is -ENOSPC there, so no
 * later touch can SIGBUS for want of memory), and leave the creator's
 * page tables empty: no page faults. */
SHMKIT__HIDDEN int shmkit__block_create_temp_unsized(shmkit_block **out,
                                                     size_t size,
                                                     unsigned flags);

/* Publishes a block made by shmkit__block_create_temp*: under `name`, as
 * shmkit_block_rename(b, name, SHMKIT_NOREPLACE), or under a generated
 * "psm_" name if name is NULL. -ENOTSUP where the system cannot publish
 * atomically (no nameless objects and no atomic rename): create under
 * the final name instead. */
SHMKIT__HIDDEN int shmkit__block_publish(shmkit_block *b, const char *name);

/* Writes len bytes at off of b's object through its descriptor (pwrite),
 * the whole of them: 0, or -ENOSPC (memory allocated so far stays with
 * the object) or another -errno. */
SHMKIT__HIDDEN int shmkit__block_pwrite(const shmkit_block *b, size_t off,
                                        const void *buf, size_t len);

/* Reads len bytes at off of b's object through its descriptor (pread), not
 * its mapping: a peer that truncated the object makes this
 * SHMKIT_ETRUNCATED (a short read), never SIGBUS. Headers are read this
 * way at attach and when probing a block's kind. */
SHMKIT__HIDDEN int shmkit__block_pread(const shmkit_block *b, size_t off,
                                       void *buf, size_t len);

/* A private, sparse image of b's object: b->size bytes of zero-filled
 * memory (calloc: a large one is mapped lazily, its pages cost nothing
 * until touched) holding a pread
 * copy of the first min(b->size, head) bytes (when head >= b->size, the
 * whole object, and the memory is not zeroed first). Layers fill in more regions
 * with shmkit__block_pread and validate the image instead of the mapping.
 * Returns 0 and *img (malloc'd: free() it), or SHMKIT_ETRUNCATED /
 * -errno. */
SHMKIT__HIDDEN int shmkit__block_image(const shmkit_block *b, size_t head,
                                       unsigned char **img);

/* Multiplication and addition of sizes that report overflow (true). */
static inline bool shmkit__mul_overflow(size_t a, size_t b, size_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}
static inline bool shmkit__add_overflow(size_t a, size_t b, size_t *r)
{
    return __builtin_add_overflow(a, b, r);
}

#endif
