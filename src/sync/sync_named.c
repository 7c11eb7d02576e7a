/*
 * sync_named.c - named stand-alone locks (a mutex and a condition in a
 * small block of their own), and publishing any block with a header whole:
 * built under a temporary name, renamed into place without replacing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/os.h"
#include "sync_internal.h"

#define LOCK_MAGIC 0x4b4c4b53u /* "SKLK" read as little-endian */
/* Version of the block's own header; the mutex and the condition inside
 * carry theirs (SYNC_VERSION), checked separately. */
#define LOCK_BLOCK_VERSION 1
#define GENERATED_TRIES 64

/*
 * The block of a named lock. Everything before `mutex` is written once,
 * before the block gets its name, and never changes; `mutex` and `cond`
 * change only through their own calls; `mutex` protects nothing in here,
 * only what the users agree it protects.
 */
struct lock_block {
    uint32_t magic;        /* LOCK_MAGIC */
    uint16_t version;      /* LOCK_BLOCK_VERSION */
    uint16_t flags;        /* SHMKIT_MUTEX_RECURSIVE */
    uint64_t pid_ns;       /* creator's PID namespace inode, 0 unknown */
    uint8_t reserved[48];  /* zero */
    shmkit_mutex mutex;    /* at 64: its own cache line */
    shmkit_cond cond;      /* at 128 */
};
_Static_assert(offsetof(struct lock_block, mutex) == 64, "mutex offset");
_Static_assert(offsetof(struct lock_block, cond) == 128, "cond offset");
_Static_assert(sizeof(struct lock_block) == 192, "lock block size");

struct shmkit_lock {
    shmkit_block *block;
    struct lock_block *lb;
};

/* ---- publishing ----------------------------------------------------- */

/* Renames the filled block to `name`, or to a generated "psm_" name. */
static int publish_rename(shmkit_block *b, const char *name)
{
    char gen[16];
    uint32_t rnd;
    int i, r = -EEXIST;

    if (name)
        return shmkit_block_rename(b, name, SHMKIT_NOREPLACE);
    for (i = 0; i < GENERATED_TRIES && r == -EEXIST; i++) {
        r = shmkit__os.random(&rnd, sizeof rnd);
        if (r < 0)
            return r;
        snprintf(gen, sizeof gen, "psm_%08x", rnd);
        r = shmkit_block_rename(b, gen, SHMKIT_NOREPLACE);
    }
    return r == -EEXIST ? SHMKIT_EBUSYNAME : r;
}

int shmkit__publish(shmkit_block **out, const char *name, size_t size,
                    unsigned flags, shmkit__fill_fn fill, void *arg,
                    const char *what)
{
    shmkit_block *b = NULL;
    int r;

    *out = NULL;
    if (name) {
        char check[SHMKIT_NAME_MAX + 1];
        r = shmkit__name_normalize(name, check);
        if (r < 0)
            return shmkit__fail(NULL, r, "%s(\"%s\"): bad name", what, name);
    }
    r = shmkit__block_create_temp(&b, size, flags);
    if (r < 0)
        return shmkit__fail(NULL, r, "%s(\"%s\"): create", what,
                            name ? name : "(generated)");
    r = fill(shmkit_block_data(b), size, arg);
    if (r == 0)
        r = publish_rename(b, name);
    if (r < 0)
        goto fail_unlink;
    *out = b;
    return 0;

fail_unlink:
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    return shmkit__fail(NULL, r, "%s(\"%s\")", what,
                        name ? name : "(generated)");
}

/* ---- named locks ---------------------------------------------------- */

/* Copies the header out and checks it against the block's size. */
static int lock_block_check(const void *data, size_t size,
                            struct lock_block *copy)
{
    static const uint8_t zero[48];
    int r;

    if (!data || size < sizeof copy->magic)
        return SHMKIT_EKIND;
    memcpy(&copy->magic, data, sizeof copy->magic);
    if (copy->magic != LOCK_MAGIC)
        return SHMKIT_EKIND;
    if (size < sizeof *copy)
        return SHMKIT_ETRUNCATED;
    memcpy(copy, data, sizeof *copy);
    if (copy->version != LOCK_BLOCK_VERSION)
        return SHMKIT_EVERSION;
    if ((copy->flags & ~SHMKIT_MUTEX_RECURSIVE) ||
        memcmp(copy->reserved, zero, sizeof zero) != 0)
        return SHMKIT_ECORRUPT;
    r = shmkit__mutex_header(&copy->mutex);
    if (!r)
        r = shmkit__cond_header(&copy->cond);
    if (r)
        return r;
    if ((bool)(copy->flags & SHMKIT_MUTEX_RECURSIVE) !=
        shmkit_mutex_is_recursive(&copy->mutex))
        return SHMKIT_ECORRUPT;
    return 0;
}

int shmkit_lock_parse(const void *data, size_t size, shmkit_mutex_info *info)
{
    struct lock_block copy;
    int r = lock_block_check(data, size, &copy);

    if (r == 0 && info)
        /* Inspect the live mutex, not the copy: its state is the point. */
        r = shmkit_mutex_inspect(
            (const shmkit_mutex *)((const char *)data + 64), info);
    return r == -ENOTSUP ? 0 : r;
}

static int lock_fill(void *data, size_t size, void *arg)
{
    struct lock_block *lb = data;
    unsigned lock_flags = *(unsigned *)arg;
    int r;

    (void)size;
    lb->version = LOCK_BLOCK_VERSION;
    lb->flags = (uint16_t)lock_flags;
    lb->pid_ns = shmkit__pid_ns();
    r = shmkit_mutex_init(&lb->mutex, lock_flags);
    if (r == 0)
        r = shmkit_cond_init(&lb->cond);
    /* Last, so a half-made header never carries the magic. */
    if (r == 0)
        __atomic_store_n(&lb->magic, LOCK_MAGIC, __ATOMIC_RELEASE);
    return r;
}

static int lock_wrap(shmkit_lock **out, shmkit_block *b)
{
    shmkit_lock *l = calloc(1, sizeof *l);

    if (!l)
        return -ENOMEM;
    l->block = b;
    l->lb = shmkit_block_data(b);
    *out = l;
    return 0;
}

int shmkit_lock_create(shmkit_lock **out, const char *name,
                       unsigned lock_flags, unsigned flags)
{
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_lock_create: out is NULL");
    *out = NULL;
    if (lock_flags & ~SHMKIT_MUTEX_RECURSIVE || flags & SHMKIT_RDONLY)
        return shmkit__fail(NULL, -EINVAL, "shmkit_lock_create: flags");
    r = shmkit__publish(&b, name, sizeof(struct lock_block), flags, lock_fill,
                        &lock_flags, "shmkit_lock_create");
    if (r < 0)
        return r;
    r = lock_wrap(out, b);
    if (r < 0) {
        shmkit_block_unlink(b);
        shmkit_block_close(b);
        return shmkit__fail(NULL, r, "shmkit_lock_create");
    }
    return 0;
}

/* Checks the header from a pread copy, not the mapping: a peer truncating
 * the block makes this SHMKIT_ETRUNCATED, never SIGBUS. */
static int lock_header_pread(const shmkit_block *b, struct lock_block *copy)
{
    unsigned char h[sizeof *copy];
    size_t size = shmkit_block_size(b);
    int r;

    /* lock_block_check reads the whole header only when size allows. */
    r = shmkit__block_pread(b, 0, h, size < sizeof h ? size : sizeof h);
    return r < 0 ? r : lock_block_check(h, size, copy);
}

int shmkit_lock_attach(shmkit_lock **out, const char *name, unsigned flags)
{
    struct lock_block copy;
    shmkit_block *b;
    int r;

    if (!out)
        return shmkit__fail(NULL, -EINVAL, "shmkit_lock_attach: out is NULL");
    *out = NULL;
    if (flags & SHMKIT_RDONLY)
        return shmkit__fail(NULL, -EINVAL, "shmkit_lock_attach(\"%s\"): "
                            "a lock cannot be read-only", name ? name : "");
    r = shmkit_block_attach(&b, name, flags);
    if (r < 0)
        return r;
    r = lock_header_pread(b, &copy);
    if (r == 0)
        r = shmkit__pid_ns_check(copy.pid_ns);
    if (r == 0)
        r = lock_wrap(out, b);
    if (r < 0) {
        shmkit_block_close(b);
        return shmkit__fail(NULL, r, "shmkit_lock_attach(\"%s\")", name);
    }
    return 0;
}

shmkit_mutex *shmkit_lock_mutex(shmkit_lock *l)
{
    return &l->lb->mutex;
}

shmkit_cond *shmkit_lock_cond(shmkit_lock *l)
{
    return &l->lb->cond;
}

shmkit_block *shmkit_lock_block(shmkit_lock *l)
{
    return l->block;
}

int shmkit_lock_close(shmkit_lock *l)
{
    int r;

    if (!l)
        return 0;
    r = shmkit_block_close(l->block);
    if (r < 0)
        return r;
    free(l);
    return 0;
}

int shmkit_lock_unlink(shmkit_lock *l)
{
    return shmkit_block_unlink(l->block);
}
