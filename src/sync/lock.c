/*
 * lock.c - robust process-shared mutexes and condition variables over
 * futexes, and the per-thread record of held locks that the block layer
 * consults.
 *
 * The mutex owns its lock word: a futex holding the owner's thread id and
 * the kernel's robust-futex bits (WAITERS, OWNER_DIED). While a thread
 * holds it, the mutex is an entry of the thread's robust list, the one the
 * C library registered with set_robust_list: the entry's shape is the C
 * library's (the word 32 bytes before the `next` pointer, `prev` just
 * before `next`), so its robust mutexes and ours share the list and the
 * kernel marks both OWNER_DIED when the thread dies. The protocol is the
 * C library's: list_op_pending names the entry around every change, the
 * entry is linked only while the word is ours.
 *
 * States of the word: 0 free; tid held; tid|OWNER_DIED held after an owner
 * death, not yet repaired ("inconsistent"); OWNER_DIED (tid 0) its holder
 * died; NOTREC (an impossible tid) not recoverable, for good. WAITERS may
 * be or'ed into any of them.
 *
 * Pointers in shared memory are never trusted: a peer may write anything
 * into a mutex. The list pointers a thread follows are checked against its
 * own private record (the shadow of each held entry's `next`), and where
 * they cannot be (a C library mutex between two of ours) they are read and
 * written through the OS layer's checked copy, which answers EFAULT rather
 * than crashing.
 *
 * Each thread keeps a record of the locks it holds with a depth for each:
 * recursion, "who holds what" for shmkit_block_close(), the per-thread
 * bound, and the hand-over through condition waits. The inline fast paths
 * of sync_inline.h update it too. The records of all threads hang off one
 * registry so that any thread can answer "does this process hold a lock in
 * [p, p+len)?". Entries are written only by their own thread (relaxed
 * atomics); readers of other threads' records may see them a moment late,
 * which is harmless: a thread that locks inside a block while another
 * thread closes it is racing anyway.
 *
 * A condition is a futex sequence counter: waiters sleep on the counter,
 * signal and broadcast bump it and wake. There is no lock inside it, so a
 * process killed anywhere in a condition call leaves nothing that blocks
 * anyone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hooks.h"
#include "core/internal.h"
#include "core/os.h"
#include "sync_internal.h"

/* ---- shared layouts ------------------------------------------------- */

typedef struct shmkit__mutex_layout mutex_shared;

_Static_assert(sizeof(mutex_shared) == SHMKIT_MUTEX_SIZE, "mutex layout");
_Static_assert(offsetof(mutex_shared, version) == 4, "version offset");
_Static_assert(offsetof(mutex_shared, pid_ns) == 8, "pid_ns offset");
_Static_assert(offsetof(mutex_shared, word) == 16, "word offset");
_Static_assert(offsetof(mutex_shared, next) -
                       offsetof(mutex_shared, prev) == sizeof(void *),
               "prev just before next, as the C library's list has it");

/* Where the word sits relative to the list entry (the kernel's
 * futex_offset); the C library's robust mutexes use the same on 64-bit
 * Linux, which is checked against the registered head at thread set-up. */
#define ROBUST_FUTEX_OFFSET                                                   \
    ((long)offsetof(mutex_shared, word) - (long)offsetof(mutex_shared, next))

/* The kernel's struct robust_list_head. */
struct robust_head {
    void *list;
    long futex_offset;
    void *list_op_pending;
};

/* The inside of a shmkit_cond (sync_internal.h). */
typedef struct shmkit__cond_layout cond_shared;

_Static_assert(sizeof(cond_shared) == SHMKIT_COND_SIZE, "cond layout");

/* Keeps the compiler from moving memory accesses across it. A SIGKILL
 * can land between any two instructions, and the kernel's owner-death walk
 * must then find list_op_pending, the list and the word in the order the
 * protocol writes them: acquire/release on the word alone would let the
 * compiler sink or hoist the plain stores around it. */
#define FENCE() __atomic_signal_fence(__ATOMIC_SEQ_CST)

#define W_WAITERS SHMKIT__FUTEX_WAITERS
#define W_DIED SHMKIT__FUTEX_OWNER_DIED
#define W_TID SHMKIT__FUTEX_TID
#define W_NOTREC SHMKIT__FUTEX_NOTREC

/* Rounds of spinning on a held lock before sleeping, and how long a sleeper
 * waits before asking whether the owner still exists (a word naming a
 * thread that is gone, and that no robust list will ever release, is
 * taken as an owner death rather than waited on forever). */
#define SPIN_ROUNDS 20
#define OWNER_PROBE_NS 50000000L

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

struct thread_locks {
    struct thread_locks *next, *prev; /* registry, under reg_lock */
    uint32_t n;                       /* entries in use, read by others */
    /* Our own robust list head, used only where the C library registered
     * none; `prev` first, as the list's doubly linked shape wants. */
    void *own_prev;
    struct robust_head own_head;
    struct shmkit__held h[SHMKIT_LOCKS_PER_THREAD];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct thread_locks *reg_head;
static pthread_key_t reg_key;

/* This thread's view; the inline paths read it (sync_inline.h). Small, so
 * that it fits the static TLS a dlopen()ed library may use. */
SHMKIT_API __thread struct shmkit__thread shmkit__self
    __attribute__((tls_model("initial-exec")));

#define self shmkit__self

static inline struct thread_locks *self_record(void)
{
    return self.h ? (struct thread_locks *)((char *)self.h -
                                            offsetof(struct thread_locks, h))
                  : NULL;
}

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

/* Thread exit: a lock still held is released by the kernel's walk of the
 * robust list (the next locker gets owner-died), so the record just goes.
 * If the list head was ours, the kernel walks it after this (the memory
 * must outlive the thread): unregister it first; the C library's head
 * lives in the thread's descriptor and is walked at exit as usual. */
static void reg_thread_exit(void *p)
{
    struct thread_locks *t = p;

    pthread_mutex_lock(&reg_lock);
    reg_unlink(t);
    pthread_mutex_unlock(&reg_lock);
    if ((void *)self.robust == (void *)&t->own_head) {
        if (self.n)
            return; /* the kernel still needs the head: leak the record */
        shmkit__os.robust_list_set(NULL, sizeof t->own_head);
    }
    memset(&self, 0, sizeof self);
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

/* The child has one thread and holds no lock: robust locks belong to the
 * parent's threads (the C library empties the child's robust list; if the
 * head was ours, it is emptied here). Other threads' records are dropped,
 * not freed, as their owners are gone mid-whatever. The child has a new
 * thread id and may live in a new PID namespace: set-up runs again. */
static void fork_child(void)
{
    struct thread_locks *t = self_record();

    pthread_mutex_init(&reg_lock, NULL);
    reg_head = t;
    if (t) {
        t->next = t->prev = NULL;
        t->n = 0;
        memset(t->h, 0, sizeof t->h);
        t->own_head.list = &t->own_head;
        t->own_head.list_op_pending = NULL;
        t->own_prev = &t->own_head;
    }
    /* The kernel gives a child no robust list; the C library registers
     * its head again, ours must be too: look again at first use. */
    self.robust = NULL;
    self.tid = 0;
    self.n = 0;
    self_ns = UINT64_MAX;
}

static void reg_init(void)
{
    pthread_key_create(&reg_key, reg_thread_exit);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Finds this thread's robust list head, or registers our own. */
static int robust_setup(struct thread_locks *t)
{
    void *head = NULL;
    size_t len = 0;

    if (self.robust)
        return 0;
    if (shmkit__os.robust_list_get(&head, &len) == 0 && head &&
        len == sizeof(struct robust_head)) {
        if (((struct robust_head *)head)->futex_offset != ROBUST_FUTEX_OFFSET)
            return -ENOTSUP; /* a C library whose entries differ */
        self.robust = head;
        return 0;
    }
    t->own_head.list = &t->own_head;
    t->own_head.futex_offset = ROBUST_FUTEX_OFFSET;
    t->own_head.list_op_pending = NULL;
    t->own_prev = &t->own_head;
    if (shmkit__os.robust_list_set(&t->own_head, sizeof t->own_head) < 0)
        return -ENOTSUP;
    self.robust = (void **)&t->own_head;
    return 0;
}

/* Sets up the calling thread (record, thread id, robust list) if needed:
 * after this the inline paths may run. 0 or -ENOMEM / -ENOTSUP. */
static int thread_setup(void)
{
    struct thread_locks *t = self_record();
    int r;

    if (self.tid)
        return 0;
    pthread_once(&reg_once, reg_init);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return -ENOMEM;
        if (pthread_setspecific(reg_key, t) != 0) {
            free(t);
            return -ENOMEM;
        }
        pthread_mutex_lock(&reg_lock);
        t->next = reg_head;
        if (reg_head)
            reg_head->prev = t;
        reg_head = t;
        pthread_mutex_unlock(&reg_lock);
        self.h = t->h;
        self.n_shared = &t->n;
        self.n = 0;
    }
    r = robust_setup(t);
    if (r < 0)
        return r;
    self.ns = shmkit__pid_ns();
    self.tid = (uint32_t)shmkit__os.gettid();
    return 0;
}

/* The entry for m in this thread's record, searched from the most recent,
 * or NULL. */
static inline struct shmkit__held *held_find(const void *m)
{
    unsigned i;

    for (i = self.n; i-- > 0;)
        if (self.h[i].m == m)
            return &self.h[i];
    return NULL;
}

static inline struct shmkit__held *held_push(const void *m)
{
    unsigned n = self.n;

    self.h[n].next = NULL;
    __atomic_store_n(&self.h[n].m, m, __ATOMIC_RELAXED);
    __atomic_store_n(self.n_shared, n + 1, __ATOMIC_RELEASE);
    self.n = n + 1;
    return &self.h[n];
}

/* Removes h, keeping the order of the others (usually h is last). */
static void held_remove(struct shmkit__held *h)
{
    unsigned last = self.n - 1;
    unsigned i;

    for (i = (unsigned)(h - self.h); i < last; i++) {
        __atomic_store_n(&self.h[i].m, self.h[i + 1].m, __ATOMIC_RELAXED);
        self.h[i].next = self.h[i + 1].next;
        self.h[i].again = self.h[i + 1].again;
    }
    self.h[last].again = 0;
    self.h[last].next = NULL;
    __atomic_store_n(self.n_shared, last, __ATOMIC_RELEASE);
    self.n = last;
}

/* True if some thread's record names a lock that overlaps [lo, hi). */
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

/* ---- the robust list ------------------------------------------------ */

/* The `prev` slot of the entry an untagged list pointer names. */
static inline void **prev_slot(void *entry)
{
    /* Integer arithmetic: entry may be anything a peer wrote (NULL, 1),
     * and then only a checked copy goes near the result. */
    return (void **)(((uintptr_t)entry & ~(uintptr_t)1) - sizeof(void *));
}

/* Links s at the front of this thread's list (s's word is ours). The
 * first entry comes from the head, which only this thread and the C
 * library write: it is the head itself, one of ours, or one of the C
 * library's, whose `prev` slot it keeps valid; nothing here was read from
 * shared memory. */
static void robust_link(mutex_shared *s, struct shmkit__held *h)
{
    void **robust = self.robust;
    void *first = robust[0];

    s->prev = (void *)robust;
    s->next = first;
    *prev_slot(first) = &s->next;
    FENCE();
    robust[0] = &s->next;
    FENCE();
    h->next = first;
}

/*
 * Relinks the list from this thread's record alone: the head, then our
 * held entries newest first, then the head again. Used when a pointer in
 * a mutex we hold was overwritten by a peer: entries of the C library's
 * that were in the list are dropped from it (they lose the kernel's
 * owner-death marking), nothing is followed that could fault.
 */
static void robust_rebuild(const mutex_shared *skip)
{
    void **robust = self.robust;
    void *after = (void *)robust;
    unsigned i;

    for (i = 0; i < self.n; i++) {
        mutex_shared *s = (mutex_shared *)self.h[i].m;
        if (s == skip || !self.h[i].next)
            continue;
        s->next = after;
        *prev_slot(after) = &s->next;
        self.h[i].next = after;
        after = &s->next;
    }
    FENCE();
    robust[0] = after;
    *prev_slot(after) = (void *)robust;
}

/*
 * Takes s (whose word is ours) off this thread's list. 0, or
 * SHMKIT_ECORRUPT if a list pointer in s had been overwritten (the list
 * is rebuilt from the record then).
 */
static int robust_unlink(mutex_shared *s, struct shmkit__held *h)
{
    void **robust = self.robust;
    void *me = &s->next, *succ = h->next, *p, *n;
    void **pred = NULL;
    struct shmkit__held *ph = NULL;
    unsigned i;

    if (!succ)
        return 0; /* never linked (a waiter's record) */
    if (s->next == succ) {
        if (robust[0] == me) {
            pred = robust;
        } else {
            for (i = self.n; i-- > 0;) {
                mutex_shared *o = (mutex_shared *)self.h[i].m;
                if (self.h[i].next == me && o->next == me) {
                    pred = &o->next;
                    ph = &self.h[i];
                    break;
                }
            }
        }
        if (pred) {
            /* succ was s's successor when we last set it and nothing
             * changed s->next since: it is still in the list. */
            *pred = succ;
            *prev_slot(succ) = pred;
            if (ph)
                ph->next = succ;
            h->next = NULL;
            return 0;
        }
    }
    /* A C library entry next to s (it may have rewritten s->next when it
     * unlinked its own), or pointers overwritten: follow s's own links, as
     * the C library would, through checked copies. */
    p = s->prev;
    n = s->next;
    {
        void *at_p = NULL, *at_n = NULL;
        if (p && n &&
            shmkit__os.mem_copy_checked(&at_p, p, sizeof at_p) == 0 &&
            shmkit__os.mem_copy_checked(&at_n, prev_slot(n), sizeof at_n) == 0 &&
            at_p == me && at_n == me &&
            shmkit__os.mem_copy_checked(p, &n, sizeof n) == 0 &&
            shmkit__os.mem_copy_checked(prev_slot(n), &p, sizeof p) == 0) {
            for (i = 0; i < self.n; i++) {
                mutex_shared *o = (mutex_shared *)self.h[i].m;
                if (self.h[i].next && (void *)&o->next == p)
                    self.h[i].next = n;
            }
            h->next = NULL;
            return 0;
        }
    }
    robust_rebuild(s);
    h->next = NULL;
    return SHMKIT_ECORRUPT;
}

/* ---- mutex ---------------------------------------------------------- */

static inline mutex_shared *mutex_of(shmkit_mutex *m)
{
    return (mutex_shared *)(void *)m;
}

/* The header check: 0, -EINVAL (not an initialised mutex of our version)
 * or SHMKIT_ENAMESPACE. */
static int mutex_check(const mutex_shared *s)
{
    if (!s || ((uintptr_t)s & 7) ||
        __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != SYNC_MUTEX_MAGIC ||
        s->version != SYNC_VERSION ||
        (s->flags & ~SHMKIT_MUTEX_RECURSIVE))
        return -EINVAL;
    return shmkit__pid_ns_check(s->pid_ns);
}

int shmkit__mutex_header(const void *p)
{
    mutex_shared s;

    memcpy(&s, p, sizeof s);
    if (s.magic != SYNC_MUTEX_MAGIC)
        return SHMKIT_ECORRUPT;
    if (s.version != SYNC_VERSION)
        return SHMKIT_EVERSION;
    return (s.flags & ~SHMKIT_MUTEX_RECURSIVE) ? SHMKIT_ECORRUPT : 0;
}

bool shmkit__mutex_valid(const void *p)
{
    return shmkit__mutex_header(p) == 0;
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

static bool deadline_ok(const struct timespec *d)
{
    return d && d->tv_nsec >= 0 && d->tv_nsec < 1000000000L;
}

int shmkit_mutex_init(shmkit_mutex *m, unsigned flags)
{
    mutex_shared *s = mutex_of(m);

    if (!m || ((uintptr_t)m & 7) || (flags & ~SHMKIT_MUTEX_RECURSIVE))
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_init: flags %#x",
                            flags);
    memset(m, 0, sizeof *m);
    s->version = SYNC_VERSION;
    s->flags = (uint16_t)flags;
    s->pid_ns = shmkit__pid_ns();
    __atomic_store_n(&s->magic, SYNC_MUTEX_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

enum acquire_how { ACQ_BLOCK, ACQ_TRY, ACQ_TIMED };

/* The earlier of `deadline` (may be NULL) and now + OWNER_PROBE_NS. */
static const struct timespec *probe_deadline(const struct timespec *deadline,
                                             struct timespec *buf)
{
    clock_gettime(CLOCK_MONOTONIC, buf);
    buf->tv_nsec += OWNER_PROBE_NS;
    if (buf->tv_nsec >= 1000000000L) {
        buf->tv_sec++;
        buf->tv_nsec -= 1000000000L;
    }
    if (deadline && !shmkit__ts_before(buf, deadline))
        return deadline;
    return buf;
}

static bool deadline_passed(const struct timespec *deadline)
{
    struct timespec now;

    if (!deadline)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return !shmkit__ts_before(&now, deadline);
}

/*
 * Makes the word ours (the record entry h exists, the list entry does
 * not). Returns 0, SHMKIT_EOWNERDEAD (ours, after an owner death), or a
 * refusal: SHMKIT_ENOTRECOVERABLE, -EBUSY (try), -ETIMEDOUT, -EDEADLK
 * (the word names this thread, which holds it at another address).
 */
static int word_acquire(mutex_shared *s, struct shmkit__held *h,
                        enum acquire_how how, const struct timespec *deadline)
{
    void **robust = self.robust;
    uint32_t tid = self.tid, extra = 0, v;
    unsigned spins = how == ACQ_TRY ? 0 : SPIN_ROUNDS;
    bool last_try = false;
    int r;

    robust[2] = &s->next; /* list_op_pending */
    FENCE();
    for (;;) {
        v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
        if ((v & W_TID) == W_NOTREC) {
            r = SHMKIT_ENOTRECOVERABLE;
            break;
        }
        if ((v & W_TID) == 0) {
            uint32_t nv = tid | (v & (W_DIED | W_WAITERS)) | extra;
            if (!__atomic_compare_exchange_n(&s->word, &v, nv, false,
                                             __ATOMIC_ACQUIRE,
                                             __ATOMIC_RELAXED))
                continue;
            robust_link(s, h);
            r = (v & W_DIED) ? SHMKIT_EOWNERDEAD : 0;
            break;
        }
        if ((v & W_TID) == tid) {
            /* Ours, through another mapping of the same memory (a second
             * handle), or a word a peer wrote: waiting would be forever. */
            r = -EDEADLK;
            break;
        }
        if (how == ACQ_TRY || last_try) {
            r = last_try ? -ETIMEDOUT : -EBUSY;
            break;
        }
        if (spins) {
            spins--;
            shmkit__cpu_relax();
            continue;
        }
        if (!(v & W_WAITERS)) {
            uint32_t nv = v | W_WAITERS;
            if (!__atomic_compare_exchange_n(&s->word, &v, nv, false,
                                             __ATOMIC_RELAXED,
                                             __ATOMIC_RELAXED))
                continue;
            v = nv;
        }
        {
            struct timespec buf;
            const struct timespec *until = probe_deadline(deadline, &buf);
            r = shmkit__os.futex_wait(&s->word, v, until);
            /* Having slept, assume others sleep too: whoever takes the
             * lock from here on keeps WAITERS so that its unlock wakes. */
            extra = W_WAITERS;
            if (r == -ETIMEDOUT && until == deadline) {
                r = -ETIMEDOUT;
                break;
            }
            if (r == -ETIMEDOUT &&
                __atomic_load_n(&s->word, __ATOMIC_RELAXED) == v &&
                shmkit__os.thread_exists((int)(v & W_TID)) == 0) {
                /* The word names a thread that is gone and was not
                 * released at its death: its entry was lost (or the word
                 * was written by a peer). Mark it as the kernel would. */
                uint32_t nv = (v & W_WAITERS) | W_DIED;
                __atomic_compare_exchange_n(&s->word, &v, nv, false,
                                            __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED);
            }
            if (deadline_passed(deadline))
                last_try = true; /* one more look, then give up */
        }
    }
    FENCE();
    robust[2] = NULL;
    return r;
}

static __attribute__((noinline, cold)) int acquire_refused(shmkit_mutex *m,
                                                            int r)
{
    return shmkit__fail(NULL, r, "shmkit_mutex_lock(%p)", (void *)m);
}

/* This thread already holds s: one level deeper if recursive. */
static int acquire_again(shmkit_mutex *m, mutex_shared *s,
                         struct shmkit__held *h)
{
    if (!(s->flags & SHMKIT_MUTEX_RECURSIVE))
        return shmkit__fail(NULL, -EDEADLK, "shmkit_mutex_lock(%p): "
                            "already held by this thread", (void *)m);
    if (h->again == UINT32_MAX - 1)
        return shmkit__fail(NULL, -EAGAIN, "shmkit_mutex_lock: depth");
    h->again++;
    return 0;
}

static int mutex_acquire(shmkit_mutex *m, enum acquire_how how,
                         const struct timespec *deadline)
{
    mutex_shared *s = mutex_of(m);
    struct shmkit__held *h;
    int r = mutex_check(s);

    if (r)
        return acquire_refused(m, r);
    r = thread_setup();
    if (r)
        return acquire_refused(m, r);
    if (self.n) {
        h = held_find(s);
        if (h)
            return acquire_again(m, s, h);
        if (self.n >= SHMKIT_LOCKS_PER_THREAD)
            return acquire_refused(m, SHMKIT_ETOOMANYLOCKS);
    }
    /* Recorded before the wait: a thread blocked on a lock in a block
     * counts as holding it (closing the block would pull the memory from
     * under it). */
    h = held_push(s);
    r = word_acquire(s, h, how, deadline);
    if (r == 0 || r == SHMKIT_EOWNERDEAD)
        return r;
    held_remove(h);
    if (r == -EBUSY || r == -ETIMEDOUT)
        return r; /* ordinary answers, no message */
    return acquire_refused(m, r);
}

/* The inline paths' first attempt (sync_inline.h), so that the called
 * functions cost no more than a call on the uncontended path. */
static inline bool take_fast(shmkit_mutex *m)
{
    mutex_shared *s;

    if (__builtin_expect(self.tid == 0 || self.n >= SHMKIT_LOCKS_PER_THREAD,
                         0))
        return false;
    s = shmkit__mutex_fast_check(m, &self);
    return s && shmkit__mutex_take_fast(s, &self) == 0;
}

int shmkit_mutex_lock(shmkit_mutex *m)
{
    if (__builtin_expect(take_fast(m), 1))
        return 0;
    return mutex_acquire(m, ACQ_BLOCK, NULL);
}

int shmkit_mutex_trylock(shmkit_mutex *m)
{
    if (__builtin_expect(take_fast(m), 1))
        return 0;
    return mutex_acquire(m, ACQ_TRY, NULL);
}

int shmkit_mutex_timedlock(shmkit_mutex *m, const struct timespec *deadline)
{
    if (!deadline_ok(deadline))
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_timedlock: deadline");
    return mutex_acquire(m, ACQ_TIMED, deadline);
}

/*
 * Releases the word of s, which this thread holds (record entry h), and
 * takes it off the robust list; the record entry stays (the caller drops
 * it, or keeps it across a condition wait). An inconsistent mutex (held
 * after an owner death, never repaired) becomes not recoverable.
 * 0, or SHMKIT_ECORRUPT if the word or the list pointers had been
 * overwritten (the lock is released all the same), or SHMKIT_ENOTOWNER if
 * the word is not this thread's (it was re-initialised or overwritten).
 */
static int word_release(mutex_shared *s, struct shmkit__held *h)
{
    void **robust = self.robust;
    uint32_t tid = self.tid, v, nv, old;
    int r;

    v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
    robust[2] = &s->next;
    FENCE();
    r = robust_unlink(s, h);
    FENCE();
    if ((v & W_TID) != tid) {
        robust[2] = NULL;
        return SHMKIT_ENOTOWNER;
    }
    nv = (v & W_DIED) ? W_NOTREC : 0;
    old = __atomic_exchange_n(&s->word, nv, __ATOMIC_RELEASE);
    FENCE();
    if (nv == W_NOTREC)
        shmkit__os.futex_wake(&s->word, INT_MAX);
    else if (old & W_WAITERS)
        shmkit__os.futex_wake(&s->word, 1);
    robust[2] = NULL;
    if ((old & ~W_WAITERS) != (v & ~W_WAITERS))
        r = SHMKIT_ECORRUPT; /* someone wrote the word while we held it */
    return r;
}

static int unlock_result(shmkit_mutex *m, int r)
{
    return r ? shmkit__fail(NULL, r, "shmkit_mutex_unlock(%p)", (void *)m)
             : 0;
}

static __attribute__((noinline)) int mutex_unlock_slow(shmkit_mutex *m)
{
    mutex_shared *s = mutex_of(m);
    struct shmkit__held *h = self.tid ? held_find(s) : NULL;
    int r;

    if (!h)
        return shmkit__fail(NULL, SHMKIT_ENOTOWNER,
                            "shmkit_mutex_unlock(%p)", (void *)m);
    if (h->again) {
        h->again--;
        return 0;
    }
    r = word_release(s, h);
    /* Forget it even on ENOTOWNER: the word says we do not hold it. */
    held_remove(h);
    return unlock_result(m, r);
}

/* The inline path of sync_inline.h, then the rest. */
int shmkit_mutex_unlock(shmkit_mutex *m)
{
    mutex_shared *s = mutex_of(m);
    struct shmkit__held *h;
    void **robust = self.robust;
    uint32_t n = self.n, tid = self.tid;
    void *next;

    if (__builtin_expect(n == 0, 0))
        return mutex_unlock_slow(m);
    h = &self.h[n - 1];
    next = h->next;
    if (__builtin_expect(h->m != s || h->again != 0 ||
                             robust[0] != (void *)&s->next ||
                             s->next != next ||
                             __atomic_load_n(&s->word, __ATOMIC_RELAXED) != tid,
                         0))
        return mutex_unlock_slow(m);
    robust[2] = &s->next;
    FENCE();
    robust[0] = next;
    *prev_slot(next) = (void *)robust;
    FENCE();
    if (__builtin_expect(!__atomic_compare_exchange_n(&s->word, &tid, 0, 0,
                                                      __ATOMIC_RELEASE,
                                                      __ATOMIC_RELAXED),
                         0))
        return shmkit__mutex_unlock_unlinked(m);
    FENCE();
    robust[2] = NULL;
    __atomic_store_n(self.n_shared, n - 1, __ATOMIC_RELEASE);
    self.n = n - 1;
    h->next = NULL;
    return 0;
}

int shmkit__mutex_unlock_unlinked(shmkit_mutex *m)
{
    mutex_shared *s = mutex_of(m);
    uint32_t old = __atomic_exchange_n(&s->word, 0, __ATOMIC_RELEASE);
    int r = 0;

    FENCE();
    if (old & W_WAITERS)
        shmkit__os.futex_wake(&s->word, 1);
    self.robust[2] = NULL;
    if ((old & ~W_WAITERS) != self.tid)
        r = SHMKIT_ECORRUPT;
    held_remove(&self.h[self.n - 1]);
    return unlock_result(m, r);
}

int shmkit_mutex_consistent(shmkit_mutex *m)
{
    mutex_shared *s = mutex_of(m);
    struct shmkit__held *h = self.tid ? held_find(s) : NULL;
    uint32_t v;

    if (!h)
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_consistent(%p): "
                            "not held by this thread", (void *)m);
    v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
    if (!(v & W_DIED) || (v & W_TID) != self.tid)
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_consistent(%p): "
                            "not in the owner-died state", (void *)m);
    __atomic_fetch_and(&s->word, ~W_DIED, __ATOMIC_RELAXED);
    return 0;
}

int shmkit_mutex_destroy(shmkit_mutex *m)
{
    mutex_shared *s = mutex_of(m);
    int r = mutex_check(s);
    uint32_t v, owner;

    if (r)
        return shmkit__fail(NULL, r, "shmkit_mutex_destroy(%p)", (void *)m);
    /* Held by nobody, or dead for good, or its holder died: all fine to
     * destroy. Held by a live thread (this one included): not. */
    v = __atomic_load_n(&s->word, __ATOMIC_ACQUIRE);
    owner = v & W_TID;
    if (owner && owner != W_NOTREC &&
        shmkit__os.thread_exists((int)owner) != 0)
        return shmkit__fail(NULL, -EBUSY, "shmkit_mutex_destroy(%p)",
                            (void *)m);
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    /* Anyone asleep on the word learns it is gone. */
    __atomic_store_n(&s->word, W_NOTREC, __ATOMIC_RELEASE);
    shmkit__os.futex_wake(&s->word, INT_MAX);
    return 0;
}

unsigned shmkit_mutex_held(const shmkit_mutex *m)
{
    struct shmkit__held *h = self.tid ? held_find(m) : NULL;

    return h ? h->again + 1 : 0;
}

bool shmkit_mutex_is_recursive(const shmkit_mutex *m)
{
    const mutex_shared *s = (const mutex_shared *)m;

    return s->magic == SYNC_MUTEX_MAGIC &&
           (s->flags & SHMKIT_MUTEX_RECURSIVE);
}

/* ---- condition variable --------------------------------------------- */

static inline cond_shared *cond_of(shmkit_cond *c)
{
    return (cond_shared *)(void *)c;
}

static int cond_check(const cond_shared *s)
{
    if (!s || ((uintptr_t)s & 7) ||
        __atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != SYNC_COND_MAGIC ||
        s->version != SYNC_VERSION || s->flags != 0)
        return -EINVAL;
    return shmkit__pid_ns_check(s->pid_ns);
}

int shmkit__cond_header(const void *p)
{
    cond_shared s;

    memcpy(&s, p, sizeof s);
    if (s.magic != SYNC_COND_MAGIC)
        return SHMKIT_ECORRUPT;
    if (s.version != SYNC_VERSION)
        return SHMKIT_EVERSION;
    return s.flags ? SHMKIT_ECORRUPT : 0;
}

bool shmkit__cond_valid(const void *p)
{
    return shmkit__cond_header(p) == 0;
}

int shmkit_cond_init(shmkit_cond *c)
{
    cond_shared *s = cond_of(c);

    if (!c || ((uintptr_t)c & 7))
        return shmkit__fail(NULL, -EINVAL, "shmkit_cond_init");
    memset(c, 0, sizeof *c);
    s->version = SYNC_VERSION;
    s->pid_ns = shmkit__pid_ns();
    __atomic_store_n(&s->magic, SYNC_COND_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* Tickets: waiters in the low half, wake tickets in the high half
 * (COND_WAITERS and COND_TICKETS read them: sync_internal.h). */
#define T_WAITER 1ull
#define T_TICKET (1ull << 32)

/* Registers a waiter. */
static void tickets_join(cond_shared *cs)
{
    uint64_t t = __atomic_load_n(&cs->tickets, __ATOMIC_RELAXED);

    while (COND_WAITERS(t) != UINT32_MAX &&
           !__atomic_compare_exchange_n(&cs->tickets, &t, t + T_WAITER, true,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ;
}

/* Takes a ticket and leaves (true), or, with `leave`, leaves without one
 * (false); without `leave` and no ticket, stays registered (false). */
static bool tickets_take(cond_shared *cs, bool leave)
{
    uint64_t t = __atomic_load_n(&cs->tickets, __ATOMIC_ACQUIRE), nt;
    bool took;

    do {
        took = COND_TICKETS(t) > 0 && COND_WAITERS(t) > 0;
        if (took)
            nt = t - T_TICKET - T_WAITER;
        else if (leave && COND_WAITERS(t) > 0)
            nt = t - T_WAITER;
        else
            return false;
        /* Never more tickets than waiters (a peer may write anything). */
        if (COND_TICKETS(nt) > COND_WAITERS(nt))
            nt = ((uint64_t)COND_WAITERS(nt) << 32) | COND_WAITERS(nt);
    } while (!__atomic_compare_exchange_n(&cs->tickets, &t, nt, true,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    return took;
}

/*
 * Registers as a waiter (holding m), releases m entirely (all levels; the
 * record entry and its depth stay, as the thread still counts as holding
 * m), sleeps on the sequence until it moves or the deadline passes, and
 * returns woken when it takes a wake ticket. A signal gives one ticket to
 * one waiter registered before it, a broadcast one to each: a notify wakes
 * exactly as many as it says, never a waiter that came later. A sleep that
 * times out stays registered until m is ours again and only then leaves,
 * so a signal sent meanwhile (by a holder of m) is not lost to a caller
 * that waits again in a loop. A process killed while registered leaves a
 * waiter count that only costs a later waiter a spurious wake-up; nothing
 * in here can block anyone.
 */
static int cond_wait_common(shmkit_cond *c, shmkit_mutex *m,
                            const struct timespec *deadline)
{
    cond_shared *cs = cond_of(c);
    mutex_shared *ms = mutex_of(m);
    struct shmkit__held *h;
    bool woken = false;
    uint32_t seq;
    int r, w;

    r = cond_check(cs);
    if (!r)
        r = mutex_check(ms);
    if (r)
        return shmkit__fail(NULL, r, "shmkit_cond_wait(%p, %p)", (void *)c,
                            (void *)m);
    h = self.tid ? held_find(ms) : NULL;
    if (!h || !h->next)
        return shmkit__fail(NULL, SHMKIT_ENOTOWNER, "shmkit_cond_wait(%p, "
                            "%p): mutex not held", (void *)c, (void *)m);
    seq = __atomic_load_n(&cs->seq, __ATOMIC_ACQUIRE);
    tickets_join(cs);
    r = word_release(ms, h);
    if (r == SHMKIT_ENOTOWNER) {
        tickets_take(cs, true);
        held_remove(h);
        return shmkit__fail(NULL, r, "shmkit_cond_wait(%p, %p): the mutex "
                            "was taken from under us", (void *)c, (void *)m);
    }
    for (;;) {
        w = shmkit__os.futex_wait(&cs->seq, seq, deadline);
        if (w == -ETIMEDOUT || (w != -EINTR && deadline_passed(deadline)))
            break;
        seq = __atomic_load_n(&cs->seq, __ATOMIC_ACQUIRE);
        if (tickets_take(cs, false)) {
            woken = true;
            break;
        }
    }
    /* Back into the mutex, however long it takes (as pthread_cond_wait);
     * a timed-out wait also returns holding it. */
    r = word_acquire(ms, h, ACQ_BLOCK, NULL);
    if (!woken)
        woken = tickets_take(cs, true);
    if (r != 0 && r != SHMKIT_EOWNERDEAD) {
        held_remove(h); /* returned without the mutex */
        return shmkit__fail(NULL, r, "shmkit_cond_wait(%p, %p)", (void *)c,
                            (void *)m);
    }
    if (r == 0 && !woken)
        r = -ETIMEDOUT;
    return r;
}

int shmkit_cond_wait(shmkit_cond *c, shmkit_mutex *m)
{
    return cond_wait_common(c, m, NULL);
}

int shmkit_cond_timedwait(shmkit_cond *c, shmkit_mutex *m,
                          const struct timespec *deadline)
{
    if (!deadline_ok(deadline))
        return shmkit__fail(NULL, -EINVAL, "shmkit_cond_timedwait: deadline");
    return cond_wait_common(c, m, deadline);
}

/* Gives one ticket (all: one to every registered waiter without one),
 * bumps the sequence and wakes the sleepers. */
static int cond_wake(shmkit_cond *c, bool all, const char *what)
{
    cond_shared *s = cond_of(c);
    uint64_t t, nt;
    int r = cond_check(s);

    if (r)
        return shmkit__fail(NULL, r, "%s(%p)", what, (void *)c);
    t = __atomic_load_n(&s->tickets, __ATOMIC_ACQUIRE);
    do {
        if (COND_WAITERS(t) <= COND_TICKETS(t))
            return 0; /* nobody waits who has no ticket yet */
        nt = all ? ((uint64_t)COND_WAITERS(t) << 32) | COND_WAITERS(t)
                 : t + T_TICKET;
    } while (!__atomic_compare_exchange_n(&s->tickets, &t, nt, true,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    __atomic_fetch_add(&s->seq, 1, __ATOMIC_RELEASE);
    r = shmkit__os.futex_wake(&s->seq, all ? INT_MAX : 1);
    return r < 0 ? shmkit__fail(NULL, r, "%s(%p)", what, (void *)c) : 0;
}

int shmkit_cond_signal(shmkit_cond *c)
{
    return cond_wake(c, false, "shmkit_cond_signal");
}

int shmkit_cond_broadcast(shmkit_cond *c)
{
    return cond_wake(c, true, "shmkit_cond_broadcast");
}

int shmkit_cond_destroy(shmkit_cond *c)
{
    cond_shared *s = cond_of(c);
    int r = cond_check(s);

    if (r)
        return shmkit__fail(NULL, r, "shmkit_cond_destroy(%p)", (void *)c);
    __atomic_store_n(&s->magic, 0, __ATOMIC_RELEASE);
    __atomic_fetch_add(&s->seq, 1, __ATOMIC_RELEASE);
    shmkit__os.futex_wake(&s->seq, INT_MAX);
    return 0;
}

/* ---- inspection ----------------------------------------------------- */

int shmkit_mutex_inspect(const shmkit_mutex *m, shmkit_mutex_info *info)
{
    const mutex_shared *s = (const mutex_shared *)m;
    uint32_t word;

    if (!m || !info || !shmkit__mutex_valid(m))
        return shmkit__fail(NULL, -EINVAL, "shmkit_mutex_inspect(%p)",
                            (const void *)m);
    memset(info, 0, sizeof *info);
    info->recursive = s->flags & SHMKIT_MUTEX_RECURSIVE;
    info->pid_ns = s->pid_ns;
    word = __atomic_load_n(&s->word, __ATOMIC_RELAXED) & ~W_WAITERS;
    if (word == W_NOTREC) {
        info->not_recoverable = true;
        return 0;
    }
    info->owner_tid = (pid_t)(word & W_TID);
    info->owner_died = word == W_DIED;
    info->inconsistent = (word & W_DIED) && info->owner_tid != 0;
    info->locked = word != 0;
    return 0;
}
