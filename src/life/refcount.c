/*
 * refcount.c - reference-counted block lifetime (SHMKIT_REFCOUNT).
 *
 * The block stays header-free (CPython attaches to it as to any other).
 * Beside it lives a sidecar object, /dev/shm/shmkit.ref.<hash of name>,
 * holding one (pid, process start time) slot per attaching handle under a
 * robust process-shared mutex. Attach adds a slot, close removes it; both
 * first reap slots whose process is gone (pid + start time, so a reused
 * pid does not count). When no slot is left the sidecar is marked dead and
 * unlinked, and block.c unlinks the block.
 *
 * The sidecar is built anonymously (O_TMPFILE) and linked under its name
 * only when complete, so nobody sees one half made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "life.h"
#include "core/os.h"

#define REF_MAGIC "SKRF"
#define REF_VERSION 1u
#define REF_SIZE (256u * 1024u) /* sparse: only touched pages cost memory */
#define REF_TRIES 8

struct ref_slot {
    int32_t pid;
    uint32_t pad;
    uint64_t start; /* process start time, /proc/PID/stat field 22 */
};

struct ref_header {
    char magic[4];       /* "SKRF"; immutable once linked */
    uint32_t version;    /* immutable */
    uint64_t block_ino;  /* inode of the block counted; immutable */
    uint32_t nslots;     /* capacity; immutable */
    uint32_t pad0;
    union {
        pthread_mutex_t m;
        char space[64];
    } lock;
    /* Everything below is protected by lock. */
    uint32_t dead;       /* lifetime over: block unlinked or going */
    uint32_t count;      /* live slots at the front of slots[] */
    char name[SHMKIT_NAME_MAX + 1]; /* the block's current name */
    char pad1[7];
    struct ref_slot slots[];
};

_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits its space");
_Static_assert(offsetof(struct ref_header, lock) == 24, "layout");
_Static_assert(offsetof(struct ref_header, dead) == 88, "layout");
_Static_assert(offsetof(struct ref_header, name) == 96, "layout");
_Static_assert(sizeof(struct ref_header) == 360, "layout");
_Static_assert(sizeof(struct ref_slot) == 16, "layout");

#define REF_NSLOTS ((REF_SIZE - sizeof(struct ref_header)) / sizeof(struct ref_slot))

/* b->life of a refcounted handle. */
struct ref_life {
    int fd;
    struct ref_header *h;
    uint64_t my_start;
    char sc[SHMKIT_NAME_MAX + 1];
};

void shmkit__ref_sidecar_name(const char *name, char *out)
{
    snprintf(out, SHMKIT_NAME_MAX + 1, SHMKIT__REF_PREFIX "%016" PRIx64,
             shmkit__hash64(name));
}

bool shmkit__life_probe(const void *data, size_t size)
{
    return size >= sizeof(struct ref_header) &&
           memcmp(data, REF_MAGIC, 4) == 0;
}

/* ---- mapping and locking ---------------------------------------------------- */

/* Checks a mapped sidecar's immutable header. */
static int ref_validate(const struct ref_header *h, size_t size)
{
    uint32_t n = h->nslots;

    if (memcmp(h->magic, REF_MAGIC, 4) != 0)
        return SHMKIT_ECORRUPT;
    if (h->version != REF_VERSION)
        return SHMKIT_EVERSION;
    if (n != REF_NSLOTS || size < REF_SIZE)
        return SHMKIT_ECORRUPT;
    return 0;
}

/* Maps sidecar fd after checking it is a regular file of ours. */
static int ref_map(int fd, struct ref_header **out)
{
    struct stat st;
    void *p;
    int r;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return SHMKIT_EOWNER;
    if ((uint64_t)st.st_size != REF_SIZE)
        return SHMKIT_ECORRUPT;
    p = mmap(NULL, REF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    r = ref_validate(p, REF_SIZE);
    if (r < 0) {
        munmap(p, REF_SIZE);
        return r;
    }
    *out = p;
    return 0;
}

/* The number of used slots, read once and bounded by the capacity we
 * validated: any process of ours may write the shared header, so nslots
 * and count are never trusted after validation. */
static uint32_t ref_count(const struct ref_header *h)
{
    uint32_t c = __atomic_load_n(&h->count, __ATOMIC_RELAXED);

    return c < REF_NSLOTS ? c : (uint32_t)REF_NSLOTS;
}

/* A holder died mid-update: at worst count is off; reaping fixes the rest. */
static void ref_repair(struct ref_header *h)
{
    h->count = ref_count(h);
    h->name[SHMKIT_NAME_MAX] = 0;
}

static int ref_lock(struct ref_header *h)
{
    int r = pthread_mutex_lock(&h->lock.m);

    if (r == EOWNERDEAD) {
        ref_repair(h);
        pthread_mutex_consistent(&h->lock.m);
        return 0;
    }
    return -r;
}

/* For inspection: gives up after a moment rather than hang `shmkit ls`
 * behind an attacher stopped while holding the lock. */
static int ref_lock_briefly(struct ref_header *h)
{
    struct timespec t;
    int r;

    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 200 * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    r = pthread_mutex_timedlock(&h->lock.m, &t);
    if (r == EOWNERDEAD) {
        ref_repair(h);
        pthread_mutex_consistent(&h->lock.m);
        return 0;
    }
    return -r;
}

static void ref_unlock(struct ref_header *h)
{
    pthread_mutex_unlock(&h->lock.m);
}

/* Drops slots of dead processes; returns how many. Lock held. */
static unsigned ref_reap(struct ref_header *h)
{
    uint32_t i = 0, n = ref_count(h);
    unsigned reaped = 0;

    while (i < n) {
        if (shmkit__proc_alive(h->slots[i].pid, h->slots[i].start)) {
            i++;
            continue;
        }
        h->slots[i] = h->slots[--n];
        reaped++;
    }
    h->count = n;
    return reaped;
}

/* True if the sidecar at name sc is the object open as fd. */
static bool ref_is_linked(const char *sc, int fd)
{
    struct stat a;

    if (fstat(fd, &a) < 0)
        return false;
    return shmkit__shm_ino(sc) == (uint64_t)a.st_ino;
}

/* Ends the block's lifetime: marks the sidecar dead and unlinks it. Lock
 * held. The caller unlinks the block. */
static void ref_end(struct ref_header *h, const char *sc, int fd)
{
    h->dead = 1;
    if (ref_is_linked(sc, fd))
        shmkit__os.shm_unlink(sc);
}

/* ---- making and opening sidecars -------------------------------------------- */

/* Sizes and fills a new sidecar; leaves it mapped at *out. */
static int ref_init(int fd, uint64_t ino, const char *name,
                    struct ref_header **out)
{
    pthread_mutexattr_t a;
    struct ref_header *h;
    void *p;
    int r;

    /* Reserved, not just sized: filling it must not SIGBUS on a full
     * /dev/shm (-ENOSPC instead). */
    r = posix_fallocate(fd, 0, REF_SIZE);
    if (r != 0)
        return -r;
    p = mmap(NULL, REF_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    h = p;
    h->version = REF_VERSION;
    h->block_ino = ino;
    h->nslots = (uint32_t)REF_NSLOTS;
    snprintf(h->name, sizeof h->name, "%s", name);
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    r = -pthread_mutex_init(&h->lock.m, &a);
    pthread_mutexattr_destroy(&a);
    memcpy(h->magic, REF_MAGIC, 4);
    if (r < 0) {
        munmap(p, REF_SIZE);
        return r;
    }
    *out = h;
    return 0;
}

/* Links the anonymous file fd as /dev/shm/<sc>; -EEXIST if taken. */
static int ref_link(int fd, const char *sc)
{
    char from[64], to[SHMKIT__PATH_MAX];

    snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
    shmkit__os_shm_path(to, sc);
    if (linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    return 0;
}

/* Builds a complete sidecar for block (name, ino) and publishes it as sc.
 * `replace` removes a stale one in the way (the creator's case: its block
 * is new, so whatever sidecar holds the name is stale). Returns the open
 * descriptor or -errno (-EEXIST if someone else published first). */
static int ref_create(const char *sc, const char *name, uint64_t ino,
                      bool replace, struct ref_header **h)
{
    const char *dir = shmkit__os_shm_dir();
    int fd, r, i;

    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    r = ref_init(fd, ino, name, h);
    if (r < 0) {
        close(fd);
        return r;
    }
    for (i = 0; i < REF_TRIES; i++) {
        r = ref_link(fd, sc);
        if (r != -EEXIST || !replace)
            break;
        shmkit__os.shm_unlink(sc);
    }
    if (r < 0) {
        munmap(*h, REF_SIZE);
        *h = NULL;
        close(fd);
        return r;
    }
    return fd;
}

/* Opens the sidecar sc (or creates it) and maps it into *l. */
static int ref_open(struct ref_life *l, const char *name, uint64_t ino,
                    bool created)
{
    int fd, r;

    fd = created ? -ENOENT : shmkit__os.shm_open(l->sc, O_RDWR, 0);
    if (fd == -ENOENT) {
        fd = ref_create(l->sc, name, ino, created, &l->h);
        if (fd >= 0) {
            l->fd = fd;
            return 0;
        }
    }
    if (fd < 0)
        return fd;
    r = ref_map(fd, &l->h);
    if (r < 0) {
        close(fd);
        return r;
    }
    l->fd = fd;
    return 0;
}

static void ref_close(struct ref_life *l)
{
    if (l->h)
        munmap(l->h, REF_SIZE);
    if (l->fd >= 0)
        close(l->fd);
    l->h = NULL;
    l->fd = -1;
}

/* Adds this process to an open, locked sidecar; -ENOENT if the block's
 * lifetime is over (its last attacher died: noticed now, so end it). */
static int ref_join(struct ref_life *l, const char *name, bool created)
{
    struct ref_header *h = l->h;
    unsigned reaped;
    uint32_t n;

    if (h->dead)
        return -ENOENT;
    reaped = ref_reap(h);
    if (!created && reaped > 0 && h->count == 0) {
        ref_end(h, l->sc, l->fd);
        shmkit__shm_unlink_if(name, h->block_ino, false);
        return -ENOENT;
    }
    n = ref_count(h);
    if (n >= REF_NSLOTS)
        return -EUSERS;
    h->slots[n].pid = (int32_t)getpid();
    h->slots[n].pad = 0;
    h->slots[n].start = l->my_start;
    h->count = n + 1;
    return 0;
}

static void ref_leave(struct ref_header *h, uint64_t my_start);

/* One try at attaching: 1 means "stale sidecar removed, try again". */
static int ref_attach_once(shmkit_block *b, struct ref_life *l, uint64_t ino)
{
    int r = ref_open(l, b->name, ino, b->created);

    if (r < 0)
        return r == -EEXIST ? 1 : r;
    r = ref_lock(l->h);
    if (r < 0)
        return r;
    if (l->h->block_ino != ino) {
        /* Left by an earlier object of this name: not ours to count. */
        if (ref_is_linked(l->sc, l->fd))
            shmkit__os.shm_unlink(l->sc);
        ref_unlock(l->h);
        ref_close(l);
        return 1;
    }
    r = ref_join(l, b->name, b->created);
    /* The last attacher may have ended the lifetime between our opening
     * the block and our joining (its sidecar gone, so we made a new one):
     * if the name no longer holds our block, we joined a dead one. */
    if (r == 0 && !b->created && shmkit__shm_ino(b->name) != ino) {
        ref_leave(l->h, l->my_start);
        if (l->h->count == 0)
            ref_end(l->h, l->sc, l->fd);
        r = -ENOENT;
    }
    ref_unlock(l->h);
    return r;
}

int shmkit__ref_attach(shmkit_block *b)
{
    struct ref_life *l;
    struct stat st;
    int r = 1, i;

    if (fstat(b->fd, &st) < 0)
        return -errno;
    l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->fd = -1;
    shmkit__ref_sidecar_name(b->name, l->sc);
    r = shmkit__self_start(&l->my_start);
    for (i = 0; r == 0 && i < REF_TRIES; i++) {
        r = ref_attach_once(b, l, (uint64_t)st.st_ino);
        if (r == 1) {
            ref_close(l);
            r = 0;
            continue;
        }
        break;
    }
    if (r == 0 && !l->h)
        r = SHMKIT_EBUSYNAME;
    if (r < 0) {
        ref_close(l);
        free(l);
        return r;
    }
    b->life = l;
    return 0;
}

/* Removes one slot of this process. Lock held. */
static void ref_leave(struct ref_header *h, uint64_t my_start)
{
    uint32_t i, n = ref_count(h);
    int32_t me = (int32_t)getpid();

    for (i = 0; i < n; i++) {
        if (h->slots[i].pid == me && h->slots[i].start == my_start) {
            h->slots[i] = h->slots[n - 1];
            h->count = n - 1;
            return;
        }
    }
}

bool shmkit__ref_detach(shmkit_block *b)
{
    struct ref_life *l = b->life;
    bool last = false;

    if (!l)
        return false;
    if (ref_lock(l->h) == 0) {
        ref_leave(l->h, l->my_start);
        ref_reap(l->h);
        /* Last only if our sidecar and block still hold their names: a
         * rename over either hands the name to a different object. */
        if (l->h->count == 0 && !l->h->dead && ref_is_linked(l->sc, l->fd) &&
            shmkit__shm_ino(b->name) == l->h->block_ino) {
            ref_end(l->h, l->sc, l->fd);
            last = true;
        }
        ref_unlock(l->h);
    }
    ref_close(l);
    free(l);
    b->life = NULL;
    return last;
}

void shmkit__ref_abandon(shmkit_block *b)
{
    struct ref_life *l = b->life;

    if (!l)
        return;
    if (ref_lock(l->h) == 0) {
        ref_leave(l->h, l->my_start);
        if (l->h->count == 0 && !l->h->dead)
            ref_end(l->h, l->sc, l->fd);
        ref_unlock(l->h);
    }
    ref_close(l);
    free(l);
    b->life = NULL;
}

/* Points the sidecar now named sc at block name `to`. */
static void ref_set_name(const char *sc, const char *to)
{
    struct ref_header *h;
    int fd = shmkit__os.shm_open(sc, O_RDWR, 0);

    if (fd < 0)
        return;
    if (ref_map(fd, &h) == 0) {
        if (ref_lock(h) == 0) {
            snprintf(h->name, sizeof h->name, "%s", to);
            ref_unlock(h);
        }
        munmap(h, REF_SIZE);
    }
    close(fd);
}

void shmkit__ref_rename(shmkit_block *b, const char *to, bool exchange)
{
    struct ref_life *l = b->life;
    char nsc[SHMKIT_NAME_MAX + 1];
    int r;

    shmkit__ref_sidecar_name(to, nsc);
    r = shmkit__os.shm_rename(l->sc, nsc, exchange ? SHMKIT_EXCHANGE : 0);
    if (r == -ENOENT && exchange)
        r = shmkit__os.shm_rename(l->sc, nsc, 0);
    if (r < 0)
        return;
    if (ref_lock(l->h) == 0) {
        snprintf(l->h->name, sizeof l->h->name, "%s", to);
        ref_unlock(l->h);
    }
    if (exchange)
        ref_set_name(l->sc, b->name);
    memcpy(l->sc, nsc, sizeof nsc);
}

/* ---- gc and inspection ---------------------------------------------------- */

/* Counts live slots without changing anything. Lock held. */
static uint32_t ref_live(const struct ref_header *h)
{
    uint32_t i, n = ref_count(h), live = 0;

    for (i = 0; i < n; i++)
        live += shmkit__proc_alive(h->slots[i].pid, h->slots[i].start);
    return live;
}

/* Decides one valid, locked sidecar's fate; returns blocks removed. */
static int ref_gc_locked(struct ref_header *h, const char *sc, int fd,
                         unsigned flags, shmkit_gc_report rep, void *arg)
{
    bool dry = flags & SHMKIT_GC_DRY_RUN;
    char name[SHMKIT_NAME_MAX + 1];
    bool stale;
    int n = 0;

    memcpy(name, h->name, sizeof name);
    name[SHMKIT_NAME_MAX] = 0;
    stale = h->dead || shmkit_name_check(name) < 0 ||
            shmkit__shm_ino(name) != h->block_ino;
    if (!stale && (dry ? ref_live(h) : (ref_reap(h), h->count)) > 0)
        return 0;
    if (!stale && shmkit__shm_unlink_if(name, h->block_ino, dry) > 0) {
        n = 1;
        if (rep)
            rep("refcount", name, arg);
    }
    if (!dry)
        ref_end(h, sc, fd);
    if (rep)
        rep("sidecar", sc, arg);
    return n;
}

int shmkit__ref_gc_one(const char *sc, unsigned flags, shmkit_gc_report rep,
                       void *arg)
{
    struct ref_header *h;
    int fd, r;

    fd = shmkit__os.shm_open(sc, O_RDWR, 0);
    if (fd < 0)
        return 0;
    r = ref_map(fd, &h);
    if (r < 0) {
        /* Ours, under our prefix, and not a sidecar: garbage. Another
         * user's object is refused by ref_map and left alone. */
        if (r != SHMKIT_EOWNER && r != -EACCES) {
            if (!(flags & SHMKIT_GC_DRY_RUN) && ref_is_linked(sc, fd))
                shmkit__os.shm_unlink(sc);
            if (rep)
                rep("sidecar", sc, arg);
        }
        close(fd);
        return 0;
    }
    r = ref_lock(h);
    if (r == 0) {
        r = ref_gc_locked(h, sc, fd, flags, rep, arg);
        ref_unlock(h);
    }
    munmap(h, REF_SIZE);
    close(fd);
    return r;
}

int shmkit__ref_count(const char *name)
{
    char sc[SHMKIT_NAME_MAX + 1];
    struct ref_header *h;
    int fd, r;

    shmkit__ref_sidecar_name(name, sc);
    fd = shmkit__os.shm_open(sc, O_RDWR, 0);
    if (fd < 0)
        return fd;
    r = ref_map(fd, &h);
    if (r == 0) {
        r = ref_lock_briefly(h);
        if (r == 0) {
            if (h->dead || shmkit__shm_ino(name) != h->block_ino)
                r = -ENOENT;
            else
                r = (int)ref_live(h);
            ref_unlock(h);
        }
        munmap(h, REF_SIZE);
    }
    close(fd);
    return r;
}
