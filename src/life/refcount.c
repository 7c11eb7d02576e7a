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
 * only when complete, so nobody sees one half made. It is REF_SIZE bytes
 * but sparse: only its first REF_RESERVED bytes (the header and the first
 * 233 slots) are reserved at create; a join that needs a slot beyond them
 * reserves its page first, so no write to the sidecar can SIGBUS on a
 * full /dev/shm (-ENOSPC instead). Reserving all of it made every
 * refcounted create allocate and zero 64 pages and every last close free
 * them: most of the create cycle's time (the closing note of s18-refcount).
 *
 * Its system calls go through the OS table (core/os.h), so
 * tests/test_syscalls.c counts them and tests/test_create_kill.c kills a
 * creator at each of them.
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
#define REF_RESERVED 4096u      /* reserved at create: header + 233 slots */
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
    uint64_t sc_ino; /* the sidecar's inode, to tell it still holds sc */
    uid_t uid;       /* the sidecar's owner: our euid when we opened it */
    uint64_t my_start;
    pid_t my_pid;    /* at attach (detach asks getpid() anew: a forked
                      * child's close must not remove its parent's slot) */
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

/* Maps sidecar fd after checking it is a regular file of ours; l (if not
 * NULL) gets its inode and owner. */
static int ref_map(int fd, struct ref_header **out, struct ref_life *l)
{
    struct stat st;
    void *p;
    int r;

    r = shmkit__os.fstat(fd, &st);
    if (r < 0)
        return r;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return SHMKIT_EOWNER;
    if ((uint64_t)st.st_size != REF_SIZE)
        return SHMKIT_ECORRUPT;
    r = shmkit__os.mmap(&p, REF_SIZE, true, false, fd);
    if (r < 0)
        return r;
    r = ref_validate(p, REF_SIZE);
    if (r < 0) {
        shmkit__os.munmap(p, REF_SIZE);
        return r;
    }
    *out = p;
    if (l) {
        l->sc_ino = (uint64_t)st.st_ino;
        l->uid = st.st_uid;
    }
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

/* For inspection and gc: gives up after a moment (-ETIMEDOUT) rather than
 * hang `shmkit ls` or `shmkit gc` behind an attacher stopped while holding
 * the lock. */
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
        if (shmkit__proc_alive(h->slots[i].pid, h->slots[i].start, 64)) {
            i++;
            continue;
        }
        h->slots[i] = h->slots[--n];
        reaped++;
    }
    h->count = n;
    return reaped;
}

/* Drops dead slots from the front until it finds one that lives (this
 * process's own, pid `me` started at my_start, without asking /proc);
 * returns how many it dropped. Enough to decide whether anyone is left
 * (join, detach) with one /proc read instead of one per attacher; dead
 * slots behind a live one stay until a later reap reaches them (ref_join
 * reaps them all when the slots run out, gc always does). Lock held. */
static unsigned ref_reap_front(struct ref_header *h, pid_t me,
                               uint64_t my_start)
{
    uint32_t n = ref_count(h);
    unsigned reaped = 0;

    while (n > 0) {
        struct ref_slot s = h->slots[0];

        if ((s.pid == me && s.start == my_start) ||
            shmkit__proc_alive(s.pid, s.start, 64))
            break;
        h->slots[0] = h->slots[--n];
        reaped++;
    }
    h->count = n;
    return reaped;
}

/* True if the name sc holds the sidecar whose inode is ino. */
static bool ref_is_linked(const char *sc, uint64_t ino)
{
    return ino != 0 && shmkit__shm_ino(sc) == ino;
}

/* Ends the block's lifetime: marks the sidecar dead and unlinks it. Lock
 * held. The caller unlinks the block. */
static void ref_end(struct ref_header *h, const char *sc, uint64_t sc_ino)
{
    h->dead = 1;
    if (ref_is_linked(sc, sc_ino))
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

    /* Sized to REF_SIZE, sparse; the header page reserved, so filling it
     * cannot SIGBUS on a full /dev/shm (-ENOSPC instead). ref_join
     * reserves the pages of further slots. */
    r = shmkit__os.ftruncate(fd, REF_SIZE);
    if (r == 0)
        r = shmkit__os.fallocate(fd, REF_RESERVED);
    if (r == 0)
        r = shmkit__os.mmap(&p, REF_SIZE, true, false, fd);
    if (r < 0)
        return r;
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
        shmkit__os.munmap(p, REF_SIZE);
        return r;
    }
    *out = h;
    return 0;
}

/* Builds a complete sidecar for block (name, ino) and publishes it as sc.
 * `replace` removes a stale one in the way (the creator's case: its block
 * is new, so whatever sidecar holds the name is stale, unless the name is
 * taken: then it counts the block there, and the create will fail
 * -EEXIST anyway). Returns the open descriptor (l->sc_ino its inode,
 * l->uid its owner) or -errno (-EEXIST if someone else published first,
 * or, with `replace`, if the name is taken). */
static int ref_create(const char *sc, const char *name, uint64_t ino,
                      bool replace, struct ref_header **h, struct ref_life *l)
{
    struct stat st;
    int fd, r, i;

    fd = shmkit__os.shm_open_anon(0600);
    if (fd < 0)
        return fd;
    r = shmkit__os.fstat(fd, &st);
    if (r == 0)
        r = ref_init(fd, ino, name, h);
    if (r < 0) {
        shmkit__os.close(fd);
        return r;
    }
    l->sc_ino = (uint64_t)st.st_ino;
    l->uid = st.st_uid;
    for (i = 0; i < REF_TRIES; i++) {
        r = shmkit__os.shm_link(fd, sc);
        if (r != -EEXIST || !replace || shmkit__shm_taken(name))
            break;
        shmkit__os.shm_unlink(sc);
    }
    if (r < 0) {
        shmkit__os.munmap(*h, REF_SIZE);
        *h = NULL;
        shmkit__os.close(fd);
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
        fd = ref_create(l->sc, name, ino, created, &l->h, l);
        if (fd >= 0) {
            l->fd = fd;
            return 0;
        }
    }
    if (fd < 0)
        return fd;
    r = ref_map(fd, &l->h, l);
    if (r < 0) {
        shmkit__os.close(fd);
        return r;
    }
    l->fd = fd;
    return 0;
}

static void ref_close(struct ref_life *l)
{
    if (l->h)
        shmkit__os.munmap(l->h, REF_SIZE);
    if (l->fd >= 0)
        shmkit__os.close(l->fd);
    l->h = NULL;
    l->fd = -1;
    l->sc_ino = 0;
}

/* Adds this process to an open, locked sidecar; -ENOENT if the block's
 * lifetime is over (its last attacher died: noticed now, so end it). */
static int ref_join(struct ref_life *l, const char *name, bool created)
{
    struct ref_header *h = l->h;
    unsigned reaped;
    size_t end;
    uint32_t n;
    int r;

    if (h->dead)
        return -ENOENT;
    reaped = ref_reap_front(h, l->my_pid, l->my_start);
    if (ref_count(h) >= REF_NSLOTS)
        reaped += ref_reap(h);
    if (!created && reaped > 0 && h->count == 0) {
        ref_end(h, l->sc, l->sc_ino);
        shmkit__shm_unlink_if(name, h->block_ino, false);
        return -ENOENT;
    }
    n = ref_count(h);
    if (n >= REF_NSLOTS)
        return -EUSERS;
    /* A slot past the reserved head: reserve its page before writing it
     * (idempotent; the pages before it are reserved already). */
    end = sizeof *h + ((size_t)n + 1) * sizeof h->slots[0];
    if (end > REF_RESERVED) {
        r = shmkit__os.fallocate(l->fd, (off_t)end);
        if (r < 0)
            return r;
    }
    h->slots[n].pid = (int32_t)l->my_pid;
    h->slots[n].pad = 0;
    h->slots[n].start = l->my_start;
    h->count = n + 1;
    return 0;
}

static void ref_leave(struct ref_header *h, pid_t me, uint64_t my_start);

/* One try at attaching: 1 means "stale sidecar removed, try again". */
static int ref_attach_once(shmkit_block *b, struct ref_life *l, uint64_t ino)
{
    int r = ref_open(l, b->name, ino, b->created);

    /* An attacher lost a race to publish a sidecar: open it again. A
     * creator gets -EEXIST only when the name is taken. */
    if (r < 0)
        return r == -EEXIST && !b->created ? 1 : r;
    r = ref_lock(l->h);
    if (r < 0)
        return r;
    if (l->h->block_ino != ino) {
        /* Left by an earlier object of this name: not ours to count. */
        if (ref_is_linked(l->sc, l->sc_ino))
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
        ref_leave(l->h, l->my_pid, l->my_start);
        if (l->h->count == 0)
            ref_end(l->h, l->sc, l->sc_ino);
        r = -ENOENT;
    }
    ref_unlock(l->h);
    return r;
}

int shmkit__ref_attach(shmkit_block *b, uint64_t ino)
{
    struct ref_life *l;
    struct stat st;
    int r = 1, i;

    if (ino == 0) {
        r = shmkit__os.fstat(b->fd, &st);
        if (r < 0)
            return r;
        ino = (uint64_t)st.st_ino;
    }
    l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->fd = -1;
    shmkit__ref_sidecar_name(b->name, l->sc);
    r = shmkit__self_start(&l->my_start, &l->my_pid);
    for (i = 0; r == 0 && i < REF_TRIES; i++) {
        r = ref_attach_once(b, l, ino);
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

/* Removes one slot of process me (started at my_start). Lock held. */
static void ref_leave(struct ref_header *h, pid_t me, uint64_t my_start)
{
    uint32_t i, n = ref_count(h);

    for (i = 0; i < n; i++) {
        if (h->slots[i].pid == me && h->slots[i].start == my_start) {
            h->slots[i] = h->slots[n - 1];
            h->count = n - 1;
            return;
        }
    }
}

/* The last counted handle is gone: removes the block and its sidecar
 * under the block's current name, which every rename by a counted handle
 * (this one's or a peer's, SHMKIT_EXCHANGE too) keeps in h->name; `name`
 * (the handle's) gets it. Only if that sidecar and block still hold their
 * names: a rename over either by other means hands the name to a
 * different object. The block goes first, under the lock and right after
 * its check: an attacher that opened it meanwhile finds the sidecar dead
 * (or gone, then the block gone) and fails -ENOENT; one killed here leaves
 * a sidecar naming no block, which the next create of the name replaces
 * and gc removes, never a block nobody counts. Lock held. */
static bool ref_last_close(struct ref_header *h, const struct ref_life *l,
                           char name[SHMKIT_NAME_MAX + 1])
{
    char now[SHMKIT_NAME_MAX + 1], sc[SHMKIT_NAME_MAX + 1];
    bool unlinked;

    memcpy(now, h->name, sizeof now);
    now[SHMKIT_NAME_MAX] = 0;
    if (shmkit_name_check(now) < 0)
        return false;
    shmkit__ref_sidecar_name(now, sc);
    if (shmkit__shm_ino_as(sc, l->uid) != l->sc_ino ||
        shmkit__shm_ino_as(now, l->uid) != h->block_ino)
        return false;
    unlinked = shmkit__os.shm_unlink(now) == 0;
    h->dead = 1;
    shmkit__os.shm_unlink(sc);
    memcpy(name, now, sizeof now);
    return unlinked;
}

bool shmkit__ref_detach(shmkit_block *b)
{
    struct ref_life *l = b->life;
    struct ref_header *h;
    bool unlinked = false;
    pid_t me;

    if (!l)
        return false;
    h = l->h;
    /* Asked now, not taken from attach: a forked child closing its copy
     * of the handle must not remove its parent's slot. */
    me = getpid();
    if (ref_lock(h) == 0) {
        ref_leave(h, me, l->my_start);
        ref_reap_front(h, me, l->my_start);
        if (h->count == 0 && !h->dead)
            unlinked = ref_last_close(h, l, b->name);
        ref_unlock(h);
    }
    ref_close(l);
    free(l);
    b->life = NULL;
    /* What the block's kind keeps beside it (a list's lock), outside the
     * sidecar's lock. */
    if (unlinked)
        shmkit__kind_unlinked(b->name);
    return unlinked;
}

void shmkit__ref_abandon(shmkit_block *b)
{
    struct ref_life *l = b->life;

    if (!l)
        return;
    if (ref_lock(l->h) == 0) {
        ref_leave(l->h, l->my_pid, l->my_start);
        if (l->h->count == 0 && !l->h->dead)
            ref_end(l->h, l->sc, l->sc_ino);
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
    if (ref_map(fd, &h, NULL) == 0) {
        if (ref_lock(h) == 0) {
            snprintf(h->name, sizeof h->name, "%s", to);
            ref_unlock(h);
        }
        shmkit__os.munmap(h, REF_SIZE);
    }
    shmkit__os.close(fd);
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
        live += shmkit__proc_alive(h->slots[i].pid, h->slots[i].start, 64);
    return live;
}

/* Decides one valid, locked sidecar's fate; returns blocks removed. */
static int ref_gc_locked(struct ref_header *h, const char *sc, uint64_t sc_ino,
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
        ref_end(h, sc, sc_ino);
    if (rep)
        rep("sidecar", sc, arg);
    return n;
}

int shmkit__ref_gc_one(const char *sc, unsigned flags, shmkit_gc_report rep,
                       void *arg)
{
    struct ref_life g = {.fd = -1};
    struct ref_header *h;
    struct stat st;
    int fd, r;

    fd = shmkit__os.shm_open(sc, O_RDWR, 0);
    if (fd < 0)
        return 0;
    r = ref_map(fd, &h, &g);
    if (r < 0) {
        /* Ours, under our prefix, and not a sidecar: garbage. Another
         * user's object is refused by ref_map and left alone. */
        if (r != SHMKIT_EOWNER && r != -EACCES) {
            if (!(flags & SHMKIT_GC_DRY_RUN) &&
                shmkit__os.fstat(fd, &st) == 0 &&
                ref_is_linked(sc, (uint64_t)st.st_ino))
                shmkit__os.shm_unlink(sc);
            if (rep)
                rep("sidecar", sc, arg);
        }
        shmkit__os.close(fd);
        return 0;
    }
    /* A live holder (stopped, or hostile) keeps its sidecar from this
     * run: gc must not wait for it for ever. */
    r = ref_lock_briefly(h);
    if (r == 0) {
        r = ref_gc_locked(h, sc, g.sc_ino, flags, rep, arg);
        ref_unlock(h);
    }
    shmkit__os.munmap(h, REF_SIZE);
    shmkit__os.close(fd);
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
    r = ref_map(fd, &h, NULL);
    if (r == 0) {
        r = ref_lock_briefly(h);
        if (r == 0) {
            if (h->dead || shmkit__shm_ino(name) != h->block_ino)
                r = -ENOENT;
            else
                r = (int)ref_live(h);
            ref_unlock(h);
        }
        shmkit__os.munmap(h, REF_SIZE);
    }
    shmkit__os.close(fd);
    return r;
}
