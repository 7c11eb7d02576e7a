/*
 * list_lock.c - the optional lock beside a ShareableList.
 *
 * CPython's layout has no room for a lock, and adding one would break its
 * readers, so the lock lives in its own small block "<name>.lock": a
 * shmkit_mutex (robust, process-shared, see shmkit/sync.h) behind a magic
 * and a version. Any process may create it on first use; it is built under a
 * generated name and renamed into place without replacing, so two
 * processes racing to create it end up sharing the winner's, and nobody
 * ever sees a half-initialised mutex.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "list_internal.h"
#include "core/os.h"

#define LOCK_MAGIC "shmkLLK"   /* 7 characters and the NUL: 8 bytes */
#define LOCK_VERSION 2u     /* 1 held the C library's mutex */

/* The lock block. The mutex protects nothing inside this block; it
 * protects the items of the list named like the block minus ".lock". */
struct list_lock_shared {
    char magic[8];
    uint32_t version;
    uint32_t size;          /* sizeof(struct list_lock_shared) */
    union {
        shmkit_mutex mutex;
        unsigned char pad[64];
    } u;
};

_Static_assert(sizeof(shmkit_mutex) <= 64, "mutex fits its room");
_Static_assert(offsetof(struct list_lock_shared, u) == 16, "fixed layout");
_Static_assert(sizeof(struct list_lock_shared) == 80, "fixed layout");

static struct list_lock_shared *shared(const shmkit_list *l)
{
    return shmkit_block_data(l->lockb);
}

/* Initialises a fresh lock block (not yet visible under its name). */
static int lock_init(struct list_lock_shared *s)
{
    int e = shmkit_mutex_init(&s->u.mutex, 0);

    if (e)
        return e;
    s->version = LOCK_VERSION;
    s->size = sizeof *s;
    memcpy(s->magic, LOCK_MAGIC, sizeof s->magic);
    return 0;
}

/* Creates the lock block under a temporary name and publishes it as
 * `name`; -EEXIST if another process published first. */
static int lock_create(const char *name)
{
    shmkit_block *b;
    int r;

    r = shmkit__block_create_temp(&b, sizeof(struct list_lock_shared), 0);
    if (r < 0)
        return r;
    r = lock_init(shmkit_block_data(b));
    if (r == 0)
        r = shmkit_block_rename(b, name, SHMKIT_NOREPLACE);
    if (r < 0)
        shmkit_block_unlink(b);
    shmkit_block_close(b);
    return r;
}

bool shmkit__list_lock_probe(const void *data, size_t size)
{
    const struct list_lock_shared *s = data;

    shmkit_mutex_info info;

    return size == sizeof *s &&
           memcmp(s->magic, LOCK_MAGIC, sizeof s->magic) == 0 &&
           s->version == LOCK_VERSION && s->size == sizeof *s &&
           shmkit_mutex_inspect(&s->u.mutex, &info) == 0 && !info.recursive;
}

/* True if block b holds a list lock, judged from a pread copy (a peer may
 * truncate it while we look: then it is not one, and no SIGBUS). */
static bool probe_pread(const shmkit_block *b)
{
    struct list_lock_shared copy;

    return shmkit_block_size(b) == sizeof copy &&
           shmkit__block_pread(b, 0, &copy, sizeof copy) == 0 &&
           shmkit__list_lock_probe(&copy, sizeof copy);
}

/* Every list unlink runs this, and usually there is no lock: the probe
 * is one lstat that fails (0.6 us less than a failing open here), with no
 * handle to make and no error message to format (the caller's last error
 * stays its own). A lock is judged as an attach would (a regular file of
 * ours) from a pread copy. */
void shmkit__list_lock_drop(const char *list)
{
    char name[SHMKIT_NAME_MAX + 8], path[SHMKIT__PATH_MAX];
    struct list_lock_shared copy;
    struct stat st;
    bool ours;
    int fd;

    snprintf(name, sizeof name, "%s.lock", list);
    if (shmkit_name_check(name) < 0)
        return;
    shmkit__os_shm_path(path, name);
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    fd = shmkit__os.shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return;
    ours = shmkit__os.fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
           st.st_uid == geteuid() && st.st_size == (off_t)sizeof copy &&
           shmkit__os.pread(fd, &copy, sizeof copy, 0) == (ssize_t)sizeof copy &&
           shmkit__list_lock_probe(&copy, sizeof copy);
    shmkit__os.close(fd);
    if (ours)
        shmkit__os.shm_unlink(name);
}

bool shmkit__list_lock_orphaned(const char *name)
{
    char list[SHMKIT_NAME_MAX + 1], path[SHMKIT__PATH_MAX];
    size_t n = strlen(name);
    struct stat st;
    shmkit_block *b;
    bool lock;

    if (n <= 5 || n > SHMKIT_NAME_MAX || strcmp(name + n - 5, ".lock") != 0)
        return false;
    memcpy(list, name, n - 5);
    list[n - 5] = 0;
    shmkit__os_shm_path(path, list);
    if (lstat(path, &st) == 0 ||
        shmkit_block_attach(&b, name, SHMKIT_RDONLY) < 0)
        return false;
    lock = probe_pread(b);
    shmkit_block_close(b);
    return lock;
}

/* Attaches an existing lock block and checks it is one. */
static int lock_attach(shmkit_list *l, const char *name)
{
    int r;

    r = shmkit_block_attach(&l->lockb, name, 0);
    if (r < 0)
        return r;
    if (!shmkit__list_lock_probe(shmkit_block_data(l->lockb),
                                 shmkit_block_size(l->lockb))) {
        shmkit_block_close(l->lockb);
        l->lockb = NULL;
        return SHMKIT_ECORRUPT;
    }
    return 0;
}

/* Opens "<name>.lock", creating it if nobody has yet. */
static int lock_open(shmkit_list *l)
{
    char name[SHMKIT_NAME_MAX + 8];
    int r, tries;

    if (!l->block)
        return -EINVAL;
    snprintf(name, sizeof name, "%s.lock", shmkit_block_name(l->block));
    r = shmkit_name_check(name);
    if (r < 0)
        return r;
    /* Attach; else create; a racing creator may win (-EEXIST): attach
     * theirs. A few rounds cover a peer unlinking in between. */
    for (tries = 0; tries < 4; tries++) {
        r = lock_attach(l, name);
        if (r != -ENOENT)
            return r;
        r = lock_create(name);
        if (r < 0 && r != -EEXIST)
            return r;
    }
    return r;
}

int shmkit_list_lock(shmkit_list *l)
{
    int r, e;

    if (l->locked)
        return shmkit__fail(l->block, -EDEADLK,
                            "shmkit_list_lock: this handle holds the lock");
    if (!l->lockb) {
        r = lock_open(l);
        if (r < 0)
            return shmkit__fail(l->block, r, "shmkit_list_lock(\"%s.lock\")",
                                l->block ? shmkit_block_name(l->block)
                                         : "(memory)");
    }
    e = shmkit_mutex_lock(&shared(l)->u.mutex);
    if (e == SHMKIT_EOWNERDEAD) {
        /* Held, but the state is the caller's to repair: until it calls
         * shmkit_list_consistent(), unlocking leaves the lock unusable. */
        l->locked = true;
        return shmkit__fail(l->block, SHMKIT_EOWNERDEAD,
                            "shmkit_list_lock(\"%s\"): previous holder died",
                            shmkit_block_name(l->block));
    }
    if (e)
        return shmkit__fail(l->block, e, "shmkit_list_lock(\"%s\")",
                            shmkit_block_name(l->block));
    l->locked = true;
    return 0;
}

int shmkit_list_consistent(shmkit_list *l)
{
    int e;

    if (!l->locked)
        return shmkit__fail(l->block, SHMKIT_ENOTOWNER,
                            "shmkit_list_consistent: lock not held");
    e = shmkit_mutex_consistent(&shared(l)->u.mutex);
    if (e)
        return shmkit__fail(l->block, e, "shmkit_list_consistent(\"%s\")",
                            shmkit_block_name(l->block));
    return 0;
}

int shmkit_list_unlock(shmkit_list *l)
{
    int e;

    if (!l->locked)
        return shmkit__fail(l->block, SHMKIT_ENOTOWNER,
                            "shmkit_list_unlock: lock not held");
    e = shmkit_mutex_unlock(&shared(l)->u.mutex);
    if (e == SHMKIT_ENOTOWNER || e == SHMKIT_ECORRUPT)
        l->locked = false; /* released, or never ours: either way not held */
    if (e)
        return shmkit__fail(l->block, e,
                            "shmkit_list_unlock(\"%s\")",
                            shmkit_block_name(l->block));
    l->locked = false;
    return 0;
}

void shmkit__list_lock_close(shmkit_list *l)
{
    if (!l->lockb)
        return;
    if (l->locked)
        shmkit_mutex_unlock(&shared(l)->u.mutex);
    l->locked = false;
    shmkit_block_close(l->lockb);
    l->lockb = NULL;
}
