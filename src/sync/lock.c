/*
 * lock.c - robust process-shared mutexes and condition variables, and the
 * per-thread record of held locks that the block layer consults.
 *
 * A shmkit_mutex is a glibc robust, process-shared, error-checking
 * pthread mutex behind a small header (magic, version, flags, PID
 * namespace). Recursion is not the C library's: each thread keeps a list
 * of the locks it holds with a depth for each, which gives us recursion,
 * "who holds what" for shmkit_block_close(), the per-thread bound, and a
 * clean hand-over through condition waits, at the cost of a few loads.
 *
 * The lists of all threads hang off one registry so that any thread can
 * answer "does this process hold a lock in [p, p+len)?". Entries are
 * written only by their own thread (relaxed atomics); readers of other
 * threads' lists may see them a moment late, which is harmless: a thread
 * that locks inside a block while another thread closes it is racing
 * anyway.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/hooks.h"
#include "core/internal.h"
#include "core/os.h"
#include "sync_internal.h"

/* ---- shared layouts ------------------------------------------------- */

/*
 * The inside of a shmkit_mutex. magic, version, flags and pid_ns are
 * written once by shmkit_mutex_init before the mutex is shared and never
 * again; pm is the C library's and changes only through pthread calls.
 */
struct mutex_shared {
    union {
        struct {
            uint32_t magic;   /* SYNC_MUTEX_MAGIC */
            uint16_t version; /* SYNC_VERSION */
            uint16_t flags;   /* SHMKIT_MUTEX_RECURSIVE */
        };
        uint64_t head;        /* the three at once, for a quick check */
    };
    uint64_t pid_ns;    /* initialiser's PID namespace inode, 0 unknown */
    pthread_mutex_t pm; /* robust, process-shared, error-checking */
};
_Static_assert(sizeof(struct mutex_shared) <= SHMKIT_MUTEX_SIZE,
               "the C library's mutex fits in shmkit_mutex");
_Static_assert(offsetof(struct mutex_shared, version) == 4, "version offset");
_Static_assert(offsetof(struct mutex_shared, pid_ns) == 8, "pid_ns offset");
_Static_assert(offsetof(struct mutex_shared, pm) == 16, "pm offset");

/* The inside of a shmkit_cond; same rules as the mutex. */
struct cond_shared {
    uint32_t magic;     /* SYNC_COND_MAGIC */
    uint16_t version;   /* SYNC_VERSION */
    uint16_t flags;     /* none yet, 0 */
    uint64_t pid_ns;    /* initialiser's PID namespace inode, 0 unknown */
    pthread_cond_t pc;  /* process-shared, CLOCK_MONOTONIC */
};
_Static_assert(sizeof(struct cond_shared) <= SHMKIT_COND_SIZE,
               "the C library's condition fits in shmkit_cond");
_Static_assert(offsetof(struct cond_shared, pc) == 16, "pc offset");

/* ---- this process's PID namespace ----------------------------------- */

static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static void reg_init(void);

/* UINT64_MAX: not read yet. 0: unknown (no /proc), checks are skipped. */
static uint64_t self_ns = UINT64_MAX;

/* Reads the inode of /proc/self/ns/pid. A process's PID namespace never
 * changes; its children's may (unshare), so fork resets the cache. */
uint64_t shmkit__pid_ns(void)
{
    uint64_t ns = __atomic_load_n(&self_ns, __ATOMIC_RELAXED);

    if (ns != UINT64_MAX)
        return ns;
    /* A forked child may be in a new namespace: have fork reset this. */
    pthread_once(&reg_once, reg_init);
    ns = shmkit__os.pid_namespace();
    __atomic_store_n(&self_ns, ns, __ATOMIC_RELAXED);
    return ns;
}

/* 0 if an object made in namespace `ns` may be used here. */
int shmkit__pid_ns_check(uint64_t ns)
{
    uint64_t mine = shmkit__pid_ns();

    return (ns && mine && ns != mine) ? SHMKIT_ENAMESPACE : 0;
}

/* ---- held locks, per thread ----------------------------------------- */

struct held {
    const struct mutex_shared *m; /* NULL: free slot (only past n) */
    uint32_t again;               /* times locked beyond the first; zero
                                     in every slot at or past n, so a
                                     push need not write it */
};

struct thread_locks {
    struct thread_locks *next, *prev; /* registry, under reg_lock */
    unsigned n;                       /* entries in use, h[0..n) */
    struct held h[SHMKIT_LOCKS_PER_THREAD];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct thread_locks *reg_head;
static pthread_key_t reg_key;
/* This thread's record and its count (self.t->n, kept beside the pointer
 * too: the fast paths then need no load that waits for another load,
 * which counts next to a locked instruction). One TLS object, so position
 * independent code finds both through one address. Small, so it fits the
 * static TLS that a dlopen()ed library may use. */
static __thread struct {
    struct thread_locks *t;
    unsigned n;
} self __attribute__((tls_model("initial-exec")));

static void reg_unlink(struct thread_locks *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        reg_head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

/* Thread exit: a robust lock still held is released by the kernel (the
 * next locker gets owner-died), so the record just goes. */
static void reg_thread_exit(void *p)
{
    struct thread_locks *t = p;

    pthread_mutex_lock(&reg_lock);
    reg_unlink(t);
    pthread_mutex_unlock(&reg_lock);
    self.t = NULL;
    self.n = 0;
    free(t);
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

/* The child has one thread and holds no lock: robust mutexes belong to
 * the parent's threads (glibc empties the child's robust list likewise).
 * Other threads' records are dropped, not freed, as their owners are gone
 * mid-whatever. The child may live in a new PID namespace. */
static void fork_child(void)
{
    pthread_mutex_init(&reg_lock, NULL);
    reg_head = self.t;
    if (self.t) {
        self.t->next = self.t->prev = NULL;
        self.t->n = 0;
        memset(self.t->h, 0, sizeof self.t->h);
    }
    self.n = 0;
    self_ns = UINT64_MAX;
}

static void reg_init(void)
{
    pthread_key_create(&reg_key, reg_thread_exit);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* The calling thread's record, made on first use; NULL without memory. */
static struct thread_locks *thread_locks_new(void)
{
    struct thread_locks *t;

    pthread_once(&reg_once, reg_init);
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (pthread_setspecific(reg_key, t) != 0) {
        free(t);
        return NULL;
    }
    pthread_mutex_lock(&reg_lock);
    t->next = reg_head;
    if (reg_head)
        reg_head->prev = t;
    reg_head = t;
    pthread_mutex_unlock(&reg_lock);
    self.t = t;
    return t;
}

/* The entry for m in t, searched from the most recent, or NULL. */
static inline struct held *held_find(struct thread_locks *t,
                                     const struct mutex_shared *m)
{
    unsigned i;

    for (i = self.n; i-- > 0;)
        if (t->h[i].m == m)
            return &t->h[i];
    return NULL;
}

static inline void held_push(struct thread_locks *t,
                             const struct mutex_shared *m)
{
    unsigned n = self.n;

    __atomic_store_n(&t->h[n].m, m, __ATOMIC_RELAXED);
    __atomic_store_n(&t->n, n + 1, __ATOMIC_RELEASE);
    self.n = n + 1;
}

/* Removes h from t, keeping the order of the others (usually h is last). */
static inline void held_remove(struct thread_locks *t, struct held *h)
{
    unsigned last = self.n - 1;
    unsigned i;

    for (i = (unsigned)(h - t->h); i < last; i++) {
        __atomic_store_n(&t->h[i].m, t->h[i + 1].m, __ATOMIC_RELAXED);
        t->h[i].again = t->h[i + 1].again;
    }
    t->h[last].again = 0;
    __atomic_store_n(&t->n, last, __ATOMIC_RELEASE);
    self.n = last;
}

/* True if some thread's list names a lock that overlaps [lo, hi). */
static bool list_holds_in(const struct thread_locks *t, uintptr_t lo,
                          uintptr_t hi)
{
    unsigned n = __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);
    unsigned i;

    for (i = 0; i < n && i < SHMKIT_LOCKS_PER_THREAD; i++) {
        uintptr_t m = (uintptr_t)__atomic_load_n(&t->h[i].m, __ATOMIC_RELAXED);
        if (m && m < hi && m + SHMKIT_MUTEX_SIZE > lo)
            return true;
    }
    return false;
}

bool shmkit__locks_held_in(const void *p, size_t len)
{
    uintptr_t lo = (uintptr_t)p, hi;
    const struct thread_locks *t;
    bool found = false;

    if (!p || len == 0 || __builtin_add_overflow(lo, len, &hi))
        return false;
    pthread_once(&reg_once, reg_init);
    pthread_mutex_lock(&reg_lock);
    for (t = reg_head; t && !found; t = t->next)
        found = list_holds_in(t, lo, hi);
    pthread_mutex_unlock(&reg_lock);
    return found;
}

/* Lets the block layer refuse to close or shrink a mapping that holds a
 * lock of ours (core/hooks.h says why this runs before main). */
SHMKIT__REGISTER static void locks_register(void)
{
    shmkit__block_hooks.locks_held_in = shmkit__locks_held_in;
}

/* ---- the C library's insides ---------------------------------------- */

/* The futex word's bits, from the kernel's robust-futex ABI. */
#define FUTEX_BIT_WAITERS 0x80000000u
#define FUTEX_BIT_OWNER_DIED 0x40000000u
#define FUTEX_BITS_TID 0x3fffffffu

/* glibc's marks in __owner (PTHREAD_MUTEX_INCONSISTENT/_NOTRECOVERABLE). */
#define GLIBC_INCONSISTENT INT_MAX
#define GLIBC_NOTRECOVERABLE (INT_MAX - 1)

#if defined(__GLIBC__)
/* glibc keeps the robust futex word in __lock (owner tid, waiters bit,
 * and the owner-died bit the kernel sets) and marks inconsistent and
 * unrecoverable mutexes in __owner. */

static unsigned sync_futex_word(const pthread_mutex_t *pm)
{
    return (unsigned)__atomic_load_n(&pm->__data.__lock, __ATOMIC_RELAXED);
}

static int sync_owner_mark(const pthread_mutex_t *pm)
{
    return __atomic_load_n(&pm->__data.__owner, __ATOMIC_RELAXED);
}

static bool sync_not_recoverable(const pthread_mutex_t *pm)
{
    return sync_owner_mark(pm) == GLIBC_NOTRECOVERABLE;
}

/* Frees the futex word if it says this thread holds it, and wakes its
 * waiters so they too can learn the mutex is not recoverable. */
static void sync_release_stray(pthread_mutex_t *pm)
{
    int *w = &pm->__data.__lock;
    int old = __atomic_load_n(w, __ATOMIC_RELAXED);

    if ((old & (int)FUTEX_BITS_TID) != (int)gettid())
        return;
    old = __atomic_exchange_n(w, 0, __ATOMIC_RELEASE);
    if ((unsigned)old & FUTEX_BIT_WAITERS)
        syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
#else
static unsigned sync_futex_word(const pthread_mutex_t *pm)
{
    (void)pm;
    return 0;
}

static int sync_owner_mark(const pthread_mutex_t *pm)
{
    (void)pm;
    return 0;
}

static bool sync_not_recoverable(const pthread_mutex_t *pm)
{
    (void)pm;
    return false;
}

static void sync_release_stray(pthread_mutex_t *pm)
{
    (void)pm;
}
#endif

/* ---- mutex ---------------------------------------------------------- */

static inline struct mutex_shared *mutex_of(shmkit_mutex *m)
{
    return (struct mutex_shared *)(void *)m;
}

/* The namespace check when the quick comparison fails: this process's
 * namespace not read yet, or unknown, or really a different one. */
static __attribute__((noinline)) int mutex_ns_check(uint64_t ns)
{
    return shmkit__pid_ns_check(ns);
}

/* What `head` of an initialised mutex holds, flags masked out (built
 * through the struct, so byte order does not matter; folds to
 * constants). */
static inline uint64_t mutex_head_mask(void)
{
    struct mutex_shared x = {.magic = UINT32_MAX, .version = UINT16_MAX};

    return x.head;
}

static inline uint64_t mutex_head_good(void)
{
    struct mutex_shared x = {.magic = SYNC_MUTEX_MAGIC,
                             .version = SYNC_VERSION};

    return x.head;
}

/* Checks that m is an initialised mutex usable from this namespace. On
 * the fast path: magic and version in one compare, the namespace against
 * our cached one in another. */
static inline int mutex_check(const struct mutex_shared *s)
{
    uint64_t mine = __atomic_load_n(&self_ns, __ATOMIC_RELAXED);

    if (__builtin_expect(!s, 0) ||
        (__atomic_load_n(&s->head, __ATOMIC_ACQUIRE) & mutex_head_mask()) !=
            mutex_head_good())
        return -EINVAL;
    if (__builtin_expect(s->pid_ns != mine, 0))
        return mutex_ns_check(s->pid_ns);
    return 0;
}

bool shmkit__mutex_valid(const void *p)
{
    struct mutex_shared s;

    memcpy(&s, p, sizeof s);
    return s.magic == SYNC_MUTEX_MAGIC && s.version == SYNC_VERSION &&
           (s.flags & ~SHMKIT_MUTEX_RECURSIVE) == 0;
}

/* Maps the C library's answers to ours. */
static inline int lock_result(int r)
{
    switch (r) {
    case 0:
        return 0;
    case EOWNERDEAD:
        return SHMKIT_EOWNERDEAD;
    case ENOTRECOVERABLE:
        return SHMKIT_ENOTRECOVERABLE;
    case EPERM:
        return SHMKIT_ENOTOWNER;
    default:
        return -r;
    }
}

void shmkit_deadline(struct timespec *out, double seconds)
{
    struct timespec now;
    double whole;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!(seconds > 0)) /* negative, zero or NaN */
        seconds = 0;
    if (seconds > 1e15) { /* "never", without overflowing time_t */
        out->tv_sec = (time_t)1 << 60;
        out->tv_nsec = 0;
        return;
    }
    whole = floor(seconds);
    out->tv_sec = now.tv_sec + (time_t)whole;
    out->tv_nsec = now.tv_nsec + (long)((seconds - whole) * 1e9);
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

int shmkit_mutex_init(shmkit_mutex *m, unsigned flags)
{
    struct mutex_shared *s = mutex_of(m);
    pthread_mutexattr_t a;
    int r;

    if (!m || ((uintptr_t)m & 7) || (flags & ~SHMKIT_MUTEX_RECURSIVE))
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_init: flags %#x",
                            flags);
    memset(m, 0, sizeof *m);
    r = pthread_mutexattr_init(&a);
    if (r)
        return shmkit__fail(NULL, -r, "shmkit_mutex_init");
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    /* Error-checking, so a foreign unlock is EPERM, never a silent
     * release; recursion is ours (see the top of this file). */
    if (!r)
        r = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    if (!r)
        r = pthread_mutex_init(&s->pm, &a);
    pthread_mutexattr_destroy(&a);
    if (r)
        return shmkit__fail(NULL, -r, "shmkit_mutex_init");
    s->version = SYNC_VERSION;
    s->flags = (uint16_t)flags;
    s->pid_ns = shmkit__pid_ns();
    __atomic_store_n(&s->magic, SYNC_MUTEX_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/*
 * pthread_mutex_trylock, minus a glibc bug (seen in 2.36): on a robust
 * mutex that is not recoverable it returns ENOTRECOVERABLE but leaves the
 * futex word locked by the caller, so every other process then blocks
 * for good. A mutex never leaves that state, so look first; if it got
 * there between the look and the call, undo the stray lock.
 */
static int mutex_trylock(struct mutex_shared *s)
{
    int r;

    if (sync_not_recoverable(&s->pm))
        return ENOTRECOVERABLE;
    r = pthread_mutex_trylock(&s->pm);
    if (r == ENOTRECOVERABLE)
        sync_release_stray(&s->pm);
    return r;
}

enum acquire_how { ACQ_BLOCK, ACQ_TRY, ACQ_TIMED };

/* Brings p's cache line in for writing. GCC emits PREFETCHW only when
 * told the CPU has it; every x86-64 we run on has, and older ones treat
 * the opcode as a no-op. */
static inline void prefetch_for_write(const void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* The rare outcomes of an acquire, kept out of the fast path. */
static __attribute__((noinline, cold)) int
acquire_refused(shmkit_mutex *m, int r)
{
    return shmkit__fail(NULL, r, "shmkit_mutex_lock(%p)", (void *)m);
}

/* The C library did not give the lock (or gave it with owner death):
 * drop the record pushed for it unless held. */
static __attribute__((noinline)) int acquire_failed(int r)
{
    struct thread_locks *t = self.t;

    if (r != EOWNERDEAD)
        held_remove(t, &t->h[self.n - 1]);
    return lock_result(r);
}

/* This thread already holds s: one level deeper if recursive. */
static __attribute__((noinline)) int
acquire_again(shmkit_mutex *m, struct mutex_shared *s, struct held *h)
{
    if (!(s->flags & SHMKIT_MUTEX_RECURSIVE))
        return shmkit__fail(NULL, -EDEADLK, "shmkit_mutex_lock(%p): "
                            "already held by this thread", (void *)m);
    if (h->again == UINT32_MAX - 1)
        return shmkit__fail(NULL, -EAGAIN, "shmkit_mutex_lock: depth");
    h->again++;
    return 0;
}

/*
 * The common path of lock, trylock and timedlock; inlined into each, so
 * `how` is a constant there.
 *
 * The header is read from the same cache line as the futex word the C
 * library then writes. Fetched by a plain read, a contended line would
 * arrive shared and need a second transfer to be written; prefetching it
 * for writing gets it exclusive once.
 */
static inline __attribute__((always_inline)) int
mutex_acquire(shmkit_mutex *m, enum acquire_how how,
              const struct timespec *deadline)
{
    struct mutex_shared *s = mutex_of(m);
    struct thread_locks *t = self.t;
    struct held *h;
    int r;

    prefetch_for_write(s);
    r = mutex_check(s);
    if (__builtin_expect(r != 0, 0))
        return acquire_refused(m, r);
    if (__builtin_expect(!t, 0) && !(t = thread_locks_new()))
        return acquire_refused(m, -ENOMEM);
    if (self.n) {
        h = held_find(t, s);
        if (h)
            return acquire_again(m, s, h);
        if (self.n >= SHMKIT_LOCKS_PER_THREAD)
            return acquire_refused(m, SHMKIT_ETOOMANYLOCKS);
    }
    /* Recorded before the wait: a thread blocked on a lock in a block
     * counts as holding it (closing the block would pull the memory from
     * under it), and nothing need survive the call but its result. */
    held_push(t, s);
    if (how == ACQ_BLOCK)
        r = pthread_mutex_lock(&s->pm);
    else if (how == ACQ_TRY)
        r = mutex_trylock(s);
    else
        r = pthread_mutex_clocklock(&s->pm, CLOCK_MONOTONIC, deadline);
    if (__builtin_expect(r == 0, 1))
        return 0;
    return acquire_failed(r);
}

int shmkit_mutex_lock(shmkit_mutex *m)
{
    return mutex_acquire(m, ACQ_BLOCK, NULL);
}

int shmkit_mutex_trylock(shmkit_mutex *m)
{
    return mutex_acquire(m, ACQ_TRY, NULL);
}

int shmkit_mutex_timedlock(shmkit_mutex *m, const struct timespec *deadline)
{
    if (!deadline || deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L)
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_timedlock: deadline");
    return mutex_acquire(m, ACQ_TIMED, deadline);
}

/* Unlock of anything but the most recent lock at depth 1. */
static __attribute__((noinline)) int mutex_unlock_slow(shmkit_mutex *m)
{
    struct mutex_shared *s = mutex_of(m);
    struct thread_locks *t = self.t;
    struct held *h = t ? held_find(t, s) : NULL;
    int r;

    if (!h)
        return shmkit__fail(NULL, SHMKIT_ENOTOWNER,
                            "shmkit_mutex_unlock(%p)", (void *)m);
    if (h->again) {
        h->again--;
        return 0;
    }
    r = pthread_mutex_unlock(&s->pm);
    /* Forget it even on EPERM: the C library says we do not hold it
     * (someone re-initialised it under us), so neither do we. */
    held_remove(t, h);
    return r ? shmkit__fail(NULL, lock_result(r), "shmkit_mutex_unlock(%p)",
                            (void *)m)
             : 0;
}

int shmkit_mutex_unlock(shmkit_mutex *m)
{
    struct mutex_shared *s = mutex_of(m);
    struct thread_locks *t = self.t;
    unsigned n;
    int r;

    /* Fast path: releasing the lock taken last, once. */
    if (__builtin_expect((n = self.n) == 0 || t->h[n - 1].m != s ||
                             t->h[n - 1].again != 0, 0))
        return mutex_unlock_slow(m);
    r = pthread_mutex_unlock(&s->pm);
    /* Read again rather than kept across the call: cheaper than saving
     * registers, and only this thread writes them. */
    n = self.n - 1;
    __atomic_store_n(&self.t->n, n, __ATOMIC_RELEASE);
    self.n = n;
    if (__builtin_expect(r != 0, 0))
        return shmkit__fail(NULL, lock_result(r), "shmkit_mutex_unlock");
    return 0;
}

int shmkit_mutex_consistent(shmkit_mutex *m)
{
    struct mutex_shared *s = mutex_of(m);
    struct thread_locks *t = self.t;
    int r;

    if (!t || !held_find(t, s))
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_consistent(%p): "
                            "not held by this thread", (void *)m);
    r = pthread_mutex_consistent(&s->pm);
    return r ? shmkit__fail(NULL, -r, "shmkit_mutex_consistent(%p)",
                            (void *)m)
             : 0;
}

int shmkit_mutex_destroy(shmkit_mutex *m)
{
    struct mutex_shared *s = mutex_of(m);
    int r = mutex_check(s);

    if (r)
        return shmkit__fail(NULL, r, "shmkit_mutex_destroy(%p)", (void *)m);
    /* Held by nobody, or dead for good, or its holder died: all fine to
     * destroy. Held by a live thread (this one included): not. */
    r = mutex_trylock(s);
    if (r == 0 || r == EOWNERDEAD) {
        if (r == EOWNERDEAD)
            pthread_mutex_consistent(&s->pm);
        pthread_mutex_unlock(&s->pm);
    } else if (r != ENOTRECOVERABLE) {
        return shmkit__fail(NULL, -EBUSY, "shmkit_mutex_destroy(%p)",
                            (void *)m);
    }
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    pthread_mutex_destroy(&s->pm);
    return 0;
}

unsigned shmkit_mutex_held(const shmkit_mutex *m)
{
    struct thread_locks *t = self.t;
    struct held *h = t ? held_find(t, (const struct mutex_shared *)m) : NULL;

    return h ? h->again + 1 : 0;
}

bool shmkit_mutex_is_recursive(const shmkit_mutex *m)
{
    const struct mutex_shared *s = (const struct mutex_shared *)m;

    return s->magic == SYNC_MUTEX_MAGIC &&
           (s->flags & SHMKIT_MUTEX_RECURSIVE);
}

/* ---- condition variable --------------------------------------------- */

static inline struct cond_shared *cond_of(shmkit_cond *c)
{
    return (struct cond_shared *)(void *)c;
}

static inline int cond_check(const struct cond_shared *s)
{
    if (!s || __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != SYNC_COND_MAGIC ||
        s->version != SYNC_VERSION)
        return -EINVAL;
    return shmkit__pid_ns_check(s->pid_ns);
}

bool shmkit__cond_valid(const void *p)
{
    struct cond_shared s;

    memcpy(&s, p, sizeof s);
    return s.magic == SYNC_COND_MAGIC && s.version == SYNC_VERSION &&
           s.flags == 0;
}

int shmkit_cond_init(shmkit_cond *c)
{
    struct cond_shared *s = cond_of(c);
    pthread_condattr_t a;
    int r;

    if (!c || ((uintptr_t)c & 7))
        return shmkit__fail(NULL, -EINVAL, "shmkit_cond_init");
    memset(c, 0, sizeof *c);
    r = pthread_condattr_init(&a);
    if (r)
        return shmkit__fail(NULL, -r, "shmkit_cond_init");
    r = pthread_condattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!r)
        r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!r)
        r = pthread_cond_init(&s->pc, &a);
    pthread_condattr_destroy(&a);
    if (r)
        return shmkit__fail(NULL, -r, "shmkit_cond_init");
    s->version = SYNC_VERSION;
    s->pid_ns = shmkit__pid_ns();
    __atomic_store_n(&s->magic, SYNC_COND_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* Waits on c with m released. The C library releases m once, which frees
 * it entirely (recursion is only in our list), and reacquires it once;
 * our entry, depth included, stays put meanwhile because only this thread
 * touches it. */
static int cond_wait_common(shmkit_cond *c, shmkit_mutex *m,
                            const struct timespec *deadline)
{
    struct cond_shared *cs = cond_of(c);
    struct mutex_shared *ms = mutex_of(m);
    struct thread_locks *t = self.t;
    struct held *h;
    int r;

    r = cond_check(cs);
    if (!r)
        r = mutex_check(ms);
    if (r)
        return shmkit__fail(NULL, r, "shmkit_cond_wait(%p, %p)", (void *)c,
                            (void *)m);
    h = t ? held_find(t, ms) : NULL;
    if (!h)
        return shmkit__fail(NULL, SHMKIT_ENOTOWNER, "shmkit_cond_wait(%p, "
                            "%p): mutex not held", (void *)c, (void *)m);
    if (deadline)
        r = pthread_cond_clockwait(&cs->pc, &ms->pm, CLOCK_MONOTONIC,
                                   deadline);
    else
        r = pthread_cond_wait(&cs->pc, &ms->pm);
    if (r == ENOTRECOVERABLE)
        held_remove(t, h); /* returned without the mutex */
    return lock_result(r);
}

int shmkit_cond_wait(shmkit_cond *c, shmkit_mutex *m)
{
    return cond_wait_common(c, m, NULL);
}

int shmkit_cond_timedwait(shmkit_cond *c, shmkit_mutex *m,
                          const struct timespec *deadline)
{
    if (!deadline || deadline->tv_nsec < 0 || deadline->tv_nsec >= 1000000000L)
        return shmkit__fail(NULL, -EINVAL, "shmkit_cond_timedwait: deadline");
    return cond_wait_common(c, m, deadline);
}

int shmkit_cond_signal(shmkit_cond *c)
{
    struct cond_shared *s = cond_of(c);
    int r = cond_check(s);

    if (!r)
        r = -pthread_cond_signal(&s->pc);
    return r ? shmkit__fail(NULL, r, "shmkit_cond_signal(%p)", (void *)c) : 0;
}

int shmkit_cond_broadcast(shmkit_cond *c)
{
    struct cond_shared *s = cond_of(c);
    int r = cond_check(s);

    if (!r)
        r = -pthread_cond_broadcast(&s->pc);
    return r ? shmkit__fail(NULL, r, "shmkit_cond_broadcast(%p)", (void *)c)
             : 0;
}

int shmkit_cond_destroy(shmkit_cond *c)
{
    struct cond_shared *s = cond_of(c);
    int r = cond_check(s);

    if (r)
        return shmkit__fail(NULL, r, "shmkit_cond_destroy(%p)", (void *)c);
    /* Only the magic goes: glibc's pthread_cond_destroy waits for every
     * waiter to leave, and a waiter killed inside a wait never does. */
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    return 0;
}

/* ---- inspection ----------------------------------------------------- */

int shmkit_mutex_inspect(const shmkit_mutex *m, shmkit_mutex_info *info)
{
    const struct mutex_shared *s = (const struct mutex_shared *)m;
    unsigned word;
    int mark;

    if (!m || !info || !shmkit__mutex_valid(m))
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_inspect(%p)",
                            (const void *)m);
    memset(info, 0, sizeof *info);
    info->recursive = s->flags & SHMKIT_MUTEX_RECURSIVE;
    info->pid_ns = s->pid_ns;
#if !defined(__GLIBC__)
    return -ENOTSUP;
#endif
    word = sync_futex_word(&s->pm);
    mark = sync_owner_mark(&s->pm);
    info->owner_tid = (pid_t)(word & FUTEX_BITS_TID);
    info->owner_died = (word & FUTEX_BIT_OWNER_DIED) != 0;
    info->locked = info->owner_tid != 0 || info->owner_died;
    info->inconsistent = mark == GLIBC_INCONSISTENT;
    info->not_recoverable = mark == GLIBC_NOTRECOVERABLE;
    return 0;
}
