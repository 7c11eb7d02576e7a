/*
 * block.c - named blocks: create, attach, close, unlink, rename, resize.
 *
 * A block is a plain POSIX shared memory object with no header, so CPython's
 * SharedMemory and shmkit see the same bytes. This is the only module that
 * maps memory; everything else builds on blocks.
 *
 * Lifetimes (tracking, reference counts) and the held-lock check belong to
 * the layers above; block.c reaches them only through shmkit__block_hooks
 * (hooks.h). What kind of object a block holds is answered above all kinds
 * (src/life/kind.c), as is unlinking by name (shmkit_unlink).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hooks.h"
#include "internal.h"
#include "os.h"

#define GENERATED_PREFIX "psm_"
#define GENERATED_TRIES 64
/* block_publish's answer where the system can neither make nameless
 * objects nor rename without replacing (not Linux). */
#define NO_ATOMIC_RENAME 1

struct shmkit__block_hooks shmkit__block_hooks;
__thread struct shmkit__publish_intent shmkit__publish_intent;

int shmkit__name_normalize(const char *name, char *out)
{
    size_t len;

    if (!name)
        return -EINVAL;
    if (name[0] == '/')
        name++;
    len = strnlen(name, SHMKIT_NAME_MAX + 1);
    if (len == 0)
        return -EINVAL;
    if (len > SHMKIT_NAME_MAX)
        return -ENAMETOOLONG;
    if (memchr(name, '/', len) || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return -EINVAL;
    memcpy(out, name, len + 1);
    return 0;
}

int shmkit_name_check(const char *name)
{
    char buf[SHMKIT_NAME_MAX + 1];

    return shmkit__name_normalize(name, buf);
}

const char *shmkit_name_problem(const char *name)
{
    size_t len;

    if (!name)
        return "no name (NULL)";
    if (name[0] == '/')
        name++;
    len = strnlen(name, SHMKIT_NAME_MAX + 1);
    if (len == 0)
        return "empty name";
    if (len > SHMKIT_NAME_MAX)
        return "name longer than 255 bytes";
    if (memchr(name, '/', len))
        return "name contains '/' (only one leading '/' is allowed)";
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return "name is '.' or '..'";
    return NULL;
}

/* Opening refuses symlinks (ELOOP) and directories (EISDIR) at the system
 * level; report them like any other non-object planted at the name. */
static int open_error(int r)
{
    return (r == -ELOOP || r == -EISDIR) ? SHMKIT_ENOTREG : r;
}

/* What a failed prefault means: the memory is not there (a full file
 * system), or the object shrank under us. */
static int populate_error(const shmkit_block *b, size_t size, int r)
{
    struct stat st;

    if (r != -EFAULT)
        return r;
    if (shmkit__os.fstat(b->fd, &st) == 0 && (uint64_t)st.st_size < size)
        return SHMKIT_ETRUNCATED;
    return -ENOSPC;
}

/* Maps the object's first `size` bytes per b->flags into b. SHMKIT_POPULATE
 * prefaults with a call that reports failure (MADV_POPULATE_*), not with
 * MAP_POPULATE, which succeeds whatever it could not fault in. */
static int block_map(shmkit_block *b, size_t size)
{
    bool writable = !(b->flags & SHMKIT_RDONLY);
    void *p;
    int r;

    r = shmkit__os.mmap(&p, size, writable, false, b->fd);
    if (r < 0)
        return r;
    if (b->flags & SHMKIT_POPULATE) {
        r = shmkit__os.populate(p, size, writable);
        if (r < 0)
            r = populate_error(b, size, r);
    }
    if (r == 0 && (b->flags & SHMKIT_HUGEPAGES))
        r = shmkit__os.hugepages(p, size);
    if (r < 0) {
        shmkit__os.munmap(p, size);
        return r;
    }
    b->data = p;
    b->size = size;
    return 0;
}

/* How a new object gets its size. */
enum new_size {
    NEW_TRUNCATE, /* ftruncate (fallocate with SHMKIT_RESERVE/POPULATE) */
    NEW_RESERVE,  /* fallocate whatever the flags say */
    NEW_UNSIZED,  /* not at all: the caller's writes size it */
};

/* Sizes the new object as `how` says and maps it. Where the memory is
 * allocated now (posix_fallocate) a full file system is -ENOSPC here, and
 * no later touch of the block can SIGBUS for want of memory. An unsized
 * object is mapped untouched. */
static int block_setup_new(shmkit_block *b, size_t size, enum new_size how)
{
    int r = 0;

    if (how == NEW_RESERVE || (how == NEW_TRUNCATE &&
                               (b->flags & (SHMKIT_RESERVE | SHMKIT_POPULATE))))
        r = shmkit__os.fallocate(b->fd, (off_t)size);
    else if (how == NEW_TRUNCATE)
        r = shmkit__os.ftruncate(b->fd, (off_t)size);
    if (r < 0)
        return r;
    return block_map(b, size);
}

/* Opens a new object under a fresh temporary name carrying this pid, for
 * systems without nameless objects: gc can tell whose it is. */
static int block_open_temp(shmkit_block *b, mode_t mode)
{
    uint32_t rnd;
    int i, r = -EEXIST;

    for (i = 0; i < GENERATED_TRIES && r == -EEXIST; i++) {
        r = shmkit__os.random(&rnd, sizeof rnd);
        if (r < 0)
            return r;
        snprintf(b->name, sizeof b->name, SHMKIT__TMP_PREFIX "%ld-%08x",
                 (long)getpid(), rnd);
        r = shmkit__os.shm_open(b->name, O_RDWR | O_CREAT | O_EXCL, mode);
    }
    if (r < 0) {
        b->name[0] = 0;
        return r == -EEXIST ? SHMKIT_EBUSYNAME : open_error(r);
    }
    b->fd = r;
    return 0;
}

/* Opens the object a create builds, invisible until published: nameless
 * where the system allows, else under a temporary name. */
static int block_open_new(shmkit_block *b, mode_t mode)
{
    int r = shmkit__os.shm_open_anon(mode);

    b->unpublished = true;
    b->name[0] = 0;
    if (r >= 0) {
        b->fd = r;
        return 0;
    }
    if (r != -EOPNOTSUPP && r != -EISDIR && r != -EINVAL)
        return r;
    return block_open_temp(b, mode);
}

/* True if this process holds a lock in [p, p + len) (see hooks.h). */
static bool block_locks_held_in(const void *p, size_t len)
{
    bool (*held)(const void *, size_t) = shmkit__block_hooks.locks_held_in;

    return held && held(p, len);
}

/* Starts an attached block's lifetime as its flags ask. */
static int block_life_start(shmkit_block *b)
{
    const struct shmkit__life_ops *life = shmkit__block_hooks.life;

    if (!(b->flags & SHMKIT__LIFE_FLAGS))
        return 0;
    if (!life)
        return SHMKIT_ETRACKER;
    return life->attached(b);
}

/* Starts a new block's lifetime as its flags ask, under b->name (not yet
 * visible) and inode ino. */
static int block_lifecycle_start(shmkit_block *b, uint64_t ino)
{
    const struct shmkit__life_ops *life = shmkit__block_hooks.life;

    if (!(b->flags & SHMKIT__LIFE_FLAGS))
        return 0;
    if (!life)
        return SHMKIT_ETRACKER;
    return life->created(b, ino);
}

static void block_lifecycle_undo(shmkit_block *b)
{
    if ((b->flags & SHMKIT__LIFE_FLAGS) && shmkit__block_hooks.life)
        shmkit__block_hooks.life->abandoned(b);
}

/*
 * Publishes an unpublished block under `name` (normalized): the lifetime
 * is recorded first (journal intent, refcount sidecar), then the name
 * appears in one step, the object already sized and filled, so there is
 * no instant at which the name shows an empty object or one nobody
 * accounts for. Never replaces: -EEXIST if the name is taken.
 */
static int block_publish(shmkit_block *b, const char *name)
{
    /* The intent is thread-local in a shared library: one lookup. */
    const struct shmkit__publish_intent intent = shmkit__publish_intent;
    char tmp[SHMKIT_NAME_MAX + 1];
    size_t len = strlen(name);
    struct stat st = {0};
    int r;

    /* Only a lifetime or a publish intent records the inode: a plain
     * create stays at the floor's system calls. */
    if ((b->flags & SHMKIT__LIFE_FLAGS) || intent.fn) {
        r = shmkit__os.fstat(b->fd, &st);
        if (r < 0)
            return r;
    }
    /* The temporary name, if any (none for a nameless object). */
    tmp[0] = 0;
    if (b->name[0])
        memcpy(tmp, b->name, strlen(b->name) + 1);
    memcpy(b->name, name, len + 1);
    r = block_lifecycle_start(b, (uint64_t)st.st_ino);
    if (r == 0 && intent.fn) {
        r = intent.fn(name, (uint64_t)st.st_ino, intent.arg);
        if (r < 0)
            block_lifecycle_undo(b);
    }
    if (r == 0) {
        r = tmp[0] ? shmkit__os.shm_rename(tmp, name, SHMKIT_NOREPLACE)
                   : shmkit__os.shm_link(b->fd, name);
        if (tmp[0] && (r == -ENOTSUP || r == -ENOSYS))
            r = NO_ATOMIC_RENAME;
        if (r != 0)
            block_lifecycle_undo(b);
    }
    if (r != 0) {
        memcpy(b->name, tmp, strlen(tmp) + 1);
        return r;
    }
    b->unpublished = false;
    return 0;
}

/* Publishes under a generated "psm_" name, retried on collision. */
static int block_publish_generated(shmkit_block *b)
{
    char gen[16];
    uint32_t rnd;
    int i, r = -EEXIST;

    for (i = 0; i < GENERATED_TRIES && r == -EEXIST; i++) {
        r = shmkit__os.random(&rnd, sizeof rnd);
        if (r < 0)
            return r;
        snprintf(gen, sizeof gen, GENERATED_PREFIX "%08x", rnd);
        r = block_publish(b, gen);
    }
    return r == -EEXIST ? SHMKIT_EBUSYNAME : r;
}

static shmkit_block *block_new(unsigned flags)
{
    shmkit_block *b = calloc(1, sizeof *b);

    if (b) {
        b->fd = -1;
        b->flags = flags;
    }
    return b;
}

/* Releases what a handle holds, without any lifecycle bookkeeping. */
static void block_free(shmkit_block *b)
{
    if (b->data)
        shmkit__os.munmap(b->data, b->size);
    if (b->fd >= 0)
        shmkit__os.close(b->fd);
    free(b);
}

/* Makes a new, unpublished block of `size` bytes. */
static int block_make(shmkit_block **out, size_t size, unsigned flags,
                      mode_t mode, enum new_size how)
{
    shmkit_block *b = block_new(flags);
    int r;

    if (!b)
        return -ENOMEM;
    b->created = true;
    r = block_open_new(b, mode & 0777);
    if (r == 0)
        r = block_setup_new(b, size, how);
    if (r < 0) {
        if (b->name[0])
            shmkit__os.shm_unlink(b->name);
        block_free(b);
        return r;
    }
    *out = b;
    return 0;
}

/* Throws away a block that never got published. */
static void block_discard(shmkit_block *b)
{
    if (b->unpublished && b->name[0])
        shmkit__os.shm_unlink(b->name);
    block_free(b);
}

/* Creates the object under its final name (or a generated one if name is
 * NULL) and sizes it there: for systems where neither a nameless object
 * nor an atomic rename exists. */
static int block_create_direct(shmkit_block **out, const char *name,
                               size_t size, unsigned flags, mode_t mode)
{
    shmkit_block *b = block_new(flags);
    struct stat st;
    uint32_t rnd;
    int i, r = -EEXIST;

    if (!b)
        return -ENOMEM;
    b->created = true;
    for (i = 0; i < GENERATED_TRIES && r == -EEXIST; i++) {
        if (!name) {
            r = shmkit__os.random(&rnd, sizeof rnd);
            if (r < 0)
                break;
            snprintf(b->name, sizeof b->name, GENERATED_PREFIX "%08x", rnd);
        } else
            snprintf(b->name, sizeof b->name, "%s", name);
        r = shmkit__os.shm_open(b->name, O_RDWR | O_CREAT | O_EXCL, mode & 0777);
        if (name)
            break;
    }
    if (r < 0) {
        free(b);
        return r == -EEXIST && !name ? SHMKIT_EBUSYNAME : open_error(r);
    }
    b->fd = r;
    r = block_setup_new(b, size, NEW_TRUNCATE);
    if (r == 0)
        r = shmkit__os.fstat(b->fd, &st);
    if (r == 0)
        r = block_lifecycle_start(b, (uint64_t)st.st_ino);
    if (r < 0) {
        shmkit__os.shm_unlink(b->name);
        block_free(b);
        return r;
    }
    *out = b;
    return 0;
}

int shmkit_block_create_mode(shmkit_block **out, const char *name,
                             size_t size, unsigned flags, mode_t mode)
{
    char n[SHMKIT_NAME_MAX + 1];
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_block_create: out is NULL");
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX)
        return shmkit__fail(NULL, -EINVAL,
                            "shmkit_block_create(\"%s\"): size %zu",
                            name ? name : "(generated)", size);
    if (flags & SHMKIT_RDONLY)
        return shmkit__fail(NULL, -EINVAL,
                            "shmkit_block_create: SHMKIT_RDONLY is for attach");
    r = name ? shmkit__name_normalize(name, n) : 0;
    if (r == 0)
        r = block_make(&b, size, flags, mode, NEW_TRUNCATE);
    if (r < 0)
        return shmkit__fail(NULL, r, "shmkit_block_create(\"%s\", %zu)",
                            name ? name : "(generated)", size);
    r = name ? block_publish(b, n) : block_publish_generated(b);
    if (r == NO_ATOMIC_RENAME) {
        /* No nameless objects and no atomic rename (not Linux): build it
         * under its own name, visible while sized, as CPython does. */
        block_discard(b);
        r = block_create_direct(&b, name ? n : NULL, size, flags, mode);
        if (r == 0) {
            *out = b;
            return 0;
        }
        return shmkit__fail(NULL, r, "shmkit_block_create(\"%s\", %zu)",
                            name ? name : "(generated)", size);
    }
    if (r < 0) {
        shmkit__fail(NULL, r, "shmkit_block_create(\"%s\", %zu)",
                     name ? name : "(generated)", size);
        block_discard(b);
        return r;
    }
    *out = b;
    return 0;
}

int shmkit__block_create_temp(shmkit_block **out, size_t size,
                              unsigned flags)
{
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX || (flags & SHMKIT_RDONLY))
        return -EINVAL;
    return block_make(out, size, flags, SHMKIT_DEFAULT_MODE, NEW_RESERVE);
}

int shmkit__block_create_temp_unsized(shmkit_block **out, size_t size,
                                      unsigned flags)
{
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX || (flags & SHMKIT_RDONLY))
        return -EINVAL;
    flags &= ~SHMKIT_RESERVE;
    /* Prefaulting needs the size set. */
    return block_make(out, size, flags, SHMKIT_DEFAULT_MODE,
                      (flags & SHMKIT_POPULATE) ? NEW_TRUNCATE : NEW_UNSIZED);
}

int shmkit__block_publish(shmkit_block *b, const char *name)
{
    int r;

    if (!b->unpublished)
        return shmkit__fail(b, -EINVAL, "shmkit__block_publish: published");
    if (name)
        return shmkit_block_rename(b, name, SHMKIT_NOREPLACE);
    r = block_publish_generated(b);
    if (r == NO_ATOMIC_RENAME)
        r = -ENOTSUP;
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_create(\"(generated)\")");
    return 0;
}

int shmkit_block_create(shmkit_block **out, const char *name, size_t size,
                        unsigned flags)
{
    return shmkit_block_create_mode(out, name, size, flags,
                                    SHMKIT_DEFAULT_MODE);
}

/* Checks that the opened object is a regular file of ours with a size we
 * can map, and returns that size in *size. */
static int block_check_object(const shmkit_block *b, size_t *size)
{
    struct stat st;
    int r;

    r = shmkit__os.fstat(b->fd, &st);
    if (r < 0)
        return r;
    if (!S_ISREG(st.st_mode))
        return SHMKIT_ENOTREG;
    if (!(b->flags & SHMKIT_ANYUSER) && st.st_uid != geteuid())
        return SHMKIT_EOWNER;
    if (st.st_size == 0)
        return SHMKIT_EEMPTY;
    if ((uint64_t)st.st_size > SIZE_MAX)
        return -EFBIG;
    *size = (size_t)st.st_size;
    return 0;
}

int shmkit_block_attach(shmkit_block **out, const char *name, unsigned flags)
{
    shmkit_block *b;
    size_t size = 0;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_block_attach: out is NULL");
    *out = NULL;
    if (flags & SHMKIT_TRACK)
        return shmkit__fail(NULL, -EINVAL,
                            "shmkit_block_attach: only the creator tracks");
    b = block_new(flags);
    if (!b)
        return shmkit__fail(NULL, -ENOMEM, "shmkit_block_attach");
    r = shmkit__name_normalize(name, b->name);
    if (r == 0) {
        r = shmkit__os.shm_open(
            b->name, (flags & SHMKIT_RDONLY) ? O_RDONLY : O_RDWR, 0);
        if (r >= 0)
            b->fd = r, r = 0;
        else
            r = open_error(r);
    }
    if (r == 0)
        r = block_check_object(b, &size);
    if (r == 0)
        r = block_map(b, size);
    if (r == 0)
        r = block_life_start(b);
    if (r < 0) {
        shmkit__fail(NULL, r, "shmkit_block_attach(\"%s\")",
                     name ? name : "(null)");
        block_free(b);
        return r;
    }
    *out = b;
    return 0;
}

void *shmkit_block_data(const shmkit_block *b)
{
    return b->data;
}

size_t shmkit_block_size(const shmkit_block *b)
{
    return b->size;
}

const char *shmkit_block_name(const shmkit_block *b)
{
    return b->name;
}

unsigned shmkit_block_flags(const shmkit_block *b)
{
    return b->flags;
}

int shmkit_block_fd(const shmkit_block *b)
{
    return b->fd;
}

const char *shmkit_block_errmsg(const shmkit_block *b)
{
    return b->errmsg;
}

int shmkit_block_close(shmkit_block *b)
{
    if (!b)
        return 0;
    if (b->data && block_locks_held_in(b->data, b->size))
        return shmkit__fail(b, SHMKIT_ELOCKHELD, "shmkit_block_close(\"%s\")",
                            b->name);
    /* b->life is only ever set by the lifetime layer, so it is there. A
     * last reference-counted close removes the name (and what a kind
     * keeps beside it, such as a list's lock). */
    if (b->life)
        shmkit__block_hooks.life->closing(b);
    block_free(b);
    return 0;
}

int shmkit__unlink_name(const char *name, char n[SHMKIT_NAME_MAX + 1],
                        const char *fn)
{
    const struct shmkit__life_ops *life = shmkit__block_hooks.life;
    int r;

    r = shmkit__name_normalize(name, n);
    if (r == 0)
        r = shmkit__os.shm_unlink(n);
    if (r < 0)
        return shmkit__fail(NULL, r, "%s(\"%s\")", fn,
                            name ? name : "(null)");
    /* The name is gone: the family tracker must not remove a later
     * object that reuses it. */
    if (life)
        life->unlinked(n);
    return 0;
}

/* The block layer's part of unlinking by name; shmkit_unlink()
 * (src/life/kind.c) also removes what the object's kind keeps beside it. */
int shmkit_unlink_block(const char *name)
{
    char n[SHMKIT_NAME_MAX + 1];

    return shmkit__unlink_name(name, n, "shmkit_unlink_block");
}

int shmkit_block_unlink(shmkit_block *b)
{
    const struct shmkit__life_ops *life = shmkit__block_hooks.life;
    int r;

    /* An unpublished block has no name but perhaps a temporary one. */
    if (b->unpublished && !b->name[0])
        return 0;
    r = shmkit__os.shm_unlink(b->name);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_unlink(\"%s\")", b->name);
    if (b->unpublished)
        return 0;
    /* Not the companion removal of shmkit_unlink(): this is the hot path
     * of every create cycle, and the mapping may have been cut by a peer.
     * shmkit_list_unlink() removes a list's lock; gc collects the rest.
     * The tracker must not remove a later object that reuses the name. */
    if (life)
        life->unlinked(b->name);
    return 0;
}

/* Publishing a block made by shmkit__block_create_temp. */
static int block_rename_unpublished(shmkit_block *b, const char *new_name,
                                    unsigned flags)
{
    char to[SHMKIT_NAME_MAX + 1];
    int r;

    if (flags != SHMKIT_NOREPLACE)
        return shmkit__fail(b, -EINVAL, "shmkit_block_rename: an unpublished "
                                        "block takes SHMKIT_NOREPLACE only");
    r = shmkit__name_normalize(new_name, to);
    if (r == 0)
        r = block_publish(b, to);
    if (r == NO_ATOMIC_RENAME)
        r = -ENOTSUP;
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_rename(\"%s\")",
                            new_name ? new_name : "(null)");
    return 0;
}

int shmkit_block_rename(shmkit_block *b, const char *new_name, unsigned flags)
{
    char to[SHMKIT_NAME_MAX + 1];
    int r;

    if (b->unpublished)
        return block_rename_unpublished(b, new_name, flags);
    if (flags & ~(SHMKIT_NOREPLACE | SHMKIT_EXCHANGE) ||
        flags == (SHMKIT_NOREPLACE | SHMKIT_EXCHANGE))
        return shmkit__fail(b, -EINVAL, "shmkit_block_rename: flags %#x",
                            flags);
    r = shmkit__name_normalize(new_name, to);
    if (r == 0)
        r = shmkit__os.shm_rename(b->name, to, flags);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_rename(\"%s\", \"%s\")",
                            b->name, new_name ? new_name : "(null)");
    if (shmkit__block_hooks.life)
        shmkit__block_hooks.life->renamed(b, to, flags & SHMKIT_EXCHANGE);
    memcpy(b->name, to, sizeof to);
    return 0;
}

int shmkit__block_pread(const shmkit_block *b, size_t off, void *buf,
                        size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = shmkit__os.pread(b->fd, p, len, (off_t)off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return SHMKIT_ETRUNCATED;
        p += n;
        off += (size_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int shmkit__block_pwrite(const shmkit_block *b, size_t off, const void *buf,
                         size_t len)
{
    const unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = shmkit__os.pwrite(b->fd, p, len, (off_t)off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        off += (size_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int shmkit__block_image(const shmkit_block *b, size_t head,
                        unsigned char **img)
{
    void *p;
    int r;

    *img = NULL;
    if (b->size == 0)
        return SHMKIT_ETRUNCATED;
    /* calloc, not a mapping of our own: a small image (a list of a few
     * thousand items) comes from the heap with no system call, which
     * halves a list attach; a large one the C library maps lazily, so its
     * untouched pages still cost nothing. */
    /* Every byte is read when the head covers the block: no zeroing. */
    p = head >= b->size ? malloc(b->size) : calloc(1, b->size);
    if (!p)
        return -ENOMEM;
    r = shmkit__block_pread(b, 0, p, head < b->size ? head : b->size);
    if (r < 0) {
        free(p);
        return r;
    }
    *img = p;
    return 0;
}

/* Remaps b to new_size; with no mapping left (size 0 seen) maps afresh. */
static int block_remap(shmkit_block *b, size_t new_size)
{
    void *p = b->data;
    int r;

    if (!p)
        return block_map(b, new_size);
    r = shmkit__os.mremap(&p, b->size, new_size);
    if (r < 0)
        return r;
    b->data = p;
    b->size = new_size;
    return 0;
}

int shmkit_block_resize(shmkit_block *b, size_t new_size)
{
    size_t old = b->size;
    int r;

    if (new_size < old)
        return shmkit__fail(b, SHMKIT_ESHRINK, "shmkit_block_resize(\"%s\", %zu)",
                            b->name, new_size);
    if (new_size == old)
        return 0;
    if (b->flags & SHMKIT_RDONLY || new_size > (size_t)INT64_MAX)
        return shmkit__fail(b, (b->flags & SHMKIT_RDONLY) ? -EBADF : -EINVAL,
                            "shmkit_block_resize(\"%s\", %zu)", b->name,
                            new_size);
    if (b->flags & SHMKIT_RESERVE)
        r = shmkit__os.fallocate(b->fd, (off_t)new_size);
    else
        r = shmkit__os.ftruncate(b->fd, (off_t)new_size);
    if (r == 0) {
        r = block_remap(b, new_size);
        if (r < 0)
            shmkit__os.ftruncate(b->fd, (off_t)old);
    }
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_resize(\"%s\", %zu)", b->name,
                            new_size);
    return 0;
}

int shmkit_block_shrink(shmkit_block *b, size_t new_size)
{
    int r;

    if (new_size == 0 || new_size > b->size)
        return shmkit__fail(b, -EINVAL, "shmkit_block_shrink(\"%s\", %zu)",
                            b->name, new_size);
    if (b->flags & SHMKIT_RDONLY)
        return shmkit__fail(b, -EBADF, "shmkit_block_shrink(\"%s\")", b->name);
    if (new_size == b->size)
        return 0;
    if (block_locks_held_in((char *)b->data + new_size, b->size - new_size))
        return shmkit__fail(b, SHMKIT_ELOCKHELD, "shmkit_block_shrink(\"%s\")",
                            b->name);
    r = shmkit__os.ftruncate(b->fd, (off_t)new_size);
    if (r == 0)
        r = block_remap(b, new_size);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_shrink(\"%s\", %zu)", b->name,
                            new_size);
    return 0;
}

int shmkit_block_refresh(shmkit_block *b)
{
    struct stat st;
    size_t now;
    bool shrunk;
    int r;

    r = shmkit__os.fstat(b->fd, &st);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_refresh(\"%s\")", b->name);
    now = (size_t)st.st_size;
    if (now == b->size)
        return 0;
    if (now == 0) {
        /* Nothing left to map: drop the mapping rather than keep pages
         * that fault on touch. */
        shmkit__os.munmap(b->data, b->size);
        b->data = NULL;
        b->size = 0;
        return shmkit__fail(b, SHMKIT_ETRUNCATED,
                            "shmkit_block_refresh(\"%s\"): size 0", b->name);
    }
    shrunk = now < b->size;
    r = block_remap(b, now);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_refresh(\"%s\")", b->name);
    if (shrunk)
        return shmkit__fail(b, SHMKIT_ETRUNCATED,
                            "shmkit_block_refresh(\"%s\"): shrunk by a peer",
                            b->name);
    return 0;
}

int shmkit_block_populate(shmkit_block *b, size_t offset, size_t len)
{
    size_t page = shmkit__os_page_size(), start;
    int r;

    if (!b->data || offset >= b->size)
        return shmkit__fail(b, -EINVAL, "shmkit_block_populate(\"%s\", %zu)",
                            b->name, offset);
    if (len > b->size - offset)
        len = b->size - offset;
    /* madvise wants a page-aligned start. */
    start = offset - offset % page;
    r = shmkit__os.populate((char *)b->data + start, len + (offset - start),
                            !(b->flags & SHMKIT_RDONLY));
    if (r < 0)
        r = populate_error(b, b->size, r);
    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_populate(\"%s\")", b->name);
    return 0;
}
