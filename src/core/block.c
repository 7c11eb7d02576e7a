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

struct shmkit__block_hooks shmkit__block_hooks;

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

/* Maps the object's first `size` bytes per b->flags into b. */
static int block_map(shmkit_block *b, size_t size)
{
    void *p;
    int r;

    r = shmkit__os.mmap(&p, size, !(b->flags & SHMKIT_RDONLY),
                        b->flags & SHMKIT_POPULATE, b->fd);
    if (r < 0)
        return r;
    if (b->flags & SHMKIT_HUGEPAGES) {
        r = shmkit__os.hugepages(p, size);
        if (r < 0) {
            shmkit__os.munmap(p, size);
            return r;
        }
    }
    b->data = p;
    b->size = size;
    return 0;
}

/* Sets the new object's size (reserving it with SHMKIT_RESERVE) and maps. */
static int block_setup_new(shmkit_block *b, size_t size)
{
    int r;

    if (b->flags & SHMKIT_RESERVE)
        r = shmkit__os.fallocate(b->fd, (off_t)size);
    else
        r = shmkit__os.ftruncate(b->fd, (off_t)size);
    if (r < 0)
        return r;
    return block_map(b, size);
}

/* Opens a new object exclusively under b->name, or under a generated name
 * if `name` is NULL. */
static int block_open_new(shmkit_block *b, const char *name, mode_t mode)
{
    int oflag = O_RDWR | O_CREAT | O_EXCL;
    int i, r;

    if (name) {
        r = shmkit__name_normalize(name, b->name);
        if (r < 0)
            return r;
        r = shmkit__os.shm_open(b->name, oflag, mode);
        return r < 0 ? open_error(r) : (b->fd = r, 0);
    }
    for (i = 0; i < GENERATED_TRIES; i++) {
        uint32_t rnd;
        r = shmkit__os.random(&rnd, sizeof rnd);
        if (r < 0)
            return r;
        snprintf(b->name, sizeof b->name, GENERATED_PREFIX "%08x", rnd);
        r = shmkit__os.shm_open(b->name, oflag, mode);
        if (r >= 0) {
            b->fd = r;
            return 0;
        }
        if (r != -EEXIST)
            return open_error(r);
    }
    return SHMKIT_EBUSYNAME;
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

/* True if this process holds a lock in [p, p + len) (see hooks.h). */
static bool block_locks_held_in(const void *p, size_t len)
{
    bool (*held)(const void *, size_t) = shmkit__block_hooks.locks_held_in;

    return held && held(p, len);
}

/* Starts a new (created) or attached block's lifetime as its flags ask. */
static int block_life_start(shmkit_block *b)
{
    const struct shmkit__life_ops *life = shmkit__block_hooks.life;

    if (!(b->flags & SHMKIT__LIFE_FLAGS))
        return 0;
    if (!life)
        return SHMKIT_ETRACKER;
    return b->created ? life->created(b) : life->attached(b);
}

int shmkit_block_create_mode(shmkit_block **out, const char *name,
                             size_t size, unsigned flags, mode_t mode)
{
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
    b = block_new(flags);
    if (!b)
        return shmkit__fail(NULL, -ENOMEM, "shmkit_block_create");
    b->created = true;
    r = block_open_new(b, name, mode & 0777);
    if (r < 0) {
        shmkit__fail(NULL, r, "shmkit_block_create(\"%s\")",
                     name ? name : "(generated)");
        free(b);
        return r;
    }
    r = block_setup_new(b, size);
    if (r == 0)
        r = block_life_start(b);
    if (r < 0) {
        shmkit__fail(NULL, r, "shmkit_block_create(\"%s\", %zu)", b->name,
                     size);
        shmkit__os.shm_unlink(b->name);
        block_free(b);
        return r;
    }
    *out = b;
    return 0;
}

int shmkit__block_create_temp(shmkit_block **out, size_t size,
                              unsigned flags)
{
    char tmp[64];
    uint32_t rnd;
    int i, r = -EEXIST;

    for (i = 0; i < GENERATED_TRIES && r == -EEXIST; i++) {
        r = shmkit__os.random(&rnd, sizeof rnd);
        if (r < 0)
            return r;
        snprintf(tmp, sizeof tmp, SHMKIT__TMP_PREFIX "%ld-%08x",
                 (long)getpid(), rnd);
        r = shmkit_block_create(out, tmp, size, flags);
    }
    return r;
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
    int r = shmkit__os.shm_unlink(b->name);

    if (r < 0)
        return shmkit__fail(b, r, "shmkit_block_unlink(\"%s\")", b->name);
    /* Not the companion removal of shmkit_unlink(): this is the hot path
     * of every create cycle, and the mapping may have been cut by a peer.
     * shmkit_list_unlink() removes a list's lock; gc collects the rest.
     * The tracker must not remove a later object that reuses the name. */
    if (life)
        life->unlinked(b->name);
    return 0;
}

int shmkit_block_rename(shmkit_block *b, const char *new_name, unsigned flags)
{
    char to[SHMKIT_NAME_MAX + 1];
    int r;

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
        return shmkit__fail(b, r, "shmkit_block_populate(\"%s\")", b->name);
    return 0;
}
